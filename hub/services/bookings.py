"""Live booking status and the provider's live location (PROTOCOL §2.2).

`booking_set_status` is the one place a booking's status moves: the WebSocket request
`booking.status`, `POST /api/bookings/{id}/status` and domain events (§4) all call it, so the
transition table, the permission rules and the effects (event, system message) exist once.

Error precedence (docs/adr/0020-booking-state-machine.md): bad input → `bad_request`; a booking
that does not exist or that the actor is neither a party to nor an admin of → `not_found` (so
ids cannot be probed); a move not in the table → `conflict`; a listed move by the wrong party →
`forbidden`."""

from __future__ import annotations

import logging
import math
import uuid
from dataclasses import dataclass
from typing import Any, Literal, cast

import redis
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from hub import events, serialize
from hub.errors import BadRequest, Conflict, NotFound, PermissionDenied
from hub.models import Booking, BookingStatus, User
from hub.redis_clients import sync_redis
from hub.services.conversations import conversation_for_booking
from hub.services.messages import message_post_system

log = logging.getLogger(__name__)

S = BookingStatus
CUSTOMER, PROVIDER = "customer", "provider"

# (from, to) → the parties who may make the move; admins and the system may make any listed move.
TRANSITIONS: dict[tuple[str, str], frozenset[str]] = {
    (S.PENDING, S.CONFIRMED): frozenset({PROVIDER}),
    (S.PENDING, S.DECLINED): frozenset({PROVIDER}),
    (S.PENDING, S.CANCELLED): frozenset({CUSTOMER, PROVIDER}),
    (S.CONFIRMED, S.CANCELLED): frozenset({CUSTOMER, PROVIDER}),
    (S.CONFIRMED, S.EN_ROUTE): frozenset({PROVIDER}),
    (S.CONFIRMED, S.IN_PROGRESS): frozenset({PROVIDER}),
    (S.EN_ROUTE, S.IN_PROGRESS): frozenset({PROVIDER}),
    (S.IN_PROGRESS, S.COMPLETED): frozenset({PROVIDER}),
}

REASON_MAX_CHARS = 500
Source = Literal["ws", "http", "event"]

# The system message's text; clients that localise use the message's `data` instead.
_STATUS_TEXT: dict[str, str] = {
    S.CONFIRMED: "Booking confirmed",
    S.DECLINED: "Booking declined",
    S.CANCELLED: "Booking cancelled",
    S.EN_ROUTE: "Provider on the way",
    S.IN_PROGRESS: "Service started",
    S.COMPLETED: "Booking completed",
}


def _parse_uuid(value: uuid.UUID | str) -> uuid.UUID:
    """A booking id from a path or frame; anything that is not a UUID names no booking."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError as exc:
        raise NotFound("No such booking.") from exc


def party_roles(user: User, booking: Booking) -> frozenset[str]:
    """The parts the user plays in the booking: customer, provider (both only in odd test data), none."""
    roles = set()
    if user.id == booking.customer_id:
        roles.add(CUSTOMER)
    if user.id == booking.provider_id:
        roles.add(PROVIDER)
    return frozenset(roles)


def access_booking(*, user: User | None, booking_id: uuid.UUID | str, lock: bool = False) -> Booking:
    """The booking if the user is one of its parties or an admin (`None` = the system); else NotFound.

    `lock=True` takes the row lock for the rest of the caller's transaction. It is FOR NO KEY UPDATE:
    it queues other status moves and location writes, but not inserts that merely reference the
    booking (its conversation), which would otherwise deadlock against our own insert of one."""
    queryset = Booking.objects.all()
    if lock:
        queryset = queryset.select_for_update(no_key=True, of=("self",))
    booking = queryset.filter(pk=_parse_uuid(booking_id)).first()
    if booking is None:
        raise NotFound("No such booking.")
    if user is not None and not user.is_admin and not party_roles(user, booking):
        raise NotFound("No such booking.")
    return booking


def check_move(*, actor: User | None, booking: Booking, status: str) -> None:
    """Raise Conflict for a move not in the table, PermissionDenied for a listed move by the wrong party."""
    allowed = TRANSITIONS.get((booking.status, status))
    if allowed is None:
        raise Conflict(f"A booking cannot move from {booking.status!r} to {status!r}.", status=booking.status)
    if actor is None or actor.is_admin:
        return
    if not allowed & party_roles(actor, booking):
        who = " or ".join(sorted(allowed))
        raise PermissionDenied(f"Only the {who} may move a booking from {booking.status!r} to {status!r}.")


def _clean_status(status: object) -> str:
    if not isinstance(status, str) or status not in BookingStatus.values:
        raise BadRequest(
            "Unknown booking status.",
            errors=[{"field": "status", "message": f"one of {', '.join(BookingStatus.values)}"}],
        )
    return status


def _clean_reason(reason: object) -> str | None:
    if reason is None:
        return None
    if not isinstance(reason, str) or len(reason) > REASON_MAX_CHARS:
        raise BadRequest(
            "Invalid reason.",
            errors=[{"field": "reason", "message": f"a string of at most {REASON_MAX_CHARS} characters"}],
        )
    return reason.strip() or None


def _actor_name(actor: User, booking: Booking) -> str:
    if actor.display_name:
        return actor.display_name
    roles = party_roles(actor, booking)
    return f"the {next(iter(sorted(roles)))}" if roles else "an administrator"


def _system_body(*, actor: User | None, booking: Booking, status: str, reason: str | None) -> str:
    body = _STATUS_TEXT[status]
    if actor is not None:
        body += f" by {_actor_name(actor, booking)}"
    body += "."
    if reason:
        body += f" Reason: {reason}"
    return body


def booking_set_status(
    *,
    actor: User | None,
    booking_id: uuid.UUID | str,
    status: str,
    reason: str | None = None,
    source: Source = "ws",
) -> Booking:
    """Move a booking's status per the §2.2 table; `actor=None` is the system (domain events).

    Status, system message and (after commit) `booking.status_changed` happen in one transaction:
    all or nothing. The row lock makes concurrent moves queue, so of two conflicting moves the
    second sees the first's result and gets `conflict`. The returned booking carries its
    conversation (so `serialize.booking` needs no query)."""
    status = _clean_status(status)
    reason = _clean_reason(reason)
    with transaction.atomic():
        booking = access_booking(user=actor, booking_id=booking_id, lock=True)
        check_move(actor=actor, booking=booking, status=status)
        previous = booking.status
        booking.status = status
        booking.live_location = None  # a fix only means something while en route
        booking.save(update_fields=["status", "live_location", "updated_at"])
        conversation = conversation_for_booking(booking=booking)
        booking.conversation = conversation
        changed_by = str(actor.id) if actor is not None else None
        message_post_system(
            conversation=conversation,
            body=_system_body(actor=actor, booking=booking, status=status, reason=reason),
            data={
                "event": "booking.status_changed",
                "booking_id": str(booking.id),
                "status": status,
                "previous_status": previous,
                "changed_by": changed_by,
                "reason": reason,
            },
        )
        events.publish(
            events.BookingStatusChanged(
                data=events.BookingStatusChangedData(
                    booking=events.Booking.model_validate(serialize.booking(booking, conversation_id=conversation.id)),
                    previous_status=cast(events.BookingStatusName, previous),  # a status column; checked by the model
                    changed_by=actor.id if actor is not None else None,
                    reason=reason,
                    at=booking.updated_at,
                )
            ),
            to=[booking.customer_id, booking.provider_id],
        )
    log.info("booking %s: %s -> %s by %s via %s", booking.id, previous, status, changed_by or "system", source)
    return booking


def booking_detail(*, user: User, booking_id: uuid.UUID | str) -> Booking:
    """The booking for `GET /api/bookings/{id}`, with its conversation (created when missing)."""
    booking = access_booking(user=user, booking_id=booking_id)
    booking.conversation = conversation_for_booking(booking=booking)
    return booking


# --- live location -------------------------------------------------------------------------


@dataclass(frozen=True)
class LocationOutcome:
    """What became of one fix: delivered, or dropped by the per-booking rate limit."""

    throttled: bool
    retry_after_s: float = 0.0


def _redis() -> redis.Redis:
    """The process's shared client (hub.redis_clients: one pool, with timeouts)."""
    return sync_redis()


