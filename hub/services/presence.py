"""Presence across devices and web processes, kept in Redis (ADR 0011).

Each connection is an entry with an expiry in its user's sorted set (`conns:<user>`) and in one
global sorted set (`expiry`). Every web process refreshes the entries of its own connections every
TTL/3 and sweeps expired entries: so a process that dies takes its users offline within about a
TTL, announced by whichever process sweeps first. Lua scripts make each step atomic, so "online"
is announced when a user's first device arrives and "offline" when the last one leaves, once,
whichever process sees it."""

from __future__ import annotations

import asyncio
import logging
import uuid
import weakref
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal

from channels.db import database_sync_to_async
from django.conf import settings
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from hub import events
from hub.coalesce import loop_coalescer
from hub.errors import BadRequest
from hub.models import User
from hub.redis_clients import async_redis, sync_redis
from hub.serialize import iso
from hub.services.conversations import blocked_either_way, conversation_peers_many, shares_conversation

log = logging.getLogger(__name__)

PREFIX = "hub:presence:"
CONNS = PREFIX + "conns:"
SEEN = PREFIX + "seen:"
EXPIRY = PREFIX + "expiry"
SEEN_KEEP_S = 30 * 24 * 3600
QUERY_MAX = 500

Status = Literal["online", "offline"]

_NOW = "local t = redis.call('TIME') local now = tonumber(t[1]) + tonumber(t[2]) / 1000000\n"

# ARGV: ttl, then user id / connection id pairs. Returns per pair 1 if it is its user's first live entry.
_TOUCH = (
    _NOW
    + """
local ttl = tonumber(ARGV[1])
local came = {}
for i = 2, #ARGV, 2 do
  local uid, conn = ARGV[i], ARGV[i + 1]
  local key = KEYS[1] .. uid
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  local before = redis.call('ZCARD', key)
  local had = redis.call('ZSCORE', key, conn)
  redis.call('ZADD', key, now + ttl, conn)
  redis.call('EXPIRE', key, math.ceil(ttl * 2))
  redis.call('ZADD', KEYS[2], now + ttl, uid .. '|' .. conn)
  if before == 0 and not had then came[#came + 1] = 1 else came[#came + 1] = 0 end
end
return came
"""
)

# KEYS: conns prefix, expiry, seen prefix. ARGV: seen value, keep, then user id / connection id
# pairs. Returns per pair 1 if removing it left its user with no live entry (the last device left).
_LEAVE = (
    _NOW
    + """
local gone = {}
for i = 3, #ARGV, 2 do
  local uid, conn = ARGV[i], ARGV[i + 1]
  local key = KEYS[1] .. uid
  local removed = redis.call('ZREM', key, conn)
  redis.call('ZREM', KEYS[2], uid .. '|' .. conn)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  if removed == 1 and redis.call('ZCARD', key) == 0 then
    redis.call('SET', KEYS[3] .. uid, ARGV[1], 'EX', ARGV[2])
    gone[#gone + 1] = 1
  else
    gone[#gone + 1] = 0
  end
end
return gone
"""
)

# KEYS: expiry. ARGV: conns prefix, seen prefix, seen value, keep, max. Returns users now offline.
_SWEEP = (
    _NOW
    + """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[5]))
local gone = {}
for _, member in ipairs(due) do
  redis.call('ZREM', KEYS[1], member)
  local sep = string.find(member, '|', 1, true)
  local uid = string.sub(member, 1, sep - 1)
  local key = ARGV[1] .. uid
  local removed = redis.call('ZREM', key, string.sub(member, sep + 1))
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  if removed == 1 and redis.call('ZCARD', key) == 0 then
    redis.call('SET', ARGV[2] .. uid, ARGV[3], 'EX', ARGV[4])
    table.insert(gone, uid)
  end
end
return gone
"""
)

# ARGV: user ids. Returns live-connection count and last-seen value per user.
_QUERY = (
    _NOW
    + """
local out = {}
for i = 1, #ARGV do
  table.insert(out, redis.call('ZCOUNT', KEYS[1] .. ARGV[i], '(' .. now, '+inf'))
  table.insert(out, redis.call('GET', KEYS[2] .. ARGV[i]) or '')
end
return out
"""
)

_scripts: dict[tuple[int, str], Any] = {}


def _script(name: str, body: str) -> Any:
    client = async_redis()
    key = (id(client), name)
    script = _scripts.get(key)
    if script is None:
        script = _scripts[key] = client.register_script(body)
    return script


