"""Token-bucket rate limits shared by every web process through Redis (ADR 0012)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from redis.exceptions import NoScriptError

from hub.errors import RateLimited
from hub.redis_clients import async_redis, sync_redis

# One atomic step: refill by elapsed time (Redis's clock, so processes agree), then take a token.
_TAKE = """
local burst = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local v = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(v[1])
local ts = tonumber(v[2])
if tokens == nil then tokens = burst; ts = now end
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local allowed = 0
local retry = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  retry = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 1)
return {allowed, tostring(retry)}
"""
_TAKE_SHA = hashlib.sha1(_TAKE.encode()).hexdigest()


def _script():  # type: ignore[no-untyped-def]
    client = sync_redis()
    script = getattr(client, "_hub_take", None)
    if script is None:
        script = client.register_script(_TAKE)
        client._hub_take = script  # type: ignore[attr-defined]
    return script


def _outcomes(replies: list[Any]) -> list[RateLimited | None]:
    return [
        None if int(allowed) else RateLimited("Too many messages; slow down.", retry_after_s=float(retry))
        for allowed, retry in replies
    ]


def _send_keys(user_ids: Sequence[uuid.UUID]) -> list[str]:
    return [f"hub:rl:send:{user_id}" for user_id in user_ids]


def message_send_allowances(*, user_ids: Sequence[uuid.UUID]) -> list[RateLimited | None]:
    """The per-user message send limit (HUB_SEND_RATE_BURST, refilling HUB_SEND_RATE_PER_S): one token per
    send, in order, in one round trip; `RateLimited` where the bucket is empty (a user may appear often)."""
    if not user_ids:
        return []
    script = _script()
    pipe = sync_redis().pipeline(transaction=False)
    for key in _send_keys(user_ids):
        script(keys=[key], args=[settings.HUB_SEND_RATE_BURST, settings.HUB_SEND_RATE_PER_S], client=pipe)
    return _outcomes(pipe.execute())


async def message_send_allowances_async(*, user_ids: Sequence[uuid.UUID]) -> list[RateLimited | None]:
    """`message_send_allowances` from the event loop."""
    if not user_ids:
        return []
    client = async_redis()
    pipe = client.pipeline(transaction=False)
    args = [settings.HUB_SEND_RATE_BURST, settings.HUB_SEND_RATE_PER_S]
    for key in _send_keys(user_ids):
        pipe.evalsha(_TAKE_SHA, 1, key, *args)
    try:
        replies = await pipe.execute()
    except NoScriptError:  # a restarted Redis forgot the script: load it once, then again
        await client.script_load(_TAKE)
        pipe = client.pipeline(transaction=False)
        for key in _send_keys(user_ids):
            pipe.evalsha(_TAKE_SHA, 1, key, *args)
        replies = await pipe.execute()
    return _outcomes(replies)
