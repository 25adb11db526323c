"""Token-bucket rate limits shared by every web process through Redis (ADR 0012)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
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


# Frames already on their way when a streak of `rate_limited` answers began (a pipelined outbox,
# network latency) arrive up to this long after it and are never counted as flooding.
FLOOD_IN_FLIGHT_GRACE_S = 0.2


@dataclass(frozen=True)
class Arrival:
    """When a request of one kind arrived, and whether its sender had paused as last told to."""

    kind: str
    at: float
    paused: bool


@dataclass
class _Kind:
    last: float = 0.0  # when the previous request of this kind arrived
    wait_from: float = 0.0  # the current wait: from the refusal that began it to the moment it ends
    wait_until: float = 0.0
    streak: float | None = None  # when the current streak of refusals began
    strikes: int = 0


@dataclass
class FloodGuard:
    """The flood rule of one connection (close 4429, ADR 0042): a sender that keeps sending while told to wait.

    A `rate_limited` answer tells the client to wait until the bucket has a token again. A request
    *paused* if it arrived after that wait ended and after a gap (since the previous request of its
    kind) of at least half the wait: what a client that waits as told always leaves, and what a
    flooder, whose frames keep coming every few milliseconds, never does. A refusal starts a streak
    unless one runs; refusals of requests that did not pause and arrived more than
    FLOOD_IN_FLIGHT_GRACE_S after the streak began (so were sent after the client could read the
    answer) are strikes; more than HUB_SEND_FLOOD_CLOSE_AFTER strikes close the connection. A
    request that paused ends the streak, accepted or refused; one accepted without a pause (the
    bucket refilled meanwhile) does not, so a flooder let through now and then is still closed."""

    _kinds: dict[str, _Kind] = field(default_factory=dict)

    def arrived(self, kind: str) -> Arrival:
        """Note a request as it is read, in frame order."""
        now = time.monotonic()
        state = self._kinds.get(kind)
        if state is None:
            state = self._kinds[kind] = _Kind()
        paused = now >= state.wait_until and now - state.last >= (state.wait_until - state.wait_from) / 2
        state.last = now
        return Arrival(kind, now, paused)

    def accepted(self, arrival: Arrival) -> None:
        if arrival.paused:
            self._kinds[arrival.kind].streak = None

    def refused(self, arrival: Arrival, retry_after_s: float) -> bool:
        """Note a `rate_limited` answer; True when the connection is to be closed 4429 after it."""
        now = time.monotonic()
        state = self._kinds[arrival.kind]
        if arrival.at >= state.wait_until:  # a new wait
            state.wait_from, state.wait_until = now, now + retry_after_s
        else:
            state.wait_until = max(state.wait_until, now + retry_after_s)
        if state.streak is None or arrival.paused:
            state.streak, state.strikes = now, 0
            return False
        if arrival.at < state.streak + FLOOD_IN_FLIGHT_GRACE_S:
            return False
        state.strikes += 1
        return state.strikes > settings.HUB_SEND_FLOOD_CLOSE_AFTER
