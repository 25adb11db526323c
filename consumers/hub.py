"""The one WebSocket endpoint, /ws/: frame envelope, hello, errors, close codes (PROTOCOL §2).

Transport only: parse a frame, find its handler in the registry, validate `data`, call the
handler (which calls a service), send exactly one reply or error with the request's `ref`."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable
from typing import Any

import orjson
from autobahn.exception import Disconnected
from channels.consumer import get_handler_name
from channels.db import aclose_old_connections
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.utils import timezone
from pydantic import ValidationError

from consumers import handlers  # noqa: F401  (registers every request type)
from consumers.auth import CLOSE_UNAUTHORIZED
from consumers.connection import CLOSE_AFTER_ANSWER, Connection
from consumers.idle import idle_sweeper
from consumers.registry import CONNECT_HOOKS, DISCONNECT_HOOKS, ROUTES
from consumers.router import local_router
from hub import events, jsonbody, metrics, serialize
from hub.errors import BadRequest, HubError, RateLimited
from hub.services.ratelimit import Arrival, FloodGuard

log = logging.getLogger(__name__)

# What servers raise when the application sends after the client closed: daphne (autobahn)
# raises Disconnected; ASGI 2.4 servers raise an OSError.
SEND_AFTER_CLOSE: tuple[type[BaseException], ...] = (Disconnected, OSError)

CLOSE_TOO_LARGE = 1009
CLOSE_IDLE = 4408
CLOSE_FLOODING = 4429


def _validation_details(exc: ValidationError) -> list[dict[str, Any]]:
    return [
        {"field": ".".join(str(p) for p in err["loc"]) or "data", "message": err["msg"]}
        for err in exc.errors(include_url=False, include_input=False)
    ]


async def _raising(exc: Exception) -> dict[str, Any]:
    raise exc


class BadFrame(BadRequest):
    """A frame that is not a well-formed request; `ref` is the request's, once it is known to be one."""

    def __init__(self, message: str, ref: str | None = None) -> None:
        super().__init__(message)
        self.ref = ref


def _envelope(text: str) -> tuple[str | None, str, dict[str, Any]]:
    """`(ref, type, data)` of a request frame, or `BadFrame`; checks each field's JSON type before any use."""
    try:
        frame = jsonbody.loads(text)  # strict (no NaN, no lone surrogates) and at most MAX_DEPTH deep
    except jsonbody.InvalidJSON as exc:
        raise BadFrame(f"Frame is {exc}.") from None
    if not isinstance(frame, dict):
        raise BadFrame("A frame is a JSON object.")
    ref = frame.get("ref")
    if ref is not None and (not isinstance(ref, str) or "\x00" in ref):
        raise BadFrame("`ref` must be a string without U+0000.")
    frame_type, data = frame.get("type"), frame.get("data", {})
    if not isinstance(frame_type, str):
        raise BadFrame("`type` must be a string.", ref)
    if "\x00" in frame_type:
        raise BadFrame("`type` must not contain U+0000.", ref)
    if not isinstance(data, dict):
        raise BadFrame("`data` must be an object.", ref)
    return ref, frame_type, data


