"""Hypothesis fuzzing of /ws/ frames through the real consumer (issue 9): the envelope and, for every request
type in consumers.registry.ROUTES, data generated around its schema.

Every frame, whatever it holds, gets exactly one `reply` or `error` (with its `ref` when it carried a valid
one), never `internal`; the socket never closes but with 1009 for a frame over the limit; and a frame that
was refused changes nothing: messages, conversations' last_seq and bookings' statuses equal a model kept
from the replies the client got. Fixed for CI: derandomized, no example database."""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import types
import typing
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pydantic import BaseModel

from config.asgi import application
from consumers.registry import ROUTES
from hub import jsonbody
from hub.models import Booking, Conversation, Message
from hub.services import message_commit
from tests.conftest import token_for
from tests.factories import booking_with_conversation

pytestmark = pytest.mark.django_db(transaction=True)

FRAMES_PER_EXAMPLE = 40
FUZZ = hypothesis_settings(
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=list(HealthCheck),
)
STATE_CHANGING = {"message.send", "message.edit", "message.delete", "booking.status"}

# --- the world the fuzzing client lives in ------------------------------------------------------------------


@dataclass
class World:
    """The fuzzing user (a customer), their booking and conversation, and another pair's, with one message each."""

    me: Any
    own: list[str]  # ids worth trying: own conversation, message, booking, self and the provider
    others: list[str]  # and another pair's


def make_world() -> World:
    mine, my_conversation = booking_with_conversation()
    theirs, their_conversation = booking_with_conversation()
    me = mine.customer
    own = Message.objects.create(conversation=my_conversation, seq=1, sender=me, client_id="own", body="own")
    other = Message.objects.create(
        conversation=their_conversation, seq=1, sender=theirs.customer, client_id="other", body="other"
    )
    Conversation.objects.filter(id__in=[my_conversation.id, their_conversation.id]).update(last_seq=1)
    own = [my_conversation.id, own.id, mine.id, me.id, mine.provider.user.id]
    others = [their_conversation.id, other.id, theirs.id, theirs.customer.id, theirs.provider.user.id]
    return World(me=me, own=[str(i) for i in own], others=[str(i) for i in others])


def snapshot() -> dict[str, Any]:
    """What a refused frame must leave as it was."""
    return {
        "messages": {
            str(m.id): (str(m.conversation_id), m.seq, m.deleted_at is not None, None if m.deleted_at else m.body)
            for m in Message.objects.all()
        },
        "last_seq": {str(c.id): c.last_seq for c in Conversation.objects.all()},
        "bookings": {str(b.id): b.status for b in Booking.objects.all()},
    }


# --- strategies -----------------------------------------------------------------------------------------------

ODD_TEXT = st.sampled_from(
    ["", " ", "\x00", "a\x00b", "\u202e", "😀", "\ufeff", "null", "ping", "message.send", "x" * 5000, "é" * 4001]
)
HUGE_INTS = st.sampled_from([2**31, 2**53 + 1, 2**63, 2**64, -(2**63) - 1, 10**30, -(10**400)])
TEXT = st.one_of(st.text(max_size=12), ODD_TEXT)
INTS = st.one_of(st.integers(-3, 40), HUGE_INTS)
FLOATS = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.sampled_from([1e308, -1e308, 5e-324, 0.5]))
SCALARS = st.one_of(st.none(), st.booleans(), INTS, FLOATS, TEXT)
JSON = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3), max_leaves=8
)


def nested(depth: int, kind: str) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value] if kind == "list" else {"a": value}
    return value


DEEP = st.builds(nested, st.sampled_from([31, 33, 200, 1000]), st.sampled_from(["list", "dict"]))


def ids_strategy(world: World) -> st.SearchStrategy[Any]:
    own, others = st.sampled_from(world.own), st.sampled_from(world.others)
    invalid = st.sampled_from(["", "not-a-uuid", "\x00"])
    return st.one_of(own, own, own, own, others, st.uuids().map(str), invalid)


