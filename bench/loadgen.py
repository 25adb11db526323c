"""The load generator: many real WebSocket clients per process, in several processes.

The harness starts one worker process per `--procs`; each runs one asyncio loop holding its share of
the clients. Workers and harness meet at numbered phases: a worker connects, reports `ready`, waits
for the harness to open the next phase (with a common start time), runs it and reports again.
Timestamps are `time.perf_counter()`, which is CLOCK_MONOTONIC on Linux and so comparable across the
processes of one machine. Only 127.0.0.1 is ever contacted."""

from __future__ import annotations

import abc
import asyncio
import base64
import contextlib
import hashlib
import itertools
import math
import os
import resource
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

HOST = "127.0.0.1"
OPEN_TIMEOUT_S = 20.0
BODY = "Hi! Could you come on Thursday at 10 instead? The door code is 4711, thanks."

now = time.perf_counter


# --------------------------------------------------------------------------------------------
# The three servers' client protocols
# --------------------------------------------------------------------------------------------


@dataclass
class Incoming:
    """What a received frame means to the generator."""

    kind: str  # "msg" (a chat message or fan-out event, by id), "ack", "error", "other"
    key: str = ""
    data: dict[str, Any] = field(default_factory=dict)


class Proto(abc.ABC):
    """How one kind of server is spoken to: where to connect, how a message is sent and recognised."""

    kind = ""
    needs_hello = False

    def __init__(self, port: int) -> None:
        self.port = port

    @abc.abstractmethod
    def url(self, room: str) -> str: ...

    def headers(self, token: str | None) -> dict[str, str]:
        return {}

    def origin(self) -> str | None:
        return None

    @abc.abstractmethod
    def encode(self, msg_id: str, room: str) -> str: ...

    @abc.abstractmethod
    def decode(self, text: str | bytes) -> Incoming: ...


class RelayProto(Proto):
    kind = "relay"

    def url(self, room: str) -> str:
        return f"ws://{HOST}:{self.port}/room/{room}"

    def encode(self, msg_id: str, room: str) -> str:
        return orjson.dumps({"id": msg_id, "body": BODY}).decode()

    def decode(self, text: str | bytes) -> Incoming:
        return Incoming("msg", orjson.loads(text)["id"])


class TutorialProto(Proto):
    """The Channels tutorial: `{"message": str}` both ways; its origin validator wants an Origin."""

    kind = "tutorial"

    def url(self, room: str) -> str:
        return f"ws://{HOST}:{self.port}/ws/chat/{room}/"

    def origin(self) -> str:
        return f"http://{HOST}:{self.port}"

    def encode(self, msg_id: str, room: str) -> str:
        return orjson.dumps({"message": f"{msg_id} {BODY}"}).decode()

    def decode(self, text: str | bytes) -> Incoming:
        return Incoming("msg", orjson.loads(text)["message"].partition(" ")[0])


