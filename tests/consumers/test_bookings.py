"""`booking.status` and `booking.location` over /ws/ (PROTOCOL §2.2): replies, errors, who gets what."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from channels.db import database_sync_to_async as sync_to_async

from hub.models import Booking
from tests.conftest import ws_connect
from tests.factories import AdminFactory, CustomerFactory, booking_with_conversation
from tests.wsclient import FrameError

pytestmark = pytest.mark.django_db(transaction=True)


@sync_to_async
def make_booking(**kwargs: Any) -> tuple[Booking, Any, Any]:
    booking, _conversation = booking_with_conversation(**kwargs)
    return booking, booking.customer, booking.provider.user


@sync_to_async
def reload(booking: Booking) -> Booking:
    return Booking.objects.get(pk=booking.pk)


async def error_code(client: Any, frame_type: str, data: dict[str, Any]) -> str:
    with pytest.raises(FrameError) as err:
        await client.request(frame_type, data)
    return str(err.value.code)


async def test_status_change_reaches_every_device_of_both_parties_only() -> None:
    booking, customer, provider = await make_booking(status="pending")
    stranger = await sync_to_async(CustomerFactory)()
    admin = await sync_to_async(AdminFactory)()
    async with (
        ws_connect(provider) as prov1,
        ws_connect(provider) as prov2,
        ws_connect(customer) as cust1,
        ws_connect(customer) as cust2,
        ws_connect(stranger) as other,
        ws_connect(admin) as watching_admin,
    ):
        reply = await prov1.request("booking.status", {"booking_id": str(booking.id), "status": "confirmed"})
        assert reply["booking"]["id"] == str(booking.id) and reply["booking"]["status"] == "confirmed"
        assert reply["booking"]["conversation_id"]
        for device in (prov1, prov2, cust1, cust2):
            event = await device.event("booking.status_changed")
            assert event["booking"] == reply["booking"]
            assert event["previous_status"] == "pending"
            assert event["changed_by"] == str(provider.id)
            assert event["reason"] is None and event["at"].endswith("Z")
            created = await device.event("message.created")
            message = created["message"]
            assert message["kind"] == "system" and message["sender_id"] is None
            assert message["conversation_id"] == reply["booking"]["conversation_id"]
            assert message["data"]["event"] == "booking.status_changed"
            assert message["data"]["status"] == "confirmed"
        await other.no_event("booking.status_changed", within=0.3)
        await watching_admin.no_event("booking.status_changed", within=0.1)
        assert other.events == [] and watching_admin.events == []

        reply = await cust2.request(
            "booking.status", {"booking_id": str(booking.id), "status": "cancelled", "reason": "Sick"}
        )
        event = await prov2.event("booking.status_changed", previous_status="confirmed")
        assert event["booking"]["status"] == "cancelled" and event["reason"] == "Sick"
        assert event["changed_by"] == str(customer.id)


async def test_status_errors() -> None:
    booking, customer, provider = await make_booking(status="pending")
    stranger = await sync_to_async(CustomerFactory)()
    bid = str(booking.id)
    async with ws_connect(customer) as cust, ws_connect(provider) as prov, ws_connect(stranger) as other:
        assert await error_code(cust, "booking.status", {"booking_id": bid, "status": "confirmed"}) == "forbidden"
        assert await error_code(prov, "booking.status", {"booking_id": bid, "status": "completed"}) == "conflict"
        assert await error_code(other, "booking.status", {"booking_id": bid, "status": "cancelled"}) == "not_found"
        unknown = {"booking_id": str(uuid.uuid4()), "status": "cancelled"}
        assert await error_code(prov, "booking.status", unknown) == "not_found"
        for bad in (
            {"booking_id": bid, "status": "done"},
            {"booking_id": "nope", "status": "confirmed"},
            {"booking_id": bid},
            {"booking_id": bid, "status": "confirmed", "extra": 1},
            {"booking_id": bid, "status": "confirmed", "reason": 5},
            {"booking_id": bid, "status": "confirmed", "reason": "x" * 501},
        ):
            assert await error_code(prov, "booking.status", bad) == "bad_request", bad
        assert (await reload(booking)).status == "pending"
        # the connection is still usable after errors
        reply = await prov.request("booking.status", {"booking_id": bid, "status": "confirmed"})
        assert reply["booking"]["status"] == "confirmed"


async def test_location_goes_to_the_customer_devices_only(settings: Any) -> None:
    settings.HUB_BOOKING_LOCATION_INTERVAL_MS = 60_000  # a window no slow machine outlasts
    booking, customer, provider = await make_booking(status="en_route")
    _other_booking, other_customer, _ = await make_booking(status="en_route", provider=booking.provider)
    stranger = await sync_to_async(CustomerFactory)()
    admin = await sync_to_async(AdminFactory)()
    async with (
        ws_connect(provider) as prov1,
        ws_connect(provider) as prov2,
        ws_connect(customer) as cust1,
        ws_connect(customer) as cust2,
        ws_connect(other_customer) as other_cust,
        ws_connect(stranger) as other,
        ws_connect(admin) as watching_admin,
    ):
        fix = {"booking_id": str(booking.id), "lat": 40.7128, "lng": -74.006, "accuracy_m": 12.5}
        assert await prov1.request("booking.location", fix) == {}
        # at most about once a second per booking: the next fix, from any device, is dropped politely
        reply = await prov2.request("booking.location", {**fix, "lat": 40.8})
        assert reply["throttled"] is True and 0 < reply["retry_after_s"] <= 60
        for device in (cust1, cust2):
            event = await device.event("booking.location")
            assert {k: event[k] for k in fix} == fix
            assert event["at"].endswith("Z")
            await device.no_event("booking.location", within=0.2)
        for device in (prov1, prov2, other_cust, other, watching_admin):
            await device.no_event("booking.location", within=0.2)
        stored = (await reload(booking)).live_location
        assert stored["lat"] == 40.7128 and stored["accuracy_m"] == 12.5


async def test_location_errors() -> None:
    booking, customer, provider = await make_booking(status="en_route")
    confirmed, _, _ = await make_booking(status="confirmed", provider=booking.provider)
    stranger = await sync_to_async(CustomerFactory)()
    bid = str(booking.id)
    async with ws_connect(customer) as cust, ws_connect(provider) as prov, ws_connect(stranger) as other:
        for bad in (
            {"booking_id": bid, "lat": 91, "lng": 0},
            {"booking_id": bid, "lat": 0, "lng": -180.5},
            {"booking_id": bid, "lat": "45", "lng": 0},
            {"booking_id": bid, "lat": True, "lng": 0},
            {"booking_id": bid, "lat": 0, "lng": 0, "accuracy_m": -3},
            {"booking_id": bid, "lat": 0},
            {"booking_id": bid, "lat": 0, "lng": 0, "heading": 90},
        ):
            assert await error_code(prov, "booking.location", bad) == "bad_request", bad
        good = {"booking_id": bid, "lat": 1, "lng": 2}
        assert await error_code(cust, "booking.location", good) == "forbidden"
        assert await error_code(other, "booking.location", good) == "not_found"
        assert await error_code(prov, "booking.location", {**good, "booking_id": str(confirmed.id)}) == "conflict"
        await cust.no_event("booking.location", within=0.2)
        assert (await reload(booking)).live_location is None
        # the provider is not throttled by anyone's failed attempts
        assert await prov.request("booking.location", good) == {}
        assert (await cust.event("booking.location"))["lat"] == 1
