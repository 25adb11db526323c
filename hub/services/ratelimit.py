"""Token-bucket rate limits shared by every web process through Redis (ADR 0012)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from django.conf import settings

from hub.errors import RateLimited
from hub.redis_clients import async_redis, sync_redis

# One atomic step for a whole batch: for each key in turn (a key may repeat), refill its bucket by
# the elapsed time (Redis's clock, so processes agree), then take a token. Replies: per key, the
# seconds to wait, or -1 where a token was taken.
_TAKE = """
local burst = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local ttl = math.ceil(burst / rate) + 1
local out = {}
for i, key in ipairs(KEYS) do
  local v = redis.call('HMGET', key, 'tokens', 'ts')
  local tokens = tonumber(v[1])
  local ts = tonumber(v[2])
  if tokens == nil then tokens = burst; ts = now end
  tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
  if tokens >= 1 then
    tokens = tokens - 1
    out[i] = '-1'
  else
    out[i] = tostring((1 - tokens) / rate)
  end
  redis.call('HSET', key, 'tokens', tostring(tokens), 'ts', tostring(now))
  redis.call('EXPIRE', key, ttl)
end
return out
"""


def _outcomes(replies: list[Any]) -> list[RateLimited | None]:
    outcomes: list[RateLimited | None] = []
    for reply in replies:
        retry = float(reply)
        outcomes.append(None if retry < 0 else RateLimited("Too many messages; slow down.", retry_after_s=retry))
    return outcomes


def _send_keys(user_ids: Sequence[uuid.UUID]) -> list[str]:
    return [f"hub:rl:send:{user_id}" for user_id in user_ids]


def _script(client: Any) -> Any:
    """The take script registered with this client (sync or async), once."""
    script = getattr(client, "_hub_take", None)
    if script is None:
        script = client._hub_take = client.register_script(_TAKE)
    return script


def _args() -> list[Any]:
    return [settings.HUB_SEND_RATE_BURST, settings.HUB_SEND_RATE_PER_S]


def message_send_allowances(*, user_ids: Sequence[uuid.UUID]) -> list[RateLimited | None]:
    """The per-user message send limit (HUB_SEND_RATE_BURST, refilling HUB_SEND_RATE_PER_S): one token per
    send, in order, in one script call; `RateLimited` where the bucket is empty (a user may appear often)."""
    if not user_ids:
        return []
    return _outcomes(_script(sync_redis())(keys=_send_keys(user_ids), args=_args()))


async def message_send_allowances_async(*, user_ids: Sequence[uuid.UUID]) -> list[RateLimited | None]:
    """`message_send_allowances` from the event loop."""
    if not user_ids:
        return []
    return _outcomes(await _script(async_redis())(keys=_send_keys(user_ids), args=_args()))
