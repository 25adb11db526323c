"""Token-bucket rate limits shared by every web process through Redis (ADR 0012)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from django.conf import settings

from hub.errors import RateLimited
from hub.redis_clients import sync_redis

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


def _script():  # type: ignore[no-untyped-def]
    client = sync_redis()
    script = getattr(client, "_hub_take", None)
    if script is None:
        script = client.register_script(_TAKE)
        client._hub_take = script  # type: ignore[attr-defined]
    return script


def take_many(*, keys: Sequence[str], burst: int, per_s: float) -> list[RateLimited | None]:
    """Take one token from each bucket, in order, in one round trip; `RateLimited` where one is empty.

    The same key may appear several times (one sender's messages in one batch): each takes a token."""
    if not keys:
        return []
    script = _script()
    pipe = sync_redis().pipeline(transaction=False)
    for key in keys:
        script(keys=[f"hub:rl:{key}"], args=[burst, per_s], client=pipe)
    outcomes: list[RateLimited | None] = []
    for allowed, retry in pipe.execute():
        ok = int(allowed)
        outcomes.append(None if ok else RateLimited("Too many messages; slow down.", retry_after_s=float(retry)))
    return outcomes


def message_send_allowances(*, user_ids: Sequence[uuid.UUID]) -> list[RateLimited | None]:
    """The per-user message send limit (HUB_SEND_RATE_BURST, refilling HUB_SEND_RATE_PER_S), one per send."""
    return take_many(
        keys=[f"send:{user_id}" for user_id in user_ids],
        burst=settings.HUB_SEND_RATE_BURST,
        per_s=settings.HUB_SEND_RATE_PER_S,
    )
