"""The provider's live location (PROTOCOL §2.2): who may send it, validation, throttling, last fix."""

from __future__ import annotations

import math
import uuid
from typing import Any

import pytest
import redis
from django.conf import settings

from hub import serialize
from hub.errors import BadRequest, Conflict, NotFound, PermissionDenied
from hub.models import Booking
from hub.services.bookings import (
    booking_location_update,
    booking_set_status,
    location_throttle_key,
)
from tests.factories import AdminFactory, BookingFactory, CustomerFactory
from tests.published import Sent, capture_published

pytestmark = pytest.mark.django_db


def forget_throttle(booking: Booking) -> None:
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(location_throttle_key(booking.id))
    client.close()


def test_fix_is_kept_and_sent_to_the_customer_only(django_assert_num_queries: Any) -> None:
    booking = BookingFactory(status="en_route")
    provider = booking.provider.user
    with capture_published() as sent, django_assert_num_queries(2):  # read + conditional update
        outcome = booking_location_update(actor=provider, booking_id=booking.id, lat=45.5, lng=-73.6, accuracy_m=8)
    assert not outcome.throttled
    booking.refresh_from_db()
    fix = booking.live_location
    assert fix["lat"] == 45.5 and fix["lng"] == -73.6 and fix["accuracy_m"] == 8.0 and fix["at"].endswith("Z")
    assert sent == [Sent("booking.location", {"booking_id": str(booking.id), **fix}, [str(booking.customer_id)])]
    assert serialize.booking(booking)["live_location"] == fix


def test_accuracy_is_optional() -> None:
    booking = BookingFactory(status="en_route")
    booking_location_update(actor=booking.provider.user, booking_id=booking.id, lat=0, lng=0)
    booking.refresh_from_db()
    assert booking.live_location["accuracy_m"] is None
    assert booking.live_location["lat"] == 0.0 and booking.live_location["lng"] == 0.0


def test_excess_fixes_are_dropped_politely(django_assert_num_queries: Any, settings: Any) -> None:
    settings.HUB_BOOKING_LOCATION_INTERVAL_MS = 60_000  # a window no slow machine outlasts
    booking = BookingFactory(status="en_route")
    provider = booking.provider.user
    with capture_published() as sent:
        booking_location_update(actor=provider, booking_id=booking.id, lat=1, lng=1)
        with django_assert_num_queries(1):  # the read that authorises; nothing written
            outcome = booking_location_update(actor=provider, booking_id=booking.id, lat=2, lng=2)
    assert outcome.throttled and 0 < outcome.retry_after_s <= 60
    booking.refresh_from_db()
    assert booking.live_location["lat"] == 1.0
    assert [(e.type, e.data["lat"]) for e in sent] == [("booking.location", 1.0)]

    other = BookingFactory(status="en_route", provider=booking.provider)  # the limit is per booking
    assert not booking_location_update(actor=provider, booking_id=other.id, lat=3, lng=3).throttled

    forget_throttle(booking)  # the window has passed
    assert not booking_location_update(actor=provider, booking_id=booking.id, lat=4, lng=4).throttled
    booking.refresh_from_db()
    assert booking.live_location["lat"] == 4.0  # only the last fix is kept


def test_interval_zero_turns_the_limit_off(settings: Any) -> None:
    settings.HUB_BOOKING_LOCATION_INTERVAL_MS = 0
    booking = BookingFactory(status="en_route")
    for i in range(3):
        assert not booking_location_update(actor=booking.provider.user, booking_id=booking.id, lat=i, lng=i).throttled


@pytest.mark.parametrize(
    "fix",
    [
        {"lat": 90.5, "lng": 0},
        {"lat": -90.01, "lng": 0},
        {"lat": 0, "lng": 180.1},
        {"lat": 0, "lng": -181},
        {"lat": math.nan, "lng": 0},
        {"lat": 0, "lng": math.inf},
        {"lat": "45.5", "lng": 0},
        {"lat": True, "lng": 0},
        {"lat": None, "lng": 0},
        {"lat": 0, "lng": 0, "accuracy_m": -1},
        {"lat": 0, "lng": 0, "accuracy_m": "5"},
    ],
)
def test_bad_fixes_are_bad_requests(fix: dict[str, Any]) -> None:
    booking = BookingFactory(status="en_route")
    with capture_published() as sent, pytest.raises(BadRequest):
        booking_location_update(actor=booking.provider.user, booking_id=booking.id, **fix)
    booking.refresh_from_db()
    assert booking.live_location is None and sent == []


def test_edges_of_the_ranges_are_fine() -> None:
    booking = BookingFactory(status="en_route")
    for lat, lng in [(90, 180), (-90, -180)]:
        forget_throttle(booking)
        booking_location_update(actor=booking.provider.user, booking_id=booking.id, lat=lat, lng=lng, accuracy_m=0)


def test_only_the_provider_while_en_route() -> None:
    booking = BookingFactory(status="en_route")
    with capture_published() as sent:
        for stranger in (CustomerFactory(), BookingFactory().provider.user):
            with pytest.raises(NotFound):
                booking_location_update(actor=stranger, booking_id=booking.id, lat=1, lng=1)
        for not_provider in (booking.customer, AdminFactory()):
            with pytest.raises(PermissionDenied):
                booking_location_update(actor=not_provider, booking_id=booking.id, lat=1, lng=1)
        with pytest.raises(NotFound):
            booking_location_update(actor=booking.provider.user, booking_id=uuid.uuid4(), lat=1, lng=1)
    assert sent == []


@pytest.mark.parametrize("status", ["pending", "confirmed", "declined", "cancelled", "in_progress", "completed"])
def test_not_en_route_is_conflict(status: str) -> None:
    booking = BookingFactory(status=status)
    with pytest.raises(Conflict):
        booking_location_update(actor=booking.provider.user, booking_id=booking.id, lat=1, lng=1)


def test_leaving_en_route_clears_the_fix() -> None:
    booking = BookingFactory(status="confirmed")
    provider = booking.provider.user
    booking_set_status(actor=provider, booking_id=booking.id, status="en_route")
    booking_location_update(actor=provider, booking_id=booking.id, lat=1, lng=1)
    booking.refresh_from_db()
    assert serialize.booking(booking)["live_location"]["lat"] == 1.0
    moved = booking_set_status(actor=provider, booking_id=booking.id, status="in_progress")
    assert serialize.booking(moved)["live_location"] is None
    booking.refresh_from_db()
    assert booking.live_location is None
