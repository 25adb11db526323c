"""Concurrent booking moves: the row lock lets exactly one of two conflicting moves win."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.db import connection, transaction

from hub.errors import Conflict
from hub.models import Booking, Message
from hub.services.bookings import access_booking, booking_detail, booking_location_update, booking_set_status
from tests.factories import BookingFactory

pytestmark = pytest.mark.django_db(transaction=True)


def in_thread(func: Callable[[], Any]) -> Callable[[], Any]:
    """Run with the thread's own database connection, closed afterwards."""

    def run() -> Any:
        try:
            return func()
        finally:
            connection.close()

    return run


def outcome(func: Callable[[], Any]) -> str:
    try:
        func()
    except Conflict:
        return "conflict"
    return "ok"


def race_once(first: tuple[str, str], second: tuple[str, str]) -> None:
    booking = BookingFactory(status="pending")
    actors = {"customer": booking.customer, "provider": booking.provider.user}
    barrier = threading.Barrier(2)

    def move(who: str, status: str) -> str:
        barrier.wait()  # both threads start their transactions together
        return outcome(lambda: booking_set_status(actor=actors[who], booking_id=booking.id, status=status))

    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(in_thread(lambda m=m: move(*m))) for m in (first, second)]
        results = [f.result(timeout=30) for f in futures]
    assert sorted(results) == ["conflict", "ok"], results
    winner = (first, second)[results.index("ok")]
    booking.refresh_from_db()
    assert booking.status == winner[1]
    assert Message.objects.filter(conversation__booking=booking).count() == 1


@pytest.mark.parametrize(
    ("first", "second"),
    [
        # neither move is allowed after the other
        (("provider", "declined"), ("customer", "cancelled")),
        (("provider", "confirmed"), ("provider", "declined")),
    ],
)
def test_two_conflicting_moves_exactly_one_wins(first: tuple[str, str], second: tuple[str, str]) -> None:
    for _ in range(5):
        race_once(first, second)


def wait_until_someone_waits_on_a_lock(timeout: float = 10) -> None:
    """Until another session of this database is blocked on a lock (the row we hold)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            # pg_stat_activity is a snapshot kept for the rest of a transaction: take a fresh one.
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0]:
                return
        time.sleep(0.01)
    raise AssertionError("the second move never waited for the row lock")


def test_second_move_waits_for_the_first_and_sees_its_result() -> None:
    booking = BookingFactory(status="pending")
    result: dict[str, str] = {}
    second = threading.Thread(
        target=in_thread(
            lambda: result.setdefault(
                "second",
                outcome(lambda: booking_set_status(actor=booking.customer, booking_id=booking.id, status="cancelled")),
            )
        )
    )
    with transaction.atomic():
        booking_set_status(actor=booking.provider.user, booking_id=booking.id, status="declined")
        second.start()
        wait_until_someone_waits_on_a_lock()
    second.join(10)
    assert result == {"second": "conflict"}
    booking.refresh_from_db()
    assert booking.status == "declined"


def test_a_fix_racing_a_move_off_en_route_is_not_kept() -> None:
    booking = BookingFactory(status="en_route")
    provider = booking.provider.user
    result: dict[str, str] = {}
    fix = threading.Thread(
        target=in_thread(
            lambda: result.setdefault(
                "fix",
                outcome(lambda: booking_location_update(actor=provider, booking_id=booking.id, lat=1, lng=2)),
            )
        )
    )
    with transaction.atomic():
        booking_set_status(actor=provider, booking_id=booking.id, status="in_progress")
        fix.start()
        wait_until_someone_waits_on_a_lock()
    fix.join(10)
    assert result == {"fix": "conflict"}
    assert Booking.objects.get(pk=booking.pk).live_location is None


def test_the_status_lock_does_not_block_creating_the_conversation() -> None:
    """A reader creating the booking's conversation while a move holds the row must not wait (or deadlock)."""
    booking = BookingFactory(status="pending")
    created: dict[str, Any] = {}
    reader = threading.Thread(
        target=in_thread(
            lambda: created.setdefault(
                "conversation", booking_detail(user=booking.customer, booking_id=booking.id).conversation
            )
        )
    )
    with transaction.atomic():
        access_booking(user=None, booking_id=booking.id, lock=True)
        reader.start()
        reader.join(10)
        assert not reader.is_alive(), "the conversation insert waited for the booking's row lock"
        moved = booking_set_status(actor=booking.provider.user, booking_id=booking.id, status="confirmed")
    assert moved.conversation.id == created["conversation"].id
