"""This process's event router: one Redis subscription per user with local connections (ADR 0035, 0050).

The web process keeps one table of its open connections and subscribes, on one Redis connection of
its own, to the channel of each user with at least one local connection and to one channel of the
process for events to exactly one connection (`hub.realtime.publish_to_connection`). An incoming event is
decoded once and handed to each local connection of its user in arrival order, so per connection
the order of publication is kept. Channel names and payloads are hub.realtime's.

Losing Redis (ADR 0050): the subscription connection is pinged when silent, so a dead one is noticed
even without a reset. The router then reconnects by itself (backoff with jitter, up to
`RECONNECT_MAX_S`), subscribes again to everything wanted, and sends `{"type": "resync"}` to every
connection that may have missed events: those open when the subscription was lost and those that
connected meanwhile. A handshake made while Redis is away is accepted (its `hello` is not held):
it gets `resync` once the subscription is back. No connection is closed because of Redis."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import uuid
import weakref
from typing import Any, Protocol

import orjson
from django.conf import settings

from hub import events, metrics, realtime
from hub.coalesce import Coalescer
from hub.redis_clients import subscriber_connection

log = logging.getLogger(__name__)

# What a connection that may have missed events is told (PROTOCOL §2.1), from the catalogue.
RESYNC_FRAME = events.encoded(events.Resync())

RECONNECT_MIN_S = 0.05
RECONNECT_MAX_S = 2.0
STABLE_S = 10.0  # a connection that lived this long was not a flap: the next reconnect starts fast again


class Receiver(Protocol):
    """What the router delivers to: a connection's consumer."""

    async def deliver(self, text: str, exclude: str | None) -> None: ...

    async def close_with(self, code: int, reason: str = "") -> None: ...


class SubscriptionDown(ConnectionError):
    """The router has no Redis subscription connection right now."""