def _ttl() -> int:
    return max(2, settings.HUB_PRESENCE_TTL_S)


# --- announcing --------------------------------------------------------------------------------


def _peers_and_store(user_ids: list[uuid.UUID], offline: dict[uuid.UUID, datetime]) -> dict[uuid.UUID, list[uuid.UUID]]:
    """Store `last_seen_at` of the users gone offline, then everyone's peers: one thread hop, few queries."""
    by_time: dict[datetime, list[uuid.UUID]] = {}
    for user_id, at in offline.items():
        by_time.setdefault(at, []).append(user_id)
    for at, ids in by_time.items():
        User.objects.filter(id__in=ids).update(last_seen_at=at)
    return conversation_peers_many(user_ids=user_ids)


async def _announce_batch(items: list[tuple[uuid.UUID, Status, datetime]]) -> list[None]:
    """Announce transitions of many users: one peers query for all, then their events, in call order."""
    offline = {user_id: at for user_id, status, at in items if status == "offline"}
    peers = await database_sync_to_async(_peers_and_store)(list(dict.fromkeys(u for u, _, _ in items)), offline)
    # One batch of PUBLISHes, in call order: one user's online and offline stay ordered.
    await events.publish_async(
        (events.Presence(data=events.PresenceData(user_id=user_id, status=status, last_seen_at=at)), peers[user_id])
        for user_id, status, at in items
        if peers.get(user_id)
    )
    return [None] * len(items)


async def _announce(user_id: uuid.UUID, status: Status, at: datetime) -> None:
    """`presence` to every user sharing a conversation with `user_id` (blocks excluded); `offline` also
    stores `last_seen_at`. Concurrent announcements share one database round trip (ADR 0035)."""
    await loop_coalescer("presence.announce", _announce_batch)((user_id, status, at))


async def _touch_batch(items: list[tuple[uuid.UUID, str]]) -> list[bool]:
    """Register many connections in one script call; True for each that is its user's first live one."""
    args: list[Any] = [_ttl()]
    for user_id, conn_id in items:
        args += [str(user_id), conn_id]
    flags = await _script("touch", _TOUCH)(keys=[CONNS, EXPIRY], args=args)
    return [bool(int(f)) for f in flags]


async def _leave_batch(items: list[tuple[uuid.UUID, str]]) -> list[tuple[bool, datetime]]:
    """Drop many connections in one script call; per item, whether its user has none left, and when."""
    now = timezone.now()
    args: list[Any] = [iso(now), SEEN_KEEP_S]
    for user_id, conn_id in items:
        args += [str(user_id), conn_id]
    flags = await _script("leave", _LEAVE)(keys=[CONNS, EXPIRY, SEEN], args=args)
    return [(bool(int(f)), now) for f in flags]


# --- this process's connections ------------------------------------------------------------------


class _Tracker:
    """The connections of this web process, refreshed in Redis by one background task."""

    def __init__(self) -> None:
        self.local: dict[str, uuid.UUID] = {}
        # The object that owns each connection (its consumer), weakly: if it vanished without its
        # disconnect running (a crash), the refresh loop lets the connection go instead of
        # keeping its user online for ever.
        self.owners: dict[str, weakref.ref[Any]] = {}
        self.task: asyncio.Task[None] | None = None

    def ensure_running(self) -> None:
        loop = asyncio.get_running_loop()
        if self.task is None or self.task.done() or self.task.get_loop() is not loop:
            self.task = loop.create_task(self._run())

    def stop_if_idle(self) -> None:
        if not self.local and self.task is not None:
            self.task.cancel()
            self.task = None

    async def _run(self) -> None:
        interval = _ttl() / 3
        while True:
            try:
                await self.refresh()
                await presence_sweep()
            except asyncio.CancelledError:
                raise
            except Exception:  # Redis briefly away: try again next round, entries outlive a round
                log.exception("presence refresh failed")
            await asyncio.sleep(interval)

    async def refresh(self) -> None:
        for conn_id, owner in list(self.owners.items()):
            if owner() is None and conn_id in self.local:
                await presence_disconnect(user_id=self.local[conn_id], connection_id=conn_id)
        items = list(self.local.items())
        for start in range(0, len(items), 500):
            chunk = items[start : start + 500]
            args: list[Any] = [_ttl()]
            for conn_id, user_id in chunk:
                args += [str(user_id), conn_id]
            flags = await _script("touch", _TOUCH)(keys=[CONNS, EXPIRY], args=args)
            # Only after an entry had expired (a stalled process): announce the user again.
            came = [user_id for (_, user_id), flag in zip(chunk, flags, strict=True) if int(flag)]
            now = timezone.now()
            await asyncio.gather(*(_announce(user_id, "online", now) for user_id in dict.fromkeys(came)))