def location_throttle_key(booking_id: uuid.UUID) -> str:
    return f"hub:booking-location:{booking_id}"


def _coordinate(name: str, value: object, low: float, high: float) -> float:
    # bool is an int subclass; `true` is not a coordinate.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadRequest("Invalid location.", errors=[{"field": name, "message": "a finite number"}])
    if not low <= value <= high:
        raise BadRequest("Invalid location.", errors=[{"field": name, "message": f"between {low} and {high}"}])
    return float(value)


def booking_location_update(
    *,
    actor: User,
    booking_id: uuid.UUID | str,
    lat: float,
    lng: float,
    accuracy_m: float | None = None,
) -> LocationOutcome:
    """The provider's live fix while en route: kept as the last fix and sent to the customer's devices.

    At most one fix per booking per `HUB_BOOKING_LOCATION_INTERVAL_MS` (a Redis SET NX PX shared by
    every web process) is kept and sent; the others are dropped and reported as throttled."""
    lat = _coordinate("lat", lat, -90, 90)
    lng = _coordinate("lng", lng, -180, 180)
    if accuracy_m is not None:
        accuracy_m = _coordinate("accuracy_m", accuracy_m, 0, math.inf)
    booking = access_booking(user=actor, booking_id=booking_id)
    if actor.id != booking.provider_id:
        raise PermissionDenied("Only the booking's provider shares a live location.")
    if booking.status != BookingStatus.EN_ROUTE:
        raise Conflict("A live location is shared only while the booking is en route.", status=booking.status)
    interval_ms = settings.HUB_BOOKING_LOCATION_INTERVAL_MS
    if interval_ms > 0:
        key = location_throttle_key(booking.id)
        client = _redis()
        if not client.set(key, b"1", nx=True, px=interval_ms):
            left_ms = client.pttl(key)
            return LocationOutcome(throttled=True, retry_after_s=max(0, int(left_ms)) / 1000)
    now = timezone.now()
    fix: dict[str, Any] = {"lat": lat, "lng": lng, "accuracy_m": accuracy_m, "at": serialize.iso(now)}
    # Conditional on the status: a move off en_route (which holds the row lock and clears the fix)
    # makes this match nothing, so no stale fix survives the move.
    stored = Booking.objects.filter(pk=booking.pk, provider_id=actor.id, status=BookingStatus.EN_ROUTE).update(
        live_location=fix
    )
    if not stored:
        raise Conflict("The booking is no longer en route.")
    events.publish(
        events.BookingLocation(
            data=events.BookingLocationData(booking_id=booking.id, lat=lat, lng=lng, accuracy_m=accuracy_m, at=now)
        ),
        to=[booking.customer_id],
    )
    return LocationOutcome(throttled=False)
