"""Token-bucket rate limits shared by every web process through Redis (ADR 0012)."""

from __future__ import annotations

import uuid

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


def take(*, key: str, burst: int, per_s: float) -> None:
    """Take one token from the bucket `key`; `RateLimited(retry_after_s)` when it is empty."""
    allowed, retry = _script()(keys=[f"hub:rl:{key}"], args=[burst, per_s])
    if not int(allowed):
        raise RateLimited("Too many messages; slow down.", retry_after_s=float(retry))


def message_send_allowance(*, user_id: uuid.UUID) -> None:
    """The per-user message send limit (HUB_SEND_RATE_BURST, refilling HUB_SEND_RATE_PER_S)."""
    take(key=f"send:{user_id}", burst=settings.HUB_SEND_RATE_BURST, per_s=settings.HUB_SEND_RATE_PER_S)
