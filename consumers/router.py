"""This process's event router: one Redis subscription per user with local connections (ADR 0035).

Channels gives every consumer a channel of its own: a SUBSCRIBE, an `asyncio.Queue` and a task
waiting on it, plus a SUBSCRIBE for its user's group, for every connection. Here the web process
keeps one table of its open connections and subscribes, on one connection per Redis host, to
the `user.<id>` group channel of each user with at least one local connection and to one channel
of its own for events to exactly one connection (`hub.realtime.send_to_channel`). An incoming event
is decoded once and handed to each local connection of its user in arrival order, so per
connection the order of publication is kept.

The channel names and the serialisation are the channel layer's, so publishers are unchanged:
`hub.realtime.emit_async` (in a web process or a Celery worker) reaches connections in every
web process. Delivery is at most once, as with the channel layer: the database is the record."""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import uuid
import weakref
from typing import Any, Protocol

from channels.layers import get_channel_layer
from channels_redis.pubsub import RedisPubSubChannelLayer
from channels_redis.utils import create_pool
from django.core.exceptions import ImproperlyConfigured

from hub.realtime import connection_channel, user_group

log = logging.getLogger(__name__)

RECONNECT_DELAY_S = 1.0


class Receiver(Protocol):
    """What the router delivers to: a connection's consumer."""

    async def deliver(self, text: str, exclude: str | None) -> None: ...


class _Subscriber:
    """The subscriptions on one Redis host: one connection, commands in batches, replies matched in order."""

    def __init__(self, host: dict[str, Any], router: LocalRouter) -> None:
        self._pool = create_pool(host)
        self._router = router
        self._conn: Any = None
        self._wanted: set[str] = set()  # channels that should be subscribed
        self._sent: set[str] = set()  # subscribed, as far as what went out on this connection says
        self._dirty: set[str] = set()  # wanted-state changed since the last flush
        self._waiting: dict[str, list[asyncio.Future[None]]] = {}  # for the next SUBSCRIBE of a channel
        self._unconfirmed: dict[str, list[asyncio.Future[None]]] = {}  # for a SUBSCRIBE sent, not answered
        self._expect: collections.deque[tuple[str, list[asyncio.Future[None]] | None]] = collections.deque()
        self._flusher: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None

    def want(self, channel: str) -> asyncio.Future[None] | None:
        """Subscribe (if not yet); returns a future done once Redis confirmed, or None if it already has."""
        self._wanted.add(channel)
        if channel in self._sent:
            pending = self._unconfirmed.get(channel)
            if pending is None:
                return None
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            pending.append(future)
            return future
        future = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(channel, []).append(future)
        self._mark(channel)
        return future

    def unwant(self, channel: str) -> None:
        self._wanted.discard(channel)
        self._mark(channel)

    def _mark(self, channel: str) -> None:
        self._dirty.add(channel)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        while self._dirty:
            try:
                conn = await self._connection()
                dirty, self._dirty = self._dirty, set()
                subscribe = [c for c in dirty if c in self._wanted and c not in self._sent]
                unsubscribe = [c for c in dirty if c not in self._wanted and c in self._sent]
                for channel in unsubscribe:
                    self._sent.discard(channel)
                    self._expect.append((channel, None))
                for channel in subscribe:
                    self._sent.add(channel)
                    futures = self._unconfirmed[channel] = self._waiting.pop(channel, [])
                    self._expect.append((channel, futures))
                if unsubscribe:
                    await conn.send_command("UNSUBSCRIBE", *unsubscribe, check_health=False)
                if subscribe:
                    await conn.send_command("SUBSCRIBE", *subscribe, check_health=False)
            except Exception as exc:
                log.exception("router: Redis subscription failed; reconnecting")
                await self._reset(exc)
                await asyncio.sleep(RECONNECT_DELAY_S)

    async def _connection(self) -> Any:
        if self._conn is None:
            conn = self._pool.make_connection()
            await conn.connect()
            self._conn = conn
            self._reader = asyncio.get_running_loop().create_task(self._read(conn))
        return self._conn

    async def _reset(self, exc: BaseException) -> None:
        """The connection is gone: every wanted channel is subscribed again on the next one. Handshakes
        waiting for a subscription fail now (their consumers end, the clients reconnect), as they
        did when the channel layer's `group_add` failed, rather than hang while Redis is away."""
        conn, self._conn = self._conn, None
        if self._reader is not None and self._reader is not asyncio.current_task():
            self._reader.cancel()
        self._reader = None
        for futures in [*self._unconfirmed.values(), *self._waiting.values()]:
            for future in futures:
                if not future.done():
                    future.set_exception(ConnectionError(f"Redis subscription lost: {exc}"))
        self._unconfirmed.clear()
        self._waiting.clear()
        self._expect.clear()
        self._sent.clear()
        self._dirty |= self._wanted
        if conn is not None:
            try:
                await conn.disconnect()
            except Exception:  # already broken; nothing more to release
                log.debug("router: disconnect failed", exc_info=True)

    async def _read(self, conn: Any) -> None:
        try:
            while True:
                reply = await conn.read_response(disable_decoding=True, timeout=math.inf, push_request=True)
                kind = reply[0]
                if kind == b"message":
                    await self._router.dispatch(reply[1], reply[2])
                elif kind in (b"subscribe", b"unsubscribe") and self._expect:
                    channel, futures = self._expect.popleft()  # Redis answers in order, one per channel
                    if futures is not None:
                        if self._unconfirmed.get(channel) is futures:
                            del self._unconfirmed[channel]
                        for future in futures:
                            if not future.done():
                                future.set_result(None)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if self._conn is not conn:
                return
            log.exception("router: lost the Redis subscription connection; reconnecting")
            await self._reset(exc)
            await asyncio.sleep(RECONNECT_DELAY_S)
            if self._dirty and (self._flusher is None or self._flusher.done()):
                self._flusher = asyncio.get_running_loop().create_task(self._flush())

    async def close(self) -> None:
        for task in (self._flusher, self._reader):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        if self._conn is not None:
            await self._conn.disconnect()
            self._conn = None
        await self._pool.disconnect()