class HubConsumer(AsyncWebsocketConsumer):
    """One WebSocket. Events reach it from the process's router (consumers.router), not from a
    channel-layer channel of its own, and one per-process timer closes it when silent (ADR 0035)."""

    conn: Connection | None = None
    channel_layer = None
    channel_name = ""
    # While a frame (or the connect) is being handled, events wait here and follow its reply, as
    # they did in channels' dispatch loop, which took one message at a time.
    _busy = False
    _deferred: list[str] | None = None
    # Pipelined requests (message.send) still being answered.
    _inflight: set[asyncio.Task[None]]
    flood: FloodGuard

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Channels' consumer loop without its per-connection channel: no channel-layer SUBSCRIBE,
        queue and receive task per connection, one pending task less (ADR 0035)."""
        self.scope = scope
        self.base_send = send
        self._inflight = set()
        self.flood = FloodGuard()
        try:
            while True:
                await self.dispatch(await receive())
        except StopConsumer:
            pass
        finally:
            if self.conn is not None:  # cancelled or crashed before its disconnect ran
                await self.disconnect(1011)

    async def connect(self) -> None:
        await self.accept()
        if "hub_close" in self.scope:
            code, reason = self.scope["hub_close"]
            metrics.labelled(metrics.WS_CLOSES, str(code)).inc()
            await self.close(code=code, reason=reason)
            return
        user = self.scope["user"]
        connection_id = uuid.uuid4().hex
        router = local_router()
        self.channel_name = router.channel_name(connection_id)
        self.conn = Connection(user=user, connection_id=connection_id, channel_name=self.channel_name, consumer=self)
        metrics.WS_CONNECTIONS_OPEN.inc()  # from here on, `disconnect` undoes it however the connection ends
        metrics.WS_CONNECTIONS_TOTAL.inc()
        sweeper = idle_sweeper()
        sweeper.touch(self)
        if (valid_until := self.scope.get("hub_valid_until")) is not None:
            sweeper.lapses_at(self, valid_until)
        await router.add(user.id, connection_id, self)
        hello = events.Hello.trusted(
            {
                "user": serialize.user_public(user),
                "connection_id": self.conn.connection_id,
                "server_time": serialize.iso(timezone.now()),
                "heartbeat_s": settings.HUB_WS_HEARTBEAT_S,
            }
        )
        metrics.count_frame(metrics.WS_FRAMES_OUT, "hello")
        await self._send_text(events.encoded(hello))
        for hook in CONNECT_HOOKS:
            try:
                await hook(self.conn)
            except Exception:  # one feature failing (e.g. presence while Redis is away) must not cost the others
                log.exception("connect hook %s failed", getattr(hook, "__name__", hook))

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Channels' dispatch without its per-message thread hop to close stale DB connections.

        Channels runs `close_old_connections` in the sync thread before every frame and every event
        (a third of the event loop's time per chat message, measured; ADR 0015). Here no handler
        touches the database on the event loop: every database call goes through
        `database_sync_to_async`, which closes stale connections around itself."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        if self.conn is not None and message["type"] == "websocket.receive":
            idle_sweeper().touch(self)
        self._busy = True
        try:
            await handler(message)
        finally:
            while self._deferred:  # events that arrived meanwhile, in arrival order
                texts, self._deferred = self._deferred, None
                for text in texts:
                    await self._send_event(text)
            self._busy = False

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        """Channels' version without its loop over channel-layer groups (this consumer joins none)."""
        await self.disconnect(message["code"])
        await aclose_old_connections()
        raise StopConsumer()

    async def disconnect(self, code: int) -> None:
        if self.conn is None:
            return
        conn, self.conn = self.conn, None
        metrics.WS_CONNECTIONS_OPEN.dec()
        self._unroute(conn)
        for hook in DISCONNECT_HOOKS:
            try:
                await hook(conn)
            except Exception:  # one feature's cleanup must not skip the others'
                log.exception("disconnect hook %s failed", getattr(hook, "__name__", hook))

    def _unroute(self, conn: Connection) -> None:
        local_router().remove(conn.user_id, conn.connection_id, self)
        idle_sweeper().remove(self)

    async def close_with(self, code: int, reason: str = "") -> None:
        """Close from the hub's side with a protocol close code."""
        metrics.labelled(metrics.WS_CLOSES, str(code)).inc()
        await self.close(code=code, reason=reason)

    async def close_idle(self) -> None:
        """No frame for HUB_WS_IDLE_TIMEOUT_S (the process's idle sweeper decided): 4408."""
        if self.conn is not None:
            await self.close_with(CLOSE_IDLE, "idle")

    async def close_expired(self) -> None:
        """The credential this connection authenticated with lapsed (its token's `exp`): 4401."""
        if self.conn is not None:
            await self.close_with(CLOSE_UNAUTHORIZED, "token expired")

    async def send_frame(self, frame: dict[str, Any]) -> None:
        metrics.count_frame(metrics.WS_FRAMES_OUT, frame["type"])
        await self._send_text(orjson.dumps(frame).decode())

    async def _send_text(self, text: str) -> None:
        """Send, unless the peer has just gone: a reply or event racing the client's close must not
        crash the consumer, or `disconnect` (group discard, presence) would never run."""
        try:
            await self.send(text_data=text)
        except SEND_AFTER_CLOSE as exc:
            log.debug("dropped a frame for a closed connection: %s", exc)

    async def deliver(self, text: str, exclude: str | None) -> None:
        """An event from the router, already encoded; after the reply of a frame being handled."""
        if self.conn is None or exclude == self.channel_name:
            return
        if self._busy:
            if self._deferred is None:
                self._deferred = []
            self._deferred.append(text)
            return
        await self._send_event(text)

    async def _send_event(self, text: str) -> None:
        if self.conn is None:
            return
        metrics.count_frame(metrics.WS_FRAMES_OUT, "event")
        await self._send_text(text)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """One client frame: exactly one reply or error, whatever it holds; the connection stays open."""
        if self.conn is None:
            return
        if text_data is None:
            await self._error(None, BadRequest("Binary frames are not supported; send JSON text."))
            return
        limit = settings.HUB_WS_MAX_FRAME_BYTES
        size = len(text_data)
        if size > limit or (size * 4 > limit and len(text_data.encode(errors="surrogatepass")) > limit):
            await self.close_with(CLOSE_TOO_LARGE, "frame too large")
            return
        ref: str | None = None
        try:
            ref, frame_type, data = _envelope(text_data)
            await self._request(ref, frame_type, data)
        except BadFrame as exc:
            metrics.count_frame(metrics.WS_FRAMES_IN, "unknown")
            await self._error(exc.ref, exc)
        except HubError as exc:
            await self._error(ref, exc)
        except Exception:  # a bug: the client learns `internal`, the connection and its hooks live on
            log.exception("handling a frame failed")
            await self._error(ref, HubError())

    async def _request(self, ref: str | None, frame_type: str, data: dict[str, Any]) -> None:
        """A well-formed request: validate its data, call its handler, answer it."""
        assert self.conn is not None
        route = ROUTES.get(frame_type)
        metrics.count_frame(metrics.WS_FRAMES_IN, frame_type if route is not None else "unknown")
        if route is None:
            raise BadRequest(f"Unknown request type {frame_type[:100]!r}.")
        arrival = self.flood.arrived(frame_type)
        try:
            payload = route.schema.model_validate(data)
        except ValidationError as exc:
            raise BadRequest("Invalid data.", errors=_validation_details(exc)) from exc
        if route.pipelined:
            # Called now, in frame order: the handler takes its place in line (e.g. queues the send)
            # before returning what to await; answered when done, so a client flushing an outbox
            # does not wait a round trip per message.
            try:
                pending = route.func(self.conn, payload)
            except Exception as exc:  # refused at once (e.g. `busy`): answered like any other error
                pending = _raising(exc)
            task = asyncio.get_running_loop().create_task(self._answer(route.frame_type, ref, pending, arrival))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
            return
        if self._inflight:  # any other request sees this connection's earlier sends done
            await asyncio.gather(*self._inflight, return_exceptions=True)
        await self._answer(route.frame_type, ref, route.func(self.conn, payload), arrival)

    async def _answer(
        self, frame_type: str, ref: str | None, pending: Awaitable[dict[str, Any] | None], arrival: Arrival
    ) -> None:
        """Await the handler's result; exactly one reply or error with the request's `ref`."""
        try:
            reply = await pending
        except RateLimited as exc:
            if self.flood.refused(arrival, exc.retry_after_s) and self.conn is not None:
                self.conn.close_after_answer(CLOSE_FLOODING, "flooding")
            await self._error(ref, exc)
            await self._close_if_asked()
            return
        except HubError as exc:
            await self._error(ref, exc)
            await self._close_if_asked()
            return
        except Exception:
            log.exception("handler %s failed", frame_type)
            await self._error(ref, HubError())
            return
        self.flood.accepted(arrival)
        if self.conn is not None:
            await self.send_frame({"type": "reply", "ref": ref, "data": reply or {}})
            await self._close_if_asked()

    async def _close_if_asked(self) -> None:
        """A handler asked (Connection.close_after_answer) to close once its answer is out."""
        if self.conn is not None and (pending := self.conn.state.pop(CLOSE_AFTER_ANSWER, None)):
            await self.close_with(*pending)

    async def _error(self, ref: str | None, exc: HubError) -> None:
        metrics.labelled(metrics.ERRORS, exc.code, "ws").inc()
        frame: dict[str, Any] = {"type": "error", "data": exc.as_data()}
        if ref is not None:
            frame["ref"] = ref
        await self.send_frame(frame)
