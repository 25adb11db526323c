"""The pipe from services to devices: events are PUBLISHed to the Redis channels of their recipients.

Services decide who receives an event (from the database) and publish after commit; Redis is only
transport, so anything a client must not miss is persisted first. Each web process's router
(consumers.router) subscribes to the channel of every user with a local connection and to one
channel of its own, and hands what arrives to the connections (ADR 0035, ADR 0050).

Wire format (ours, no channel layer): channel `hub:user.<id>` or `hub:process.<hex>`; payload an
orjson object, one of
    {"text": <frame JSON>, "exclude": <channel_name>?}     an event for every device of the user
    {"text": <frame JSON>, "to": <connection id>}          an event for one connection (process channel)
    {"close": <code>, "reason": <str>}                     close every connection of the user

Delivery is at most once. A publish that fails (Redis away) is logged and dropped, never raised:
the router of every process loses its subscription too, and sends `resync` to each connection once
it is subscribed again (PROTOCOL §2.1)."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable
from typing import Any

import orjson
from asgiref.sync import async_to_sync
from django.db import transaction

from hub import metrics
from hub.coalesce import loop_coalescer
from hub.redis_clients import async_redis, sync_redis

log = logging.getLogger(__name__)

CHANNEL_PREFIX = "hub:"

# A WebSocket's `channel_name` is "<its process's channel><CONNECTION_SEPARATOR><connection id>" (ADR 0035):
# events for exactly one connection go to its process's channel, which hands them to the connection.
CONNECTION_SEPARATOR = "!"

Recipients = Iterable[uuid.UUID | str]


def user_group(user_id: uuid.UUID | str) -> str:
    return f"user.{user_id}"


def redis_channel(name: str) -> str:
    """The Redis channel of a group (`user_group`) or a process."""
    return f"{CHANNEL_PREFIX}{name}"


def user_channel(user_id: uuid.UUID | str) -> str:
    return redis_channel(user_group(user_id))


def new_process_channel() -> str:
    return redis_channel(f"process.{uuid.uuid4().hex}")


def connection_channel(process_channel: str, connection_id: str) -> str:
    """The `channel_name` of a connection held by the process that subscribes to `process_channel`."""
    return f"{process_channel}{CONNECTION_SEPARATOR}{connection_id}"


def encode_frame(frame_type: str, data: dict[str, Any]) -> str:
    """An event frame (no `ref`) as JSON text, encoded once for every recipient."""
    return orjson.dumps({"type": frame_type, "data": data}, default=_default).decode()


def _default(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def event_payload(text: str, exclude_channel: str | None = None) -> bytes:
    return orjson.dumps({"text": text, "exclude": exclude_channel} if exclude_channel else {"text": text})


def _unique_channels(to: Recipients) -> list[str]:
    return [user_channel(u) for u in dict.fromkeys(str(u) for u in to)]


def frame_items(frames: Iterable[tuple[str, Recipients, str | None]]) -> list[tuple[str, bytes]]:
    """(Redis channel, payload) PUBLISHes of pre-encoded frames: (text, recipients, exclude_channel)."""
    items: list[tuple[str, bytes]] = []
    for text, to, exclude in frames:
        payload = event_payload(text, exclude)
        items += [(channel, payload) for channel in _unique_channels(to)]
    return items


# --- publishing ------------------------------------------------------------------------------------


class _Failures:
    """Failed publishes are logged once per outage, then every few seconds with a count (no log flood)."""

    every_s = 5.0

    def __init__(self) -> None:
        self.dropped = 0
        self.logged_at = 0.0

    def failed(self, count: int, exc: BaseException) -> None:
        metrics.PUBLISH_FAILED.inc(count)
        self.dropped += count
        now = time.monotonic()
        if now - self.logged_at >= self.every_s:
            log.warning("realtime: %d event(s) not published (Redis: %s); they stay in the database", self.dropped, exc)
            self.logged_at, self.dropped = now, 0


_failures = _Failures()


async def _publish_batch(batch: list[list[tuple[str, bytes]]]) -> list[None]:
    """Every PUBLISH queued while the previous batch was in flight, in one pipeline, in order."""
    pipe = async_redis().pipeline(transaction=False)
    for items in batch:
        for channel, payload in items:
            pipe.publish(channel, payload)
    await pipe.execute()
    return [None] * len(batch)


_loop_publishes = False  # this process publishes from an event loop (a web process): sync emits join it


async def publish(items: list[tuple[str, bytes]]) -> bool:
    """PUBLISH (channel, payload) pairs in order; concurrent calls share round trips (one pipeline at a
    time, FIFO). Returns once sent; False (logged) when Redis failed."""
    global _loop_publishes
    _loop_publishes = True
    if not items:
        return True
    try:
        await loop_coalescer("realtime.publish", _publish_batch)(items)
    except Exception as exc:  # Redis away or slow: the data is in the database; routers resync
        _failures.failed(len(items), exc)
        return False
    return True


def publish_sync(items: list[tuple[str, bytes]]) -> bool:
    """`publish` from sync code. In a process that also publishes from its event loop (a web process's
    service threads), through that loop: one FIFO for all its events, so an event published after
    another (e.g. an edit after its message's `message.created`) is not overtaken by it. Elsewhere
    (Celery workers, commands): one pipeline on the sync client, one round trip."""
    if not items:
        return True
    if _loop_publishes:
        return bool(async_to_sync(publish)(items))
    try:
        pipe = sync_redis().pipeline(transaction=False)
        for channel, payload in items:
            pipe.publish(channel, payload)
        pipe.execute()
    except Exception as exc:
        _failures.failed(len(items), exc)
        return False
    return True


async def publish_frames(frames: Iterable[tuple[str, Recipients, str | None]]) -> bool:
    """The lowest-level event transport: pre-encoded frames `(text, recipients, exclude_channel)`,
    each to every device of its recipients, in the order given."""
    return await publish(frame_items(frames))


async def publish_to_connection(channel_name: str, text: str) -> bool:
    """A pre-encoded frame to exactly one connection (its `channel_name`), in whichever web process holds it."""
    return await publish([_connection_item(channel_name, text)])


def _connection_item(channel_name: str, text: str) -> tuple[str, bytes]:
    process_channel, separator, connection_id = channel_name.rpartition(CONNECTION_SEPARATOR)
    if not separator or not process_channel.startswith(CHANNEL_PREFIX):
        raise ValueError(f"not a connection's channel_name: {channel_name!r}")
    return process_channel, orjson.dumps({"text": text, "to": connection_id})


def publish_frames_on_commit(frames: Iterable[tuple[str, Recipients, str | None]]) -> None:
    """`publish_frames` from sync code, once the current transaction commits (at once outside one)."""
    items = frame_items([(text, list(to), exclude) for text, to, exclude in frames])
    transaction.on_commit(lambda: publish_sync(items), robust=True)


# --- closing connections ---------------------------------------------------------------------------


def _close_items(user_ids: Recipients, code: int, reason: str) -> list[tuple[str, bytes]]:
    payload = orjson.dumps({"close": code, "reason": reason})
    return [(channel, payload) for channel in _unique_channels(user_ids)]


def disconnect_users(user_ids: Recipients, code: int, reason: str = "") -> None:
    """Close every connection of these users, in every web process, with `code` (e.g. 4401), once the
    current transaction commits."""
    items = _close_items(list(user_ids), code, reason)
    transaction.on_commit(lambda: publish_sync(items), robust=True)
