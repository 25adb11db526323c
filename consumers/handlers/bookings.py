"""Live booking status requests (PROTOCOL §2.2): transport only, the rules live in hub.services.bookings."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from channels.db import database_sync_to_async
from pydantic import Field

from consumers.connection import Connection
from consumers.registry import Payload, handles
from hub import serialize
from hub.services.bookings import REASON_MAX_CHARS, booking_location_update, booking_set_status
from hub.validation import Text

StatusName = Literal["pending", "confirmed", "declined", "cancelled", "en_route", "in_progress", "completed"]


def _number(low: float | None = None, high: float | None = None) -> Any:
    # strict: "12.5" and true are not coordinates; ints are fine.
    return Field(strict=True, ge=low, le=high, allow_inf_nan=False)


class BookingStatusIn(Payload):
    booking_id: uuid.UUID
    status: StatusName
    reason: Annotated[Text | None, Field(max_length=REASON_MAX_CHARS)] = None


class BookingLocationIn(Payload):
    booking_id: uuid.UUID
    lat: Annotated[float, _number(-90, 90)]
    lng: Annotated[float, _number(-180, 180)]
    accuracy_m: Annotated[float | None, _number(0)] = None


def _set_status(conn: Connection, data: BookingStatusIn) -> dict[str, Any]:
    booking = booking_set_status(
        actor=conn.user, booking_id=data.booking_id, status=data.status, reason=data.reason, source="ws"
    )
    return {"booking": serialize.booking(booking)}


@handles("booking.status", BookingStatusIn)
async def booking_status(conn: Connection, data: BookingStatusIn) -> dict[str, Any]:
    return await database_sync_to_async(_set_status)(conn, data)


@handles("booking.location", BookingLocationIn)
async def booking_location(conn: Connection, data: BookingLocationIn) -> dict[str, Any]:
    outcome = await database_sync_to_async(booking_location_update)(
        actor=conn.user, booking_id=data.booking_id, lat=data.lat, lng=data.lng, accuracy_m=data.accuracy_m
    )
    if outcome.throttled:
        return {"throttled": True, "retry_after_s": outcome.retry_after_s}
    return {}
