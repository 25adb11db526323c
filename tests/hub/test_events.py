"""The event catalogue and the one publish call (hub/events.py)."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import orjson
import pytest
from channels.db import database_sync_to_async
from django.db import transaction
from pydantic import ValidationError

from consumers.router import local_router
from hub import events, realtime
from tests.conftest import ws_connect
from tests.factories import CustomerFactory
from tests.published import Sent, capture_published

AT = datetime(2026, 12, 2, 20, 37, 34, 123456, tzinfo=UTC)
A, B, C = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()


def message(**overrides: Any) -> dict[str, Any]:
    """A message in wire form, as hub.serialize makes it (with `version`)."""
    return {
        "id": str(A),
        "conversation_id": str(B),
        "seq": 3,
        "version": 7,
        "sender_id": str(C),
        "client_id": "c-1",
        "kind": "text",
        "body": "hi",
        "data": {},
        "attachments": [
            {"id": str(A), "url": f"/api/attachments/{A}", "name": "a.png", "content_type": "image/png", "size": 5}
        ],
        "created_at": "2026-12-02T20:37:34.123Z",
        "edited_at": None,
        "deleted": False,
        **overrides,
    }


def booking() -> dict[str, Any]:
    return {
        "id": str(A),
        "customer_id": str(B),
        "provider_id": str(C),
        "service_id": None,
        "status": "en_route",
        "scheduled_at": "2026-12-03T10:00:00.000Z",
        "duration_minutes": 60,
        "location": {"address": "1 Test Street"},
        "notes": "",
        "pricing": {"amount": "100.00"},
        "conversation_id": str(B),
        "live_location": {"lat": 1.5, "lng": 2.5, "accuracy_m": None, "at": "2026-12-02T20:37:34.123Z"},
    }


def samples() -> dict[type[events.Event], events.Event]:
    """One instance of every event of the catalogue (a new event type needs one here)."""
    receipt = events.Receipt(conversation_id=B, user_id=C, seq=3, at=AT)
    return {
        events.MessageCreated: events.MessageCreated(data=events.MessageData(message=events.Message(**message()))),
        events.MessageUpdated: events.MessageUpdated(
            data=events.MessageData(
                message=events.Message.model_validate(message(edited_at="2026-12-02T20:38:00.000Z"))
            )
        ),
        events.MessageDeleted: events.MessageDeleted(
            data=events.MessageDeletedData(conversation_id=B, message_id=A, seq=3, version=8)
        ),
        events.ReceiptRead: events.ReceiptRead(data=receipt),
        events.ReceiptDelivered: events.ReceiptDelivered(data=receipt),
        events.Typing: events.Typing(
            data=events.TypingData(conversation_id=B, user_id=C, state="start", expires_in_s=8)
        ),
        events.Presence: events.Presence(data=events.PresenceData(user_id=C, status="offline", last_seen_at=AT)),
        events.BookingStatusChanged: events.BookingStatusChanged(
            data=events.BookingStatusChangedData(
                booking=events.Booking.model_validate(booking()),
                previous_status="confirmed",
                changed_by=None,
                reason=None,
                at=AT,
            )
        ),
        events.BookingLocation: events.BookingLocation(
            data=events.BookingLocationData(booking_id=A, lat=1.5, lng=-2.5, accuracy_m=3.0, at=AT)
        ),
        events.Resync: events.Resync(),
    }


def test_every_event_has_a_sample() -> None:
    assert list(samples()) == list(events.EVENTS)


@pytest.mark.parametrize("model", events.EVENTS, ids=lambda m: m.__name__)
def test_every_event_round_trips_through_json(model: type[events.Event]) -> None:
    event = samples()[model]
    frame = event.frame()
    assert frame["type"] == model.model_fields["type"].default and set(frame) == {"type", "data"}
    parsed = events.parse_frame(realtime.encode_frame(frame["type"], frame["data"]))
    assert type(parsed) is model and parsed.frame() == frame  # timestamps go as milliseconds


def test_wire_forms() -> None:
    frames = {model: event.frame() for model, event in samples().items()}
    assert frames[events.ReceiptRead] == {
        "type": "receipt.read",
        "data": {"conversation_id": str(B), "user_id": str(C), "seq": 3, "at": "2026-12-02T20:37:34.123Z"},
    }
    assert frames[events.MessageCreated] == {"type": "message.created", "data": {"message": message()}}
    assert frames[events.BookingStatusChanged]["data"]["booking"] == booking()
    assert frames[events.Resync] == {"type": "resync", "data": {}}
    assert frames[events.Presence]["data"]["last_seen_at"] == "2026-12-02T20:37:34.123Z"


@pytest.mark.parametrize(
    ("build", "error"),
    [
        (lambda: events.Receipt(conversation_id=B, user_id=C, seq=-1, at=AT), "greater than or equal to 0"),
        (lambda: events.Receipt(conversation_id="nope", user_id=C, seq=1, at=AT), "valid UUID"),
        (lambda: events.TypingData(conversation_id=B, user_id=C, state="maybe", expires_in_s=8), "'start' or 'stop'"),
        (lambda: events.Message.model_validate(message(version=None)), "valid integer"),
        (lambda: events.Message.model_validate({**message(), "extra": 1}), "Extra inputs are not permitted"),
        (lambda: events.Message.model_validate(message(kind="poll")), "'text', 'image', 'file', 'system' or 'call'"),
    ],
)
def test_a_bad_payload_is_refused_where_it_is_built(build: Any, error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        build()


def test_events_are_immutable() -> None:
    event = samples()[events.Typing]
    with pytest.raises(ValidationError):
        event.data.state = "stop"  # type: ignore[misc]


class Rogue(events.Event):
    type: Literal["rogue"] = "rogue"
    data: events.Empty = events.Empty()


@pytest.mark.django_db
def test_an_event_outside_the_catalogue_cannot_be_sent() -> None:
    with capture_published() as sent:
        with pytest.raises(TypeError, match="Rogue is not an event of the catalogue"):
            events.publish(Rogue(), to=[A])
        with pytest.raises(TypeError, match="Rogue is not an event of the catalogue"):
            events.publish(Rogue.trusted({}), to=[A])
    assert sent == []


@pytest.mark.django_db
def test_trusted_data_is_checked_at_the_call_in_tests() -> None:
    with capture_published() as sent:
        with pytest.raises(ValidationError, match="version"):
            events.publish(events.MessageCreated.trusted({"message": message(version=None)}), to=[A])
        not_the_wire_form = message(created_at="2026-12-02T20:37:34Z")  # timestamps carry milliseconds
        with pytest.raises(ValueError, match="does not survive a JSON round trip"):
            events.publish(events.MessageCreated.trusted({"message": not_the_wire_form}), to=[A])
        events.publish(events.MessageCreated.trusted({"message": message()}), to=[A, B])
    assert sent == [Sent("message.created", {"message": message()}, [str(A), str(B)])]


@pytest.mark.django_db
def test_production_does_not_check_trusted_data_again(settings: Any) -> None:
    settings.HUB_EVENTS_VALIDATE = False
    with capture_published() as sent:
        events.publish(events.MessageCreated.trusted({"message": {"id": "as given"}}), to=[A])
    assert sent == [Sent("message.created", {"message": {"id": "as given"}}, [str(A)])]


@pytest.mark.django_db
def test_sent_after_commit_and_never_when_rolled_back() -> None:
    typing = samples()[events.Typing]
    with capture_published() as sent:
        with pytest.raises(RuntimeError), transaction.atomic():
            events.publish(typing, to=[A])
            raise RuntimeError("rolled back")
        with transaction.atomic():
            events.publish(samples()[events.Resync], to=[C, A, C])
            assert sent == []  # not before the commit
    assert sent == [Sent("resync", {}, [str(C), str(A), str(C)])]


async def test_publish_async_sends_many_events_in_one_pipeline(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[tuple[str, dict[str, Any], Any]]] = []

    async def record(frames: Any) -> bool:
        calls.append([(*orjson.loads(text).values(), to) for text, to, _exclude in frames])
        return True

    monkeypatch.setattr(realtime, "publish_frames", record)
    presence, resync = samples()[events.Presence], samples()[events.Resync]
    await events.publish_async([(presence, [A]), (resync, [B, C]), (presence, [C])])
    await events.publish_async([])
    assert calls == [
        [
            ("presence", presence.frame()["data"], [A]),
            ("resync", {}, [B, C]),
            ("presence", presence.frame()["data"], [C]),
        ]
    ]
    with pytest.raises(TypeError):
        await events.publish_async([(presence, [A]), (Rogue(), [A])])
    assert len(calls) == 1  # nothing of a batch with a bad event is sent


@pytest.mark.django_db(transaction=True)
async def test_publish_to_channel_reaches_exactly_one_connection() -> None:
    user = await database_sync_to_async(CustomerFactory)()
    async with ws_connect(user) as one, ws_connect(user) as other:
        assert one.hello is not None
        channel = local_router().channel_name(one.hello["connection_id"])
        await events.publish_to_channel(events.Resync(), channel)
        assert await one.event("resync") == {}
        await other.no_event("resync", within=0.3)
        assert other.events == []


def test_services_publish_only_through_the_catalogue() -> None:
    """No service or handler reaches the transport (hub.realtime) itself: they publish catalogue events."""
    root = Path(__file__).resolve().parents[2]
    sources = [
        p
        for d in ("hub/services", "consumers/handlers", "hub/api", "notifications", "webrtc")
        for p in sorted((root / d).rglob("*.py"))
    ]
    using = sorted(str(p.relative_to(root)) for p in sources if re.search(r"\brealtime\b", p.read_text()))
    # Closing a deactivated user's connections is a transport control message, not an event frame.
    assert using == ["hub/services/users.py"]
    assert re.findall(r"\brealtime\.\w+", (root / "hub/services/users.py").read_text()) == ["realtime.disconnect_users"]
