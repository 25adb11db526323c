"""The booking state machine (PROTOCOL §2.2): every (from, to, role), effects, all-or-nothing."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import pytest

from hub import events
from hub.errors import BadRequest, Conflict, NotFound, PermissionDenied
from hub.models import Booking, BookingStatus, Conversation, Message, Role, User
from hub.services import bookings as bookings_service
from hub.services.bookings import access_booking, booking_set_status
from tests.factories import AdminFactory, BookingFactory, CustomerFactory, UserFactory
from tests.published import capture_published

pytestmark = pytest.mark.django_db

STATUSES = [s.value for s in BookingStatus]

# PROTOCOL §2.2, written out independently of the service's own table.
PROTOCOL_TABLE = {
    ("pending", "confirmed"): {"provider"},
    ("pending", "declined"): {"provider"},
    ("pending", "cancelled"): {"customer", "provider"},
    ("confirmed", "cancelled"): {"customer", "provider"},
    ("confirmed", "en_route"): {"provider"},
    ("confirmed", "in_progress"): {"provider"},
    ("en_route", "in_progress"): {"provider"},
    ("in_progress", "completed"): {"provider"},
}
ROLES = ["customer", "provider", "admin", "super_admin", "system", "stranger", "other_provider"]


def expected_outcome(frm: str, to: str, role: str) -> str:
    if role in ("stranger", "other_provider"):
        return "not_found"  # not a party: the booking does not exist for them
    who = PROTOCOL_TABLE.get((frm, to))
    if who is None:
        return "conflict"
    if role in ("admin", "super_admin", "system") or role in who:
        return "ok"
    return "forbidden"


def actor_for(role: str, booking: Booking) -> User | None:
    if role == "customer":
        return booking.customer
    if role == "provider":
        return booking.provider.user
    if role == "admin":
        return AdminFactory()
    if role == "super_admin":
        return UserFactory(role=Role.SUPER_ADMIN)
    if role == "stranger":
        return CustomerFactory()
    if role == "other_provider":
        return BookingFactory().provider.user
    return None


@pytest.mark.parametrize(("frm", "to", "role"), list(itertools.product(STATUSES, STATUSES, ROLES)))
def test_transition_table(frm: str, to: str, role: str) -> None:
    booking = BookingFactory(status=frm, live_location={"lat": 1.0, "lng": 2.0, "accuracy_m": None, "at": "x"})
    actor = actor_for(role, booking)
    expected = expected_outcome(frm, to, role)
    errors = {"conflict": Conflict, "forbidden": PermissionDenied, "not_found": NotFound}

    if expected == "ok":
        with capture_published() as sent:
            result = booking_set_status(actor=actor, booking_id=booking.id, status=to, reason="because")
        assert result.status == to
        booking.refresh_from_db()
        assert booking.status == to
        assert booking.live_location is None  # cleared whenever the booking moves
        system = Message.objects.get(conversation__booking=booking)
        assert system.kind == "system" and system.sender_id is None and system.seq == 1
        assert system.data == {
            "event": "booking.status_changed",
            "booking_id": str(booking.id),
            "status": to,
            "previous_status": frm,
            "changed_by": str(actor.id) if actor else None,
            "reason": "because",
        }
        assert [e.type for e in sent] == ["message.created", "booking.status_changed"]
        data, recipients = sent[1].data, sent[1].to
        assert recipients == [str(booking.customer_id), str(booking.provider_id)]
        assert data["booking"]["status"] == to and data["previous_status"] == frm
        assert data["changed_by"] == (str(actor.id) if actor else None) and data["reason"] == "because"
    else:
        with capture_published() as sent, pytest.raises(errors[expected]):
            booking_set_status(actor=actor, booking_id=booking.id, status=to)
        booking.refresh_from_db()
        assert booking.status == frm
        assert booking.live_location is not None
        assert not Message.objects.filter(conversation__booking=booking).exists()
        assert sent == []


def test_service_table_matches_protocol() -> None:
    assert {k: set(v) for k, v in bookings_service.TRANSITIONS.items()} == PROTOCOL_TABLE


def test_status_changed_event_shape() -> None:
    booking = BookingFactory(status="pending")
    provider = booking.provider.user
    with capture_published() as sent:
        result = booking_set_status(actor=provider, booking_id=booking.id, status="confirmed")
    conversation = Conversation.objects.get(booking=booking)
    message_event, changed = sent
    data = changed.data
    assert set(data) == {"booking", "previous_status", "changed_by", "reason", "at"}
    assert data["booking"] == {
        "id": str(booking.id),
        "customer_id": str(booking.customer_id),
        "provider_id": str(booking.provider_id),
        "service_id": str(booking.service_id),
        "status": "confirmed",
        "scheduled_at": data["booking"]["scheduled_at"],
        "duration_minutes": booking.duration_minutes,
        "location": booking.location,
        "notes": booking.notes,
        "pricing": booking.pricing,
        "conversation_id": str(conversation.id),
        "live_location": None,
    }
    assert data["booking"]["scheduled_at"].endswith("Z") and data["at"].endswith("Z")
    assert data["reason"] is None and data["changed_by"] == str(provider.id)
    assert message_event.type == "message.created" and message_event.data["message"]["kind"] == "system"
    assert message_event.data["message"]["body"] == f"Booking confirmed by {provider.display_name}."
    assert sorted(message_event.to) == sorted([str(booking.customer_id), str(booking.provider_id)])
    assert result.conversation.id == conversation.id
    # what devices get is exactly the catalogue's model of it
    assert events.parse_frame(changed.frame) == events.BookingStatusChanged.model_validate(changed.frame)
    assert isinstance(events.parse_frame(changed.frame), events.BookingStatusChanged)


def test_existing_conversation_is_reused_and_seq_continues() -> None:
    booking = BookingFactory(status="pending")
    provider = booking.provider.user
    booking_set_status(actor=provider, booking_id=booking.id, status="confirmed")
    booking_set_status(actor=provider, booking_id=booking.id, status="en_route", reason="  traffic is light ")
    booking_set_status(actor=None, booking_id=booking.id, status="in_progress", source="event")
    assert Conversation.objects.filter(booking=booking).count() == 1
    messages = list(Message.objects.filter(conversation__booking=booking).order_by("seq"))
    assert [m.seq for m in messages] == [1, 2, 3]
    assert messages[1].body == f"Provider on the way by {provider.display_name}. Reason: traffic is light"
    assert messages[1].data["reason"] == "traffic is light"
    assert messages[2].body == "Service started."
    assert messages[2].data["changed_by"] is None


def test_same_status_again_is_conflict() -> None:
    booking = BookingFactory(status="confirmed")
    with pytest.raises(Conflict) as err:
        booking_set_status(actor=booking.provider.user, booking_id=booking.id, status="confirmed")
    assert err.value.details == {"status": "confirmed"}


@pytest.mark.parametrize("status", ["", "CONFIRMED", "done", None, 3])
def test_unknown_status_is_bad_request(status: Any) -> None:
    booking = BookingFactory(status="pending")
    with pytest.raises(BadRequest):
        booking_set_status(actor=booking.provider.user, booking_id=booking.id, status=status)


@pytest.mark.parametrize("reason", ["x" * 501, 5, ["no"]])
def test_invalid_reason_is_bad_request(reason: Any) -> None:
    booking = BookingFactory(status="pending")
    with pytest.raises(BadRequest):
        booking_set_status(actor=booking.customer, booking_id=booking.id, status="cancelled", reason=reason)
    booking.refresh_from_db()
    assert booking.status == "pending"


@pytest.mark.parametrize("booking_id", [uuid.uuid4(), "not-a-uuid", ""])
def test_unknown_booking_is_not_found(booking_id: Any) -> None:
    with pytest.raises(NotFound):
        booking_set_status(actor=AdminFactory(), booking_id=booking_id, status="confirmed")


def test_system_message_failure_rolls_the_move_back(monkeypatch: pytest.MonkeyPatch) -> None:
    booking = BookingFactory(status="pending")

    def broken(**kwargs: Any) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(bookings_service, "message_post_system", broken)
    with pytest.raises(RuntimeError):
        booking_set_status(actor=booking.provider.user, booking_id=booking.id, status="confirmed")
    booking.refresh_from_db()
    assert booking.status == "pending"


def test_access_booking_parties_and_admins_only() -> None:
    booking = BookingFactory()
    for user in (booking.customer, booking.provider.user, AdminFactory(), UserFactory(role=Role.SUPER_ADMIN)):
        assert access_booking(user=user, booking_id=booking.id) == booking
    assert access_booking(user=None, booking_id=booking.id) == booking
    for user in (CustomerFactory(), BookingFactory().provider.user):
        with pytest.raises(NotFound):
            access_booking(user=user, booking_id=booking.id)
