"""End to end: live booking status and location through the Procfile's `web` process (real daphne)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import websockets
from channels.db import database_sync_to_async as sync_to_async

from tests.conftest import ServerProcess, token_for
from tests.factories import CustomerFactory, booking_with_conversation
from tests.wsclient import SocketClient

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


def bearer(user: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_for(user)}"}


async def test_provider_confirms_drives_and_shares_location(web_server: ServerProcess) -> None:
    booking, conversation = await sync_to_async(booking_with_conversation)(status="pending")
    customer, provider = booking.customer, await sync_to_async(lambda: booking.provider.user)()
    stranger = await sync_to_async(CustomerFactory)()
    bid = str(booking.id)

    async with (
        websockets.connect(web_server.ws_url, additional_headers=bearer(customer)) as cust_ws,
        websockets.connect(web_server.ws_url, additional_headers=bearer(provider)) as prov_ws,
        websockets.connect(web_server.ws_url, additional_headers=bearer(stranger)) as other_ws,
        httpx.AsyncClient(base_url=web_server.url) as http,
    ):
        cust, prov, other = SocketClient(cust_ws), SocketClient(prov_ws), SocketClient(other_ws)
        for client in (cust, prov, other):
            assert (await client.recv_frame())["type"] == "hello"

        reply = await prov.request("booking.status", {"booking_id": bid, "status": "confirmed"})
        assert reply["booking"]["status"] == "confirmed"
        assert reply["booking"]["conversation_id"] == str(conversation.id)
        event = await cust.event("booking.status_changed", previous_status="pending")
        assert event["booking"]["status"] == "confirmed" and event["changed_by"] == str(provider.id)
        system = (await cust.event("message.created"))["message"]
        assert system["kind"] == "system" and system["data"]["status"] == "confirmed"

        await prov.request("booking.status", {"booking_id": bid, "status": "en_route", "reason": "Leaving now"})
        event = await cust.event("booking.status_changed", previous_status="confirmed")
        assert event["booking"]["status"] == "en_route" and event["reason"] == "Leaving now"

        assert await prov.request("booking.location", {"booking_id": bid, "lat": 51.5072, "lng": -0.1276}) == {}
        fix = await cust.event("booking.location")
        assert fix["booking_id"] == bid and fix["lat"] == 51.5072 and fix["lng"] == -0.1276
        assert fix["accuracy_m"] is None and fix["at"].endswith("Z")

        got = (await http.get(f"/api/bookings/{bid}", headers=bearer(customer))).json()
        assert got["status"] == "en_route"
        assert {k: got["live_location"][k] for k in ("lat", "lng", "accuracy_m", "at")} == {
            k: fix[k] for k in ("lat", "lng", "accuracy_m", "at")
        }
        assert (await http.get(f"/api/bookings/{bid}", headers=bearer(stranger))).status_code == 404

        # the same move over HTTP reaches the same sockets, and clears the fix
        response = await http.post(
            f"/api/bookings/{bid}/status", json={"status": "in_progress"}, headers=bearer(provider)
        )
        assert response.status_code == 200 and response.json()["live_location"] is None
        event = await cust.event("booking.status_changed", previous_status="en_route")
        assert event["booking"]["status"] == "in_progress"
        await prov.event("booking.status_changed", previous_status="en_route")

        await other.no_event("booking.status_changed", within=0.3)
        assert not [e for e in other.events if e["type"].startswith(("booking.", "message."))]
        assert not [e for e in prov.events if e["type"] == "booking.location"]