class LocalRouter:
    """The open connections of this process (one event loop) and their Redis subscriptions."""

    def __init__(self) -> None:
        layer = get_channel_layer()
        if not isinstance(layer, RedisPubSubChannelLayer):
            raise ImproperlyConfigured("The hub's WebSocket router needs channels-redis' pub/sub channel layer.")
        self._layer = layer
        self._inner = layer._get_layer()  # this loop's layer: its shards and channel naming
        self._subscribers = {id(shard): _Subscriber(shard.host, self) for shard in self._inner._shards}
        self.process_channel = f"{self._inner.prefix}hub.process.{uuid.uuid4().hex}"
        self._by_user: dict[str, dict[Receiver, None]] = {}  # group channel -> its local connections
        self._by_connection: dict[str, Receiver] = {}
        self._group_prefix = self._inner._get_group_channel_name(user_group(""))
        self._started = False

    def _subscriber(self, channel: str) -> _Subscriber:
        return self._subscribers[id(self._inner._get_shard(channel))]

    def channel_name(self, connection_id: str) -> str:
        """The `channel_name` of a local connection: `send_to_channel` reaches it in this process."""
        return connection_channel(self.process_channel, connection_id)

    async def add(self, user_id: uuid.UUID, connection_id: str, receiver: Receiver) -> None:
        """Route the user's events and the connection's own to `receiver`; returns once subscribed."""
        waits = []
        if not self._started:
            self._started = True
            waits.append(self._subscriber(self.process_channel).want(self.process_channel))
        group = self._inner._get_group_channel_name(user_group(user_id))
        local = self._by_user.get(group)
        if local is None:
            local = self._by_user[group] = {}
        local[receiver] = None
        self._by_connection[connection_id] = receiver
        waits.append(self._subscriber(group).want(group))
        pending = [w for w in waits if w is not None]
        if pending:
            await asyncio.gather(*pending)

    def remove(self, user_id: uuid.UUID, connection_id: str, receiver: Receiver) -> None:
        """Stop routing to `receiver`; the user's subscription ends with their last local connection."""
        self._by_connection.pop(connection_id, None)
        group = self._inner._get_group_channel_name(user_group(user_id))
        local = self._by_user.get(group)
        if local is None:
            return
        local.pop(receiver, None)
        if not local:
            del self._by_user[group]
            self._subscriber(group).unwant(group)

    async def dispatch(self, channel: bytes, payload: bytes) -> None:
        """One published event: decoded once, handed to each local recipient in turn."""
        name = channel.decode()
        try:
            message = self._layer.deserialize(payload)
            text, exclude = message["text"], message.get("exclude")
        except Exception:  # not ours (a foreign publisher on our channel names): nothing to deliver
            log.warning("router: undecodable message on %s", name)
            return
        if name == self.process_channel:
            receiver = self._by_connection.get(message.get("to", ""))
            receivers = [receiver] if receiver is not None else []
        else:
            receivers = list(self._by_user.get(name, ()))
        for receiver in receivers:
            try:
                await receiver.deliver(text, exclude)
            except Exception:  # one broken connection must not keep an event from the others
                log.exception("router: delivery failed")

    def connection_count(self) -> int:
        return len(self._by_connection)

    async def close(self) -> None:
        for subscriber in self._subscribers.values():
            await subscriber.close()


_routers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LocalRouter] = weakref.WeakKeyDictionary()


def local_router() -> LocalRouter:
    """This event loop's router (daphne runs one loop; tests make one per test)."""
    loop = asyncio.get_running_loop()
    router = _routers.get(loop)
    if router is None:
        router = _routers[loop] = LocalRouter()
        _close_with(loop, router)
    return router


def _close_with(loop: asyncio.AbstractEventLoop, router: LocalRouter) -> None:
    """Close the router's Redis connections when its loop closes (as channels-redis does for its layer)."""
    original = loop.close

    def close() -> None:
        if _routers.get(loop) is router:
            del _routers[loop]
            if not loop.is_closed() and not loop.is_running():
                loop.run_until_complete(router.close())
        loop.close = original  # type: ignore[method-assign]
        original()

    loop.close = close  # type: ignore[method-assign]