class HubProto(Proto):
    """The hub (PROTOCOL §2): bearer token, `hello` first, `message.send` → reply + `message.created`."""

    kind = "hub"
    needs_hello = True
    FANOUT_EVENT = "bench.fanout"

    def url(self, room: str) -> str:
        return f"ws://{HOST}:{self.port}/ws/"

    def headers(self, token: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    def encode(self, msg_id: str, room: str) -> str:
        frame = {
            "type": "message.send",
            "ref": msg_id,
            "data": {"conversation_id": room, "client_id": msg_id, "body": BODY},
        }
        return orjson.dumps(frame).decode()

    def decode(self, text: str | bytes) -> Incoming:
        frame = orjson.loads(text)
        kind, data = frame.get("type"), frame.get("data") or {}
        if kind == "message.created":
            return Incoming("msg", data["message"]["client_id"], data)
        if kind == "reply":
            return Incoming("ack", frame.get("ref") or "", data)
        if kind == "error":
            return Incoming("error", frame.get("ref") or "", data)
        if kind == self.FANOUT_EVENT:
            return Incoming("msg", data["id"], data)
        return Incoming("other", kind or "", data)

    @staticmethod
    def ping() -> str:
        return orjson.dumps({"type": "ping", "ref": "hb"}).decode()


PROTOS: dict[str, type[Proto]] = {"relay": RelayProto, "tutorial": TutorialProto, "hub": HubProto}


def make_proto(target: dict[str, Any]) -> Proto:
    return PROTOS[target["kind"]](target["port"])


def classify(exc: BaseException) -> str:
    """A short reason for a failed connect, for the storm's refusal table."""
    if isinstance(exc, InvalidStatus):
        return f"http {exc.response.status_code}"
    if isinstance(exc, ConnectionClosed):
        code = exc.rcvd.code if exc.rcvd else 1006
        return f"closed {code}"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "timeout"
    if isinstance(exc, OSError) and exc.errno is not None:
        return os.strerror(exc.errno)
    return type(exc).__name__


async def open_ws(proto: Proto, room: str, token: str | None = None) -> ClientConnection:
    """Connect one client; for the hub, wait for `hello` (the hub's handshake is done then)."""
    ws = await connect(
        proto.url(room),
        additional_headers=proto.headers(token),
        origin=proto.origin(),  # type: ignore[arg-type]
        compression=None,
        proxy=None,  # looking proxies up in the environment costs a fifth of a connect's CPU
        ping_interval=None,
        open_timeout=OPEN_TIMEOUT_S,
        max_size=2**20,
        max_queue=None,
    )
    if proto.needs_hello:
        try:
            first = orjson.loads(await asyncio.wait_for(ws.recv(), OPEN_TIMEOUT_S))
        except BaseException:
            ws.transport.abort()
            raise
        if first.get("type") != "hello":
            await ws.close()
            raise ConnectionError(f"first frame was {first.get('type')!r}, not hello")
    return ws


# --------------------------------------------------------------------------------------------
# A minimal client for the idle and storm scenarios
# --------------------------------------------------------------------------------------------

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _frame(opcode: int, payload: bytes) -> bytes:
    """A client frame (masked, as RFC 6455 requires; the all-zero key leaves the payload as is)."""
    assert len(payload) < 126
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + b"\0\0\0\0" + payload


def _parse_frame(buf: bytearray) -> tuple[int, bytes] | None:
    """Take one (unmasked, server) frame off the buffer: (opcode, payload), or None if incomplete."""
    if len(buf) < 2:
        return None
    length, start = buf[1] & 0x7F, 2
    if length == 126:
        if len(buf) < 4:
            return None
        length, start = int.from_bytes(buf[2:4], "big"), 4
    elif length == 127:
        if len(buf) < 10:
            return None
        length, start = int.from_bytes(buf[2:10], "big"), 10
    if len(buf) < start + length:
        return None
    opcode, payload = buf[0] & 0x0F, bytes(buf[start : start + length])
    del buf[: start + length]
    return opcode, payload


class RawClient(asyncio.Protocol):
    """A real RFC 6455 client reduced to what holding a connection needs: the handshake, the hub's
    `hello`, heartbeat pings and a clean close. The `websockets` client spends ~0.7 ms of CPU per
    connect, which on two cores shared with the server would measure the generator, not the server."""

    def __init__(self, proto: Proto, room: str, token: str | None) -> None:
        key = base64.b64encode(os.urandom(16))
        self.accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
        path = proto.url(room).split(str(proto.port), 1)[1]
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {HOST}:{proto.port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key.decode()}",
            "Sec-WebSocket-Version: 13",
        ]
        lines += [f"{k}: {v}" for k, v in proto.headers(token).items()]
        if origin := proto.origin():
            lines.append(f"Origin: {origin}")
        self.request = ("\r\n".join(lines) + "\r\n\r\n").encode()
        self.need_hello = proto.needs_hello
        self.buf = bytearray()
        self.stage = 0  # 0: handshake, 1: waiting for hello, 2: open
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.close_code: int | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.request)  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        if self.stage == 2:
            if data[:1] == b"\x88":
                self.close_code = int.from_bytes(data[2:4], "big") if len(data) >= 4 else 1005
            return  # events and pongs are not needed: dropped unread, nothing piles up
        self.buf += data
        if self.stage == 0:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end])
            del self.buf[: end + 4]
            status = head.split(b" ", 2)[1]
            if status != b"101":
                return self._fail(f"http {int(status)}")
            if self.accept not in head:
                return self._fail("bad Sec-WebSocket-Accept")
            self.stage = 1 if self.need_hello else 2
        if self.stage == 1:
            frame = _parse_frame(self.buf)
            if frame is None:
                return
            opcode, payload = frame
            if opcode == 0x8:
                return self._fail(f"closed {int.from_bytes(payload[:2], 'big') if len(payload) >= 2 else 1005}")
            if opcode != 0x1 or orjson.loads(payload).get("type") != "hello":
                return self._fail("no hello")
            self.stage = 2
        if self.stage == 2 and not self.ready.done():
            self.buf = bytearray()
            self.ready.set_result(None)

    def _fail(self, reason: str) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(reason))
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.close_code is None:
            self.close_code = 1006
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("closed 1006" if exc is None else classify(exc)))

    @property
    def open(self) -> bool:
        return self.stage == 2 and self.close_code is None

    def send_text(self, text: str) -> None:
        if self.open and self.transport is not None:
            self.transport.write(_frame(0x1, text.encode()))

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(_frame(0x8, (1000).to_bytes(2, "big")))
            self.transport.close()