_tracker = _Tracker()


async def presence_connect(*, user_id: uuid.UUID, connection_id: str, owner: Any = None) -> bool:
    """Register a connection (owned by `owner`, held weakly); announce `online` if it is the user's first."""
    _tracker.local[connection_id] = user_id
    if owner is not None:
        _tracker.owners[connection_id] = weakref.ref(owner)
    _tracker.ensure_running()
    if await loop_coalescer("presence.touch", _touch_batch)((user_id, connection_id)):
        await _announce(user_id, "online", timezone.now())
        return True
    return False


async def presence_disconnect(*, user_id: uuid.UUID, connection_id: str) -> bool:
    """Drop a connection; announce `offline` if it was the user's last. True when announced."""
    _tracker.local.pop(connection_id, None)
    _tracker.owners.pop(connection_id, None)
    _tracker.stop_if_idle()
    last, at = await loop_coalescer("presence.leave", _leave_batch)((user_id, connection_id))
    if last:
        await _announce(user_id, "offline", at)
        return True
    return False


async def presence_sweep() -> list[uuid.UUID]:
    """Expire connections whose process stopped refreshing them; announce users left with none."""
    now = timezone.now()
    gone = await _script("sweep", _SWEEP)(keys=[EXPIRY], args=[CONNS, SEEN, iso(now), SEEN_KEEP_S, 1000])
    users = [uuid.UUID(g.decode()) for g in gone]
    await asyncio.gather(*(_announce(user_id, "offline", now) for user_id in users))
    return users


# --- queries -------------------------------------------------------------------------------------


@database_sync_to_async
def _visible(user: User, ids: list[uuid.UUID]) -> tuple[set[uuid.UUID], dict[uuid.UUID, datetime | None]]:
    """Whose presence `user` may see (self, peers without blocks; admins: all), and stored last_seen_at."""
    others = [i for i in ids if i != user.id]
    if user.is_admin:
        visible = set(others)
    else:
        visible = shares_conversation(user_id=user.id, others=others) - blocked_either_way(
            user_id=user.id, others=others
        )
    visible.add(user.id)
    seen = dict(User.objects.filter(id__in=list(visible)).values_list("id", "last_seen_at"))
    return visible & set(seen), seen


async def presence_query(*, user: User, user_ids: Iterable[uuid.UUID]) -> dict[str, dict[str, Any]]:
    """{user_id: {status, last_seen_at}}; users one may not see (no shared conversation, blocks,
    unknown) read as offline with no last_seen_at, which reveals nothing about them."""
    ids = list(dict.fromkeys(user_ids))
    if len(ids) > QUERY_MAX:
        raise BadRequest(f"At most {QUERY_MAX} user_ids per query.")
    result: dict[str, dict[str, Any]] = {str(i): {"status": "offline", "last_seen_at": None} for i in ids}
    if not ids:
        return result
    visible, stored = await _visible(user, ids)
    order = [i for i in ids if i in visible]
    if not order:
        return result
    raw = await _script("query", _QUERY)(keys=[CONNS, SEEN], args=[str(i) for i in order])
    now = iso(timezone.now())
    for n, user_id in enumerate(order):
        live, seen = int(raw[2 * n]), raw[2 * n + 1].decode() if raw[2 * n + 1] else ""
        if live:
            result[str(user_id)] = {"status": "online", "last_seen_at": now}
        else:
            at = parse_datetime(seen) if seen else stored.get(user_id)
            result[str(user_id)] = {"status": "offline", "last_seen_at": iso(at)}
    return result


def online_user_ids(*, user_ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
    """From sync code (e.g. notification routing): which of these users have a live connection now."""
    ids = list(dict.fromkeys(user_ids))
    if not ids:
        return set()
    raw = sync_redis().eval(_QUERY, 2, CONNS, SEEN, *[str(i) for i in ids])
    return {user_id for n, user_id in enumerate(ids) if int(raw[2 * n])}
