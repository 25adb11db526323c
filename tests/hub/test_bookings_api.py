"""GET /api/bookings/{id} and POST /api/bookings/{id}/status (PROTOCOL §2.2, §3)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.test import Client

from hub.models import Conversation, Message
from hub.services.bookings import booking_location_update
from tests.conftest import auth_headers
from tests.factories import AdminFactory, BookingFactory, CustomerFactory, booking_with_conversation

pytestmark = pytest.mark.django_db


def get(user: Any, booking_id: Any) -> Any:
    return Client().get(f"/api/bookings/{booking_id}", **auth_headers(user))


def post_status(user: Any, booking_id: Any, body: dict[str, Any]) -> Any:
    return Client().post(
        f"/api/bookings/{booking_id}/status", body, content_type="application/json", **auth_headers(user)
    )


def test_parties_and_admins_read_the_booking() -> None:
    booking, conversation = booking_with_conversation(status="confirmed", notes="Ring twice")
    for user in (booking.customer, booking.provider.user, AdminFactory()):
        response = get(user, booking.id)
        assert response.status_code == 200, response.content
        assert response.json() == {
            "id": str(booking.id),
            "customer_id": str(booking.customer_id),
            "provider_id": str(booking.provider_id),
            "service_id": str(booking.service_id),
            "status": "confirmed",
            "scheduled_at": response.json()["scheduled_at"],
            "duration_minutes": 60,
            "location": {"address": "1 Test Street"},
            "notes": "Ring twice",
            "pricing": {"amount": "100.00", "currency": "USD"},
            "conversation_id": str(conversation.id),
            "live_location": None,
        }


def test_a_booking_without_conversation_gets_one() -> None:
    booking = BookingFactory()
    body = get(booking.customer, booking.id).json()
    assert body["conversation_id"] == str(Conversation.objects.get(booking=booking).id)


def test_live_location_is_shown_while_en_route() -> None:
    booking = BookingFactory(status="en_route")
    booking_location_update(actor=booking.provider.user, booking_id=booking.id, lat=10.5, lng=20.25, accuracy_m=5)
    fix = get(booking.customer, booking.id).json()["live_location"]
    assert fix["lat"] == 10.5 and fix["lng"] == 20.25 and fix["accuracy_m"] == 5.0 and fix["at"].endswith("Z")


@pytest.mark.parametrize("booking_id", ["stranger", uuid.uuid4(), "not-a-uuid"])
def test_others_get_404(booking_id: Any) -> None:
    booking = BookingFactory()
    target = booking.id if booking_id == "stranger" else booking_id
    for user in (CustomerFactory(), BookingFactory().provider.user):
        response = get(user, target)
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"
        response = post_status(user, target, {"status": "cancelled"})
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"
    booking.refresh_from_db()
    assert booking.status == "pending"


def test_anonymous_is_401() -> None:
    booking = BookingFactory()
    assert Client().get(f"/api/bookings/{booking.id}").status_code == 401
    response = Client().post(
        f"/api/bookings/{booking.id}/status", {"status": "cancelled"}, content_type="application/json"
    )
    assert response.status_code == 401 and response.json()["code"] == "unauthorized"


def test_move_over_http_has_the_same_effects() -> None:
    booking = BookingFactory(status="pending")
    response = post_status(booking.provider.user, booking.id, {"status": "declined", "reason": "Fully booked"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["id"] == str(booking.id) and body["status"] == "declined"
    conversation = Conversation.objects.get(booking=booking)
    assert body["conversation_id"] == str(conversation.id)
    message = Message.objects.get(conversation=conversation)
    assert message.kind == "system"
    assert message.data["status"] == "declined" and message.data["reason"] == "Fully booked"
    assert message.body.endswith("Reason: Fully booked")


@pytest.mark.parametrize(
    ("status", "who", "code", "http"),
    [
        ("confirmed", "customer", "forbidden", 403),
        ("completed", "customer", "conflict", 409),
        ("completed", "provider", "conflict", 409),
        ("in_progress", "provider", "conflict", 409),
    ],
)
def test_move_errors_over_http(status: str, who: str, code: str, http: int) -> None:
    booking = BookingFactory(status="pending")
    user = booking.customer if who == "customer" else booking.provider.user
    response = post_status(user, booking.id, {"status": status})
    assert response.status_code == http
    assert response.json()["code"] == code and response.json()["message"]
    booking.refresh_from_db()
    assert booking.status == "pending"


@pytest.mark.parametrize(
    "body", [{}, {"status": "done"}, {"status": None}, {"status": "cancelled", "reason": "x" * 501}]
)
def test_bad_bodies_are_400(body: dict[str, Any]) -> None:
    booking = BookingFactory(status="pending")
    response = post_status(booking.customer, booking.id, body)
    assert response.status_code == 400
    assert response.json()["code"] == "bad_request" and response.json()["details"]
    booking.refresh_from_db()
    assert booking.status == "pending"


def test_schema_documents_the_booking_endpoints() -> None:
    response = Client().get("/api/schema/")
    assert response.status_code == 200
    assert b"/api/bookings/{booking_id}/status:" in response.content
    assert b"/api/bookings/{booking_id}:" in response.content