async def open_raw(proto: Proto, room: str, token: str | None = None) -> RawClient:
    loop = asyncio.get_running_loop()
    _, client = await asyncio.wait_for(
        loop.create_connection(lambda: RawClient(proto, room, token), HOST, proto.port), OPEN_TIMEOUT_S
    )
    try:
        await asyncio.wait_for(client.ready, OPEN_TIMEOUT_S)
    except BaseException:
        if client.transport is not None:
            client.transport.abort()
        raise
    return client


def classify_raw(exc: BaseException) -> str:
    return str(exc) if type(exc) is ConnectionError and str(exc) else classify(exc)


async def open_many(
    proto: Proto, plan: list[tuple[str, str | None]], concurrency: int, attempts: int = 5
) -> tuple[list[ClientConnection | None], Counter[str]]:
    """Open one connection per (room, token), `concurrency` at a time, retrying a refused connect a
    few times as a real client would; returns the connections (None where every attempt failed)
    and every failed attempt by reason."""
    sem = asyncio.Semaphore(concurrency)
    failures: Counter[str] = Counter()

    async def one(room: str, token: str | None) -> ClientConnection | None:
        for attempt in range(attempts):
            async with sem:
                try:
                    return await open_ws(proto, room, token)
                except Exception as exc:
                    failures[classify(exc)] += 1
            await asyncio.sleep(0.1 * 2**attempt)
        return None

    conns = await asyncio.gather(*(one(room, token) for room, token in plan))
    return list(conns), failures


async def close_all(conns: list[ClientConnection | None], within_s: float = 15.0) -> None:
    """Close politely (close handshake), then drop whatever did not finish in time."""
    live = [ws for ws in conns if ws is not None]
    with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(ws.close() for ws in live), return_exceptions=True), within_s)
    for ws in live:
        ws.transport.abort()


async def until(done: Callable[[], bool], within_s: float, poll_s: float = 0.005) -> bool:
    """Poll `done` until it holds or `within_s` passed. What it watches lives in counters of other
    tasks or in memory shared with the harness process, where an asyncio.Event cannot reach."""
    deadline = now() + within_s
    while not done():
        if now() >= deadline:
            return False
        await asyncio.sleep(poll_s)
    return True


# --------------------------------------------------------------------------------------------
# Phases: how a worker meets the harness
# --------------------------------------------------------------------------------------------


class Control:
    """The worker's side of the phase protocol (queues and shared values made by the harness)."""

    def __init__(self, worker: int, ready_q: Any, phase: Any, start_at: Any) -> None:
        self.worker, self.ready_q, self.phase, self.start_at = worker, ready_q, phase, start_at

    def report(self, info: dict[str, Any]) -> None:
        self.ready_q.put(("ok", self.worker, info))

    async def wait_phase(self, number: int) -> float:
        """Wait until the harness opens phase `number`; returns its common start time."""
        await until(lambda: self.phase.value >= number, math.inf)
        start_at = float(self.start_at.value)
        if (delay := start_at - now()) > 0:
            await asyncio.sleep(delay)
        return start_at