class _Subscription:
    """The process's SUBSCRIBE connection: whatever is wanted is subscribed, on every connection it gets.

    Changes go out in batches (a `Coalescer`: what is asked while one batch is in flight makes the
    next); a batch ends with `PING <n>`, whose reply says Redis has applied everything before it."""

    def __init__(self, router: LocalRouter) -> None:
        self._router = router
        self._wanted: set[str] = set()
        self._subscribed: set[str] = set()  # confirmed on the current connection
        self._conn: Any = None
        self._first_attempt: asyncio.Future[None] | None = None  # done once the first connect is decided
        self._pongs: dict[bytes, asyncio.Future[None]] = {}
        self._tokens = itertools.count(1)
        self._changes: Coalescer[str, None] = Coalescer(self._apply)
        self._task: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        return self._conn is not None

    def start(self, channel: str) -> None:
        """Want `channel` for good (the process's own) and start the connection."""
        if self._task is None:
            self._wanted.add(channel)
            loop = asyncio.get_running_loop()
            self._first_attempt = loop.create_future()
            self._task = loop.create_task(self._run())

    def subscribed(self, channel: str) -> bool:
        return channel in self._subscribed

    async def want(self, *channels: str) -> None:
        """Subscribe; returns once Redis confirmed. Raises (SubscriptionDown, …) while Redis is away;
        the channels stay wanted and are subscribed on the next connection."""
        self._wanted.update(channels)
        for channel in channels:
            if channel not in self._subscribed:
                await self._changes(channel)

    async def settled(self, channel: str) -> None:
        """Returns once Redis holds what is wanted for `channel` (without wanting it)."""
        await self._changes(channel)

    def unwant(self, channel: str) -> None:
        self._wanted.discard(channel)
        self._changes.submit(channel)

    async def _connection(self) -> Any:
        if self._conn is None and self._first_attempt is not None and not self._first_attempt.done():
            await asyncio.shield(self._first_attempt)  # the process's first connect: wait for it
        if self._conn is None:
            raise SubscriptionDown("no Redis subscription connection")
        return self._conn

    async def _apply(self, channels: list[str]) -> list[None]:
        """One batch of changes: (UN)SUBSCRIBE what differs from what is wanted, then wait for Redis."""
        conn = await self._connection()
        changed = dict.fromkeys(channels)
        subscribe = [c for c in changed if c in self._wanted and c not in self._subscribed]
        unsubscribe = [c for c in changed if c not in self._wanted and c in self._subscribed]
        if subscribe or unsubscribe:
            token = f"hub-applied-{next(self._tokens)}".encode()
            done = self._pongs[token] = asyncio.get_running_loop().create_future()
            self._subscribed.difference_update(unsubscribe)
            if unsubscribe:
                await conn.send_command("UNSUBSCRIBE", *unsubscribe, check_health=False)
            if subscribe:
                await conn.send_command("SUBSCRIBE", *subscribe, check_health=False)
            await conn.send_command("PING", token, check_health=False)
            await done
            if self._conn is not conn:
                raise SubscriptionDown("the Redis subscription connection was lost")
            self._subscribed.update(subscribe)
        return [None] * len(channels)

    async def _run(self) -> None:
        """Connect, subscribe everything wanted, read; on any failure start over, for as long as the process runs."""
        delay = RECONNECT_MIN_S
        lost = False
        loop = asyncio.get_running_loop()
        while True:
            conn = subscriber_connection()
            try:
                await conn.connect()
            except Exception as exc:
                self._settle_first_attempt()
                metrics.ROUTER_RECONNECTS.labels("failed").inc()
                log.warning("router: Redis unreachable (%s); retrying in %.2f s", exc, delay)
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, RECONNECT_MAX_S)
                continue
            self._conn = conn
            self._settle_first_attempt()
            if lost:
                metrics.ROUTER_RECONNECTS.labels("connected").inc()
                log.warning("router: reconnected to Redis; subscribing again")
            started = loop.time()
            resubscribe = loop.create_task(self._resubscribe())
            try:
                await self._read(conn)
            except Exception as exc:
                log.warning("router: lost the Redis subscription (%s); reconnecting", exc)
            finally:
                resubscribe.cancel()
                await self._lose(conn)
            lost = True
            delay = RECONNECT_MIN_S if loop.time() - started > STABLE_S else min(delay * 2, RECONNECT_MAX_S)
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))

    def _settle_first_attempt(self) -> None:
        if self._first_attempt is not None and not self._first_attempt.done():
            self._first_attempt.set_result(None)

    async def _resubscribe(self) -> None:
        """On a new connection: everything wanted, in batches; then `resync` where events may be missing."""
        wanted = list(self._wanted)
        try:
            for channel in wanted[:-1]:
                self._changes.submit(channel)
            await self._changes(wanted[-1])
        except Exception as exc:  # the connection failed again: the next one starts over
            log.warning("router: subscribing again failed (%s)", exc)
            return
        await self._router.resync_stale()

    async def _read(self, conn: Any) -> None:
        """Messages and replies until the connection fails; a silent connection is pinged, a dead one raises."""
        ping_s = settings.HUB_ROUTER_PING_S
        pinged = False
        while True:
            reply = await conn.read_response(disable_decoding=True, timeout=ping_s, push_request=True)
            if reply is None:  # nothing for ping_s
                if pinged:
                    raise SubscriptionDown(f"no answer to PING within {ping_s} s")
                pinged = True
                await conn.send_command("PING", check_health=False)
                continue
            pinged = False
            if isinstance(reply, bytes):  # PING's reply, as some servers and parsers give it: the bare argument
                self._ponged(reply)
            elif reply[0] == b"message":
                await self._router.dispatch(reply[1], reply[2])
            elif reply[0] == b"pong":
                self._ponged(reply[1])

    def _ponged(self, token: bytes) -> None:
        done = self._pongs.pop(token, None)
        if done is not None and not done.done():
            done.set_result(None)

    async def _lose(self, conn: Any) -> None:
        """The connection is gone: nothing is subscribed; every local connection may miss events."""
        self._conn = None
        self._subscribed.clear()
        pongs, self._pongs = self._pongs, {}
        for done in pongs.values():
            if not done.done():
                done.set_exception(SubscriptionDown("the Redis subscription connection was lost"))
        self._router.mark_all_stale()
        try:
            await conn.disconnect(nowait=True)
        except Exception:  # already broken; nothing more to release
            log.debug("router: disconnect failed", exc_info=True)

    async def close(self) -> None:
        if self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.disconnect()