def right_values(annotation: Any, world: World) -> st.SearchStrategy[Any]:
    """Values of (about) the field's own type: the ids of this world, edge-case texts and numbers."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return right_values(args[0], world)
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*(right_values(arg, world) for arg in args))
    if origin is typing.Literal:
        return st.one_of(st.sampled_from(args), TEXT)
    if origin is list:
        return st.one_of(st.just([]), st.lists(right_values(args[0], world), max_size=4))
    if origin is dict:
        return st.dictionaries(right_values(args[0], world), right_values(args[1], world), max_size=3)
    if annotation is uuid.UUID:
        return ids_strategy(world)
    if annotation is str:
        return st.one_of(st.just("hello"), st.uuids().map(str), TEXT)
    if annotation is bool:
        return st.booleans()
    if annotation is int:
        return INTS
    if annotation is float:
        return st.one_of(st.floats(-200, 200), INTS, FLOATS)
    if annotation is type(None):
        return st.none()
    return JSON


@st.composite
def route_data(draw: st.DrawFn, schema: type[BaseModel], world: World) -> dict[str, Any]:
    """A `data` object around the schema: each field right, wrong-typed, deep or missing; sometimes an extra field."""
    data: dict[str, Any] = {}
    for name, info in schema.model_fields.items():
        choice = draw(st.sampled_from(["right"] * 8 + ["wrong", "wrong", "deep", "missing"]))
        if choice == "right":
            data[name] = draw(right_values(info.annotation, world))
        elif choice == "wrong":
            data[name] = draw(JSON)
        elif choice == "deep":
            data[name] = draw(DEEP)
    if draw(st.integers(0, 9)) == 0:
        data[draw(TEXT)] = draw(JSON)
    return data


@dataclass(frozen=True)
class Frame:
    """One frame to send: text or bytes; `obj` when it is a JSON object we built (its ref made unique)."""

    text: str | None = None
    binary: bytes | None = None
    obj: dict[str, Any] | None = None


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)  # the stdlib writes ints of any size, and lone surrogates


NOT_JSON = ['{"type": "ping", "data": NaN}', '{"type": 1e400}', '{"type": "\\ud800"}', "{", "\x00", ""]


def envelope_frames(world: World) -> st.SearchStrategy[Frame]:
    types_ = st.one_of(st.sampled_from(sorted(ROUTES)), TEXT, JSON, DEEP)
    refs = st.one_of(st.text(max_size=8), ODD_TEXT, JSON)
    datas = st.one_of(JSON, DEEP, st.dictionaries(TEXT, JSON, max_size=3))
    objects = st.fixed_dictionaries(
        {}, optional={"type": types_, "ref": refs, "data": datas, "extra": JSON, "\x00": JSON}
    ).map(lambda obj: Frame(obj=obj))
    raw = st.one_of(
        JSON.map(lambda v: Frame(text=dumps(v))),
        DEEP.map(lambda v: Frame(text=dumps(v))),
        st.text(max_size=30).map(lambda t: Frame(text=t)),
        st.sampled_from(NOT_JSON).map(lambda t: Frame(text=t)),
        st.binary(max_size=20).map(lambda b: Frame(binary=b)),
        st.sampled_from([60_000, 70_000]).map(lambda n: Frame(text=dumps({"type": "ping", "data": {"x": "y" * n}}))),
    )
    return st.one_of(objects, objects, raw)


def schema_frames(world: World) -> st.SearchStrategy[Frame]:
    per_route = [
        route_data(route.schema, world).map(lambda data, t=frame_type: Frame(obj={"type": t, "ref": "r", "data": data}))
        for frame_type, route in sorted(ROUTES.items())
    ]
    return st.one_of(*per_route)


# --- the client ---------------------------------------------------------------------------------------------------


@dataclass
class Fuzzer:
    world: World
    model: dict[str, Any] = field(default_factory=dict)
    refs: Iterator[int] = field(default_factory=itertools.count)
    communicator: WebsocketCommunicator | None = None
    frames: int = 0
    seen_types: set[str] = field(default_factory=set)
    outcomes: collections.Counter[tuple[Any, str]] = field(default_factory=collections.Counter)

    async def connect(self) -> None:
        auth = (b"authorization", f"Bearer {token_for(self.world.me, ttl_s=3600)}".encode())
        self.communicator = WebsocketCommunicator(application, "/ws/", headers=[auth])
        connected, _ = await self.communicator.connect(timeout=10)
        assert connected
        assert (await self.answer_or_event())["type"] == "hello"

    async def close(self) -> None:
        if self.communicator is not None:
            await self.communicator.disconnect()
            self.communicator = None

    async def answer_or_event(self) -> dict[str, Any]:
        assert self.communicator is not None
        message = await self.communicator.receive_output(10)
        if message["type"] == "websocket.close":
            raise ConnectionError(message.get("code"))
        return dict(orjson.loads(message["text"]))

    async def answer(self) -> dict[str, Any]:
        """The next reply or error (events from our own valid sends are skipped)."""
        while True:
            frame = await self.answer_or_event()
            if frame["type"] in ("reply", "error"):
                return frame

    async def send(self, frame: Frame) -> None:
        """Send one frame and check its one answer (or its 1009 close)."""
        assert self.communicator is not None
        self.frames += 1
        expected_ref: str | None = None
        frame_type = None
        if frame.obj is not None:
            obj = dict(frame.obj)
            if isinstance(obj.get("ref"), str):
                obj["ref"] = f"{obj['ref']}#{next(self.refs)}"  # unique, so a second answer would show
            text = dumps(obj)
        else:
            text = frame.text
        if frame.binary is not None:
            await self.communicator.send_input({"type": "websocket.receive", "bytes": frame.binary})
        else:
            assert text is not None
            try:
                parsed = jsonbody.loads(text)
            except jsonbody.InvalidJSON:
                parsed = None
            if isinstance(parsed, dict):
                ref = parsed.get("ref")
                if isinstance(ref, str) and "\x00" not in ref:
                    expected_ref = ref
                frame_type = parsed.get("type")
            await self.communicator.send_input({"type": "websocket.receive", "text": text})  # "" too
        limit = django_settings.HUB_WS_MAX_FRAME_BYTES
        oversize = text is not None and len(text.encode(errors="surrogatepass")) > limit
        try:
            answer = await self.answer()
        except ConnectionError as closed:
            assert oversize and closed.args[0] == 1009, (closed.args, text and text[:300])
            await self.close()
            await self.connect()
            return
        assert not oversize, "an oversize frame was answered instead of closed 1009"
        assert answer.get("ref") == expected_ref, (answer, text and text[:300])
        key = frame_type if isinstance(frame_type, str) and frame_type in ROUTES else "?"
        self.outcomes[(key, answer["data"]["code"] if answer["type"] == "error" else "ok")] += 1
        if answer["type"] == "error":
            assert answer["data"]["code"] != "internal", (answer, text and text[:500])
            assert isinstance(answer["data"]["message"], str) and answer["data"]["message"]
            return
        if isinstance(frame_type, str):
            self.seen_types.add(frame_type)
            await self.apply(frame_type, answer["data"])

    async def apply(self, frame_type: str, reply: dict[str, Any]) -> None:
        """Carry a successful reply into the model of what the database holds."""
        if frame_type in ("message.send", "message.edit", "message.delete"):
            m = reply["message"]
            body = None if m["deleted"] else m["body"]
            self.model["messages"][m["id"]] = (m["conversation_id"], m["seq"], m["deleted"], body)
            last = self.model["last_seq"]
            last[m["conversation_id"]] = max(last[m["conversation_id"]], m["seq"])
        elif frame_type == "booking.status":  # its system message is in the conversation too: read afresh
            self.model = await database_sync_to_async(snapshot)()

    async def check(self, frames: list[Frame]) -> None:
        """Send a batch; then nothing is left unanswered and the database is what the replies say."""
        for frame in frames:
            await self.send(frame)
        ref = f"end#{next(self.refs)}"
        assert self.communicator is not None
        await self.communicator.send_to(text_data=dumps({"type": "ping", "ref": ref}))
        answer = await self.answer()
        assert answer["type"] == "reply" and answer["ref"] == ref, answer  # no second answer to any frame
        assert await database_sync_to_async(snapshot)() == self.model


@pytest.fixture
def fuzzer(settings: Any) -> Iterator[tuple[Fuzzer, asyncio.AbstractEventLoop]]:
    # Valid sends are part of the fuzz: a client ignoring rate limits would (rightly) be closed 4429.
    settings.HUB_SEND_RATE_BURST = 10**9
    settings.HUB_SEND_FLOOD_CLOSE_AFTER = 10**9
    settings.HUB_BOOKING_LOCATION_INTERVAL_MS = 0
    # The loop pauses while hypothesis makes the next example; the lag admission would answer `busy`.
    settings.HUB_SEND_MAX_LAG_MS = 10**9
    loop = asyncio.new_event_loop()
    fuzz = Fuzzer(world=make_world())
    fuzz.model = snapshot()
    loop.run_until_complete(fuzz.connect())
    try:
        yield fuzz, loop
    finally:
        loop.run_until_complete(fuzz.close())
        loop.run_until_complete(message_commit.close_connection())
        loop.close()


def test_fuzz_the_envelope(fuzzer: tuple[Fuzzer, asyncio.AbstractEventLoop]) -> None:
    fuzz, loop = fuzzer

    @hypothesis_settings(FUZZ, max_examples=90)
    @given(frames=st.lists(envelope_frames(fuzz.world), min_size=FRAMES_PER_EXAMPLE, max_size=FRAMES_PER_EXAMPLE))
    def run(frames: list[Frame]) -> None:
        loop.run_until_complete(fuzz.check(frames))

    run()
    assert fuzz.frames >= 90 * FRAMES_PER_EXAMPLE


def test_fuzz_every_request_schema(fuzzer: tuple[Fuzzer, asyncio.AbstractEventLoop]) -> None:
    fuzz, loop = fuzzer

    @hypothesis_settings(FUZZ, max_examples=170)
    @given(frames=st.lists(schema_frames(fuzz.world), min_size=FRAMES_PER_EXAMPLE, max_size=FRAMES_PER_EXAMPLE))
    def run(frames: list[Frame]) -> None:
        loop.run_until_complete(fuzz.check(frames))

    run()
    assert fuzz.frames >= 170 * FRAMES_PER_EXAMPLE  # with the envelope's: more than 10,000 frames a run
    # Not only refusals: valid requests got through too (the state model followed them), for most types.
    assert {"message.send", "message.edit", "message.delete", "sync"} <= fuzz.seen_types, sorted(fuzz.outcomes.items())
    assert len(fuzz.seen_types) * 2 >= len(ROUTES), sorted(fuzz.outcomes.items())