def worker_main(scenario: str, spec: dict[str, Any], worker: int, ready_q: Any, phase: Any, start_at: Any) -> None:
    """Entry point of a worker process."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    ctl = Control(worker, ready_q, phase, start_at)
    try:
        asyncio.run(SCENARIOS[scenario](spec, ctl))
    except BaseException:
        ready_q.put(("error", worker, traceback.format_exc()))
        raise


# --------------------------------------------------------------------------------------------
# Chat: two-party rooms, an open-loop send schedule, send → peer's event latency and loss
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Sent:
    sender: int
    t_send: float
    measured: bool
    delivered: bool = False
    acked: bool = False
    refused: str = ""


class ChatWorker:
    """One process's share of the rooms: 2 clients per room, each with a reader and a sender task."""

    def __init__(self, spec: dict[str, Any], ctl: Control) -> None:
        self.spec, self.ctl = spec, ctl
        self.proto = make_proto(spec["target"])
        self.rooms: list[dict[str, Any]] = spec["rooms"]
        self.msgs: dict[str, Sent] = {}
        self.latencies: list[float] = []
        self.ack_latencies: list[float] = []
        self.lags: list[float] = []
        self.errors: Counter[str] = Counter()
        self.closes: Counter[str] = Counter()
        self.connect_failures: Counter[str] = Counter()
        self.pushed_back = 0
        self.send_failures = 0
        self.queues: list[asyncio.Queue[tuple[str, float] | None]] = []
        self.room_of: list[str] = []
        self.conns: list[ClientConnection | None] = []
        # The hub's client_id is a UUID; the baselines take any string.
        if self.proto.kind == "hub":
            self.ids: Iterator[str] = (str(uuid.uuid4()) for _ in itertools.count())
        else:
            self.ids = (f"w{ctl.worker}-{n}" for n in itertools.count())
        self.measuring = False
        self.outstanding = 0  # measured messages not yet delivered (and, for the hub, not yet acked)

    async def run(self) -> None:
        plan: list[tuple[str, str | None]] = []
        for room in self.rooms:
            for token in room.get("tokens") or [None, None]:
                plan.append((room["name"], token))
                self.room_of.append(room["name"])
        self.conns, self.connect_failures = await open_many(self.proto, plan, 50)
        if any(ws is None for ws in self.conns):
            raise RuntimeError(f"chat clients could not connect: {dict(self.connect_failures)}")
        self.queues = [asyncio.Queue() for _ in self.conns]
        readers = [asyncio.create_task(self.reader(i)) for i in range(len(self.conns))]
        senders = [asyncio.create_task(self.sender(i)) for i in range(len(self.conns))]
        await self.warm_up()
        self.ctl.report({"clients": len(self.conns)})
        start_at = await self.ctl.wait_phase(1)
        self.measuring = True
        cpu0 = time.process_time()
        await self.schedule(start_at, self.spec["rate"], self.spec["duration"])
        send_window = now() - start_at
        cut_off = await self.drain(self.spec["drain_s"], self.spec.get("drain_cap_s", 120.0))
        drain = now() - start_at - send_window
        for q in self.queues:
            q.put_nowait(None)
        await close_all(self.conns)
        for task in readers + senders:
            task.cancel()
        measured = [m for m in self.msgs.values() if m.measured]
        missing = sum(1 for m in measured if not m.delivered and not m.refused)
        self.ctl.report(
            {
                "offered": int(self.spec["rate"] * self.spec["duration"]),
                "sent": len(measured),
                "delivered": sum(m.delivered for m in measured),
                "lost": 0 if cut_off else missing,
                "late": missing if cut_off else 0,
                "refused": sum(1 for m in measured if m.refused),
                "acked": sum(m.acked for m in measured),
                "latencies_ms": [round(x * 1000, 3) for x in self.latencies],
                "ack_latencies_ms": [round(x * 1000, 3) for x in self.ack_latencies],
                "lag_ms": [round(x * 1000, 3) for x in self.lags],
                "errors": dict(self.errors),
                "closes": dict(self.closes),
                "connect_failures": dict(self.connect_failures),
                "pushed_back": self.pushed_back,
                "send_failures": self.send_failures,
                "send_window_s": send_window,
                "drain_s": drain,
                "generator_cpu_s": time.process_time() - cpu0,
            }
        )

    async def drain(self, stall_s: float, cap_s: float) -> bool:
        """Wait for what is still on its way: while deliveries keep coming (a server working through
        a backlog is slow, not lossy), up to `cap_s`; give up after `stall_s` without progress.
        What has not arrived then is lost. True when the cap, not a stall, ended the wait: what is
        missing then was still arriving (late, not lost)."""
        deadline = now() + cap_s
        while self.outstanding > 0:
            if now() >= deadline:
                return True
            before = self.outstanding
            await until(lambda: self.outstanding < before or self.outstanding <= 0, stall_s, 0.01)  # noqa: B023
            if self.outstanding >= before:
                return False
        return False

    async def warm_up(self) -> None:
        """Two messages per client, not measured: connections, caches and pools are warm after."""
        for _ in range(2):
            for i in range(len(self.conns)):
                self.queues[i].put_nowait((next(self.ids), now()))
            await until(lambda: all(m.delivered for m in self.msgs.values()) or bool(self.errors), 30, 0.01)
        if any(not m.delivered for m in self.msgs.values()):
            raise RuntimeError(f"warm-up messages not delivered: errors={dict(self.errors)} closes={dict(self.closes)}")

    async def schedule(self, start_at: float, rate: float, duration: float) -> None:
        """Open loop: message k is due at start + k/rate, whatever the server does; rooms take turns."""
        total = int(rate * duration)
        n_rooms = len(self.rooms)
        k = 0
        while k < total:
            due = min(total, int((now() - start_at) * rate) + 1)
            while k < due:
                room, turn = k % n_rooms, (k // n_rooms) % 2
                self.queues[2 * room + turn].put_nowait((next(self.ids), start_at + k / rate))
                k += 1
            await asyncio.sleep(max(0.0, start_at + k / rate - now()))

    async def sender(self, i: int) -> None:
        ws, queue, room = self.conns[i], self.queues[i], self.room_of[i]
        assert ws is not None
        while (item := await queue.get()) is not None:
            msg_id, t_sched = item
            if msg_id not in self.msgs:
                t = now()
                self.msgs[msg_id] = Sent(i, t, self.measuring)
                if self.measuring:
                    self.outstanding += 1
                    self.lags.append(t - t_sched)
            try:
                await ws.send(self.proto.encode(msg_id, room))
            except ConnectionClosed:
                self.send_failures += 1

    async def reader(self, i: int) -> None:
        ws = self.conns[i]
        assert ws is not None
        is_hub = self.proto.needs_hello
        try:
            async for text in ws:
                t = now()
                inc = self.proto.decode(text)
                m = self.msgs.get(inc.key)
                if m is None:
                    continue
                if inc.kind == "msg":
                    if m.sender == i or m.delivered:
                        continue  # the sender's own copy (tutorial, hub), or a duplicate
                    m.delivered = True
                    if m.measured:
                        self.latencies.append(t - m.t_send)
                        if not is_hub or m.acked:
                            self.outstanding -= 1
                elif inc.kind == "ack" and not m.acked:
                    m.acked = True
                    if m.measured:
                        self.ack_latencies.append(t - m.t_send)
                        if m.delivered:
                            self.outstanding -= 1
                elif inc.kind == "error":
                    await self.on_error(i, inc.key, m, inc.data)
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd else 1006
            if code != 1000:
                self.closes[str(code)] += 1

    async def on_error(self, i: int, msg_id: str, m: Sent, data: dict[str, Any]) -> None:
        """The hub pushed back (rate_limited/busy): resend the same client_id later, as a client must."""
        code = str(data.get("code"))
        self.errors[code] += 1
        if code in ("rate_limited", "busy"):
            self.pushed_back += 1
            delay = float(data.get("retry_after_s") or 0.05)
            asyncio.get_running_loop().call_later(delay, self.queues[i].put_nowait, (msg_id, now()))
            return
        if not m.refused:
            m.refused = code
            if m.measured and not m.delivered:
                self.outstanding -= 1


async def chat(spec: dict[str, Any], ctl: Control) -> None:
    await ChatWorker(spec, ctl).run()


# --------------------------------------------------------------------------------------------
# Idle connections, connection storm, fan-out
# --------------------------------------------------------------------------------------------


def _plan(spec: dict[str, Any]) -> list[tuple[str, str | None]]:
    """(room, token) per connection: the hub needs a token per user, the baselines a room name."""
    tokens: list[str] | None = spec.get("tokens")
    count = spec["count"]
    if tokens:
        return [(spec.get("room", "idle"), tokens[n % len(tokens)]) for n in range(count)]
    return [(spec.get("room") or f"idle{n % 1000}", None) for n in range(count)]


async def open_raw_many(
    proto: Proto, plan: list[tuple[str, str | None]], concurrency: int, clients: list[RawClient] | None = None
) -> tuple[list[RawClient], Counter[str], list[float], list[float]]:
    """Open one raw connection per (room, token), `concurrency` at a time, appending each to `clients`.

    Returns the open clients, failures by reason, and each success's connect time and finish time."""
    sem = asyncio.Semaphore(concurrency)
    clients = [] if clients is None else clients
    failures: Counter[str] = Counter()
    durations: list[float] = []
    done_at: list[float] = []

    async def one(room: str, token: str | None) -> None:
        async with sem:
            t = now()
            try:
                client = await open_raw(proto, room, token)
            except Exception as exc:
                failures[classify_raw(exc)] += 1
                return
            done_at.append(now())
            durations.append(done_at[-1] - t)
            clients.append(client)

    await asyncio.gather(*(one(room, token) for room, token in plan))
    return clients, failures, durations, done_at


async def heartbeat(proto: Proto, clients: list[RawClient], every_s: float) -> None:
    """The hub closes silent connections after 90 s (4408): idle clients ping like real ones."""
    if not isinstance(proto, HubProto):
        return
    while True:
        await asyncio.sleep(every_s)
        for client in clients:
            client.send_text(proto.ping())


async def close_raw(clients: list[RawClient]) -> None:
    for client in clients:
        client.close()
    await asyncio.sleep(0.5)  # let the close frames go out before the loop ends


async def idle(spec: dict[str, Any], ctl: Control) -> None:
    """Open `count` connections and hold them while the harness reads the server's memory."""
    proto = make_proto(spec["target"])
    clients: list[RawClient] = []
    beats = asyncio.create_task(heartbeat(proto, clients, 25))  # from the first connection on
    t0 = now()
    _, failures, _, _ = await open_raw_many(proto, _plan(spec), spec.get("concurrency", 50), clients)
    elapsed = now() - t0
    await asyncio.sleep(0.5)
    ctl.report({"open": sum(c.open for c in clients), "failures": dict(failures), "connect_s": elapsed})
    await ctl.wait_phase(1)
    still_open = sum(c.open for c in clients)
    beats.cancel()
    await close_raw(clients)
    ctl.report({"open_at_end": still_open})


async def storm(spec: dict[str, Any], ctl: Control) -> None:
    """Connect `count` clients as fast as the server takes them, `concurrency` at a time; hold them."""
    proto = make_proto(spec["target"])
    plan = _plan(spec)
    ctl.report({})
    start_at = await ctl.wait_phase(1)
    clients, failures, durations, done_at = await open_raw_many(proto, plan, spec["concurrency"])
    ctl.report(
        {
            "ok": len(clients),
            "failures": dict(failures),
            "start_at": start_at,
            "last_done_at": max(done_at, default=start_at),
            "connect_ms": [round(d * 1000, 3) for d in durations],
        }
    )
    await ctl.wait_phase(2)
    ctl.report({"open_at_end": sum(c.open for c in clients)})
    await close_raw(clients)


async def fanout(spec: dict[str, Any], ctl: Control) -> None:
    """Receivers of one event per round; the harness triggers it and reads who got it when."""
    proto = make_proto(spec["target"])
    conns, failures = await open_many(proto, _plan(spec), spec.get("concurrency", 50))
    got: dict[str, list[float]] = {}

    async def reader(ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for text in ws:
                t = now()
                inc = proto.decode(text)
                if inc.kind == "msg" and inc.key.startswith("fanout-"):
                    got.setdefault(inc.key, []).append(t)

    readers = [asyncio.create_task(reader(ws)) for ws in conns if ws is not None]
    ctl.report({"receivers": len(readers), "unconnected": len(conns) - len(readers), "failures": dict(failures)})
    for r in range(spec["rounds"]):
        await ctl.wait_phase(r + 1)
        key = f"fanout-{r}"
        await until(lambda: len(got.get(key, ())) >= len(readers), spec.get("timeout_s", 30), 0.002)  # noqa: B023
        times = got.get(key, [])
        ctl.report({"round": r, "times": times, "missing": len(readers) - len(times)})
    await close_all(conns)
    for task in readers:
        task.cancel()


SCENARIOS: dict[str, Callable[[dict[str, Any], Control], Any]] = {
    "chat": chat,
    "idle": idle,
    "storm": storm,
    "fanout": fanout,
}


def split(items: list[Any], parts: int) -> Iterator[list[Any]]:
    """Round-robin `items` into `parts` lists (rooms, tokens) for the workers."""
    for p in range(parts):
        yield items[p::parts]