class LocalRouter:
    """The open connections of this process (one event loop) and their Redis subscriptions."""

    def __init__(self) -> None:
        self.process_channel = realtime.new_process_channel()
        self._subscription = _Subscription(self)
        self._by_user: dict[str, dict[Receiver, None]] = {}  # user's Redis channel -> its local connections
        self._by_connection: dict[str, Receiver] = {}
        self._stale: dict[Receiver, None] = {}  # may have missed events: `resync` once subscribed again
        self._waiters: set[asyncio.Task[None]] = set()  # handshakes that gave up waiting for a slow Redis

    def channel_name(self, connection_id: str) -> str:
        """The `channel_name` of a local connection: `publish_to_connection` reaches it in this process."""
        return realtime.connection_channel(self.process_channel, connection_id)

    async def add(self, user_id: uuid.UUID, connection_id: str, receiver: Receiver) -> None:
        """Route the user's events and the connection's own to `receiver`; returns once subscribed.

        Never raises for Redis: while the subscription is down it returns at once, and after
        HUB_WS_SUBSCRIBE_WAIT_S if Redis is slow, with the connection due a `resync`."""
        channel = realtime.user_channel(user_id)
        self._by_user.setdefault(channel, {})[receiver] = None
        self._by_connection[connection_id] = receiver
        subscription = self._subscription
        subscription.start(self.process_channel)
        if subscription.subscribed(channel) and subscription.subscribed(self.process_channel):
            return
        try:
            async with asyncio.timeout(settings.HUB_WS_SUBSCRIBE_WAIT_S):
                await subscription.want(self.process_channel, channel)
        except TimeoutError:  # Redis slow: don't hold the hello; resync once the subscription is confirmed
            self._stale[receiver] = None
            task = asyncio.get_running_loop().create_task(self._resync_when_subscribed(channel, receiver))
            self._waiters.add(task)
            task.add_done_callback(self._waiters.discard)
        except Exception:  # the subscription is down: resubscribed (and resync sent) when Redis is back
            self._stale[receiver] = None

    async def _resync_when_subscribed(self, channel: str, receiver: Receiver) -> None:
        try:
            await self._subscription.settled(channel)
        except Exception:  # down: the reconnect sends the resync
            return
        if receiver in self._stale:
            del self._stale[receiver]
            await self._resync(receiver)

    def remove(self, user_id: uuid.UUID, connection_id: str, receiver: Receiver) -> None:
        """Stop routing to `receiver`; the user's subscription ends with their last local connection."""
        self._by_connection.pop(connection_id, None)
        self._stale.pop(receiver, None)
        channel = realtime.user_channel(user_id)
        local = self._by_user.get(channel)
        if local is None:
            return
        local.pop(receiver, None)
        if not local:
            del self._by_user[channel]
            self._subscription.unwant(channel)

    def mark_all_stale(self) -> None:
        """The subscription was lost: every local connection may miss what is published until it is back."""
        for receiver in self._by_connection.values():
            self._stale[receiver] = None

    async def resync_stale(self) -> None:
        """Subscribed again: tell each connection that may have missed events to `sync`."""
        stale, self._stale = self._stale, {}
        for receiver in stale:
            await self._resync(receiver)

    async def _resync(self, receiver: Receiver) -> None:
        metrics.RESYNCS.inc()
        try:
            await receiver.deliver(RESYNC_FRAME, None)
        except Exception:
            log.exception("router: resync delivery failed")

    async def dispatch(self, channel: bytes, payload: bytes) -> None:
        """One published message: decoded once, handed to each local recipient in turn."""
        name = channel.decode()
        try:
            message = orjson.loads(payload)
            if name == self.process_channel:
                receiver = self._by_connection.get(message["to"])
                receivers = [receiver] if receiver is not None else []
            else:
                receivers = list(self._by_user.get(name, ()))
            if "close" in message:
                code, reason = int(message["close"]), str(message.get("reason", ""))
            else:
                text, exclude = str(message["text"]), message.get("exclude")
        except Exception:  # not ours (a foreign publisher on our channel names): nothing to deliver
            log.warning("router: undecodable message on %s", name)
            return
        for receiver in receivers:
            try:
                if "close" in message:
                    await receiver.close_with(code, reason)
                else:
                    await receiver.deliver(text, exclude)
            except Exception:  # one broken connection must not keep an event from the others
                log.exception("router: delivery failed")

    def connection_count(self) -> int:
        return len(self._by_connection)

    async def close(self) -> None:
        await self._subscription.close()


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
    """Close the router's Redis connection when its loop closes."""
    original = loop.close

    def close() -> None:
        if _routers.get(loop) is router:
            del _routers[loop]
            if not loop.is_closed() and not loop.is_running():
                loop.run_until_complete(router.close())
        loop.close = original  # type: ignore[method-assign]
        original()

    loop.close = close  # type: ignore[method-assign]
