"""/ws/ handshake, envelope and close codes (PROTOCOL §2), through the full ASGI stack."""

from __future__ import annotations

import asyncio
import json

import pytest
from channels.db import database_sync_to_async as sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from config.asgi import application
from hub.services.identity import ws_ticket_issue
from tests.conftest import token_for, ws_connect
from tests.factories import CustomerFactory
from tests.published import emit_raw
from tests.wsclient import FrameError

pytestmark = pytest.mark.django_db(transaction=True)

create_user = sync_to_async(CustomerFactory)


async def close_code(headers: list[tuple[bytes, bytes]], path: str = "/ws/") -> int | None:
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, _ = await communicator.connect(timeout=10)
    assert connected  # accepted, then closed with the protocol's code
    message = await communicator.receive_output(5)
    assert message["type"] == "websocket.close", message
    await communicator.wait()
    return message.get("code")


async def test_hello_and_ping() -> None:
    user = await create_user(display_name="Alice")
    async with ws_connect(user) as client:
        assert client.hello is not None
        assert client.hello["user"] == {"id": str(user.id), "display_name": "Alice", "role": "customer"}
        assert client.hello["connection_id"] and client.hello["heartbeat_s"] > 0
        assert client.hello["server_time"].endswith("Z")
        reply = await client.request("ping")
        assert reply["pong"].endswith("Z")


async def test_bad_frames_get_errors_and_connection_stays_usable() -> None:
    user = await create_user()
    async with ws_connect(user) as client:
        cases = [
            ("not json", None),
            ("[1, 2]", None),
            ('{"ref": "a"}', "a"),
            ('{"type": 5, "ref": "b"}', "b"),
            ('{"type": "no.such.thing", "ref": "c"}', "c"),
            ('{"type": "ping", "ref": "d", "data": []}', "d"),
            ('{"type": "ping", "ref": "e", "data": {"extra": 1}}', "e"),
            ('{"type": "ping", "ref": 7}', None),
        ]
        for text, ref in cases:
            await client.send_text(text)
            frame = await client.recv_frame()
            assert frame["type"] == "error", text
            assert frame["data"]["code"] == "bad_request" and frame["data"]["message"], text
            assert frame.get("ref") == ref, text
        await client.communicator.send_to(bytes_data=b"\x00\x01")
        frame = await client.recv_frame()
        assert frame["data"]["code"] == "bad_request"
        assert "pong" in await client.request("ping")


async def test_validation_errors_name_the_field() -> None:
    user = await create_user()
    async with ws_connect(user) as client:
        with pytest.raises(FrameError) as err:
            await client.request("ping", {"bogus": True})
        assert err.value.code == "bad_request"
        assert err.value.data["errors"][0]["field"] == "bogus"


async def test_oversize_frame_closes_1009() -> None:
    user = await create_user()
    async with ws_connect(user) as client:
        await client.send_text(json.dumps({"type": "ping", "data": {"x": "é" * 40_000}}))
        message = await client.communicator.receive_output(5)
        assert message == {"type": "websocket.close", "code": 1009, "reason": "frame too large"} or (
            message["type"] == "websocket.close" and message["code"] == 1009
        )


async def test_idle_connection_closed_4408(settings) -> None:  # type: ignore[no-untyped-def]
    settings.HUB_WS_IDLE_TIMEOUT_S = 0.6
    user = await create_user()
    async with ws_connect(user) as client:
        await asyncio.sleep(0.3)
        await client.request("ping")  # traffic resets the clock
        await asyncio.sleep(0.4)
        await client.request("ping")
        message = await client.communicator.receive_output(3)
        assert message["type"] == "websocket.close" and message["code"] == 4408


@pytest.mark.parametrize(
    "headers",
    [
        [],
        [(b"authorization", b"Bearer not-a-jwt")],
        [(b"authorization", b"Basic abc")],
    ],
    ids=["none", "bad-token", "wrong-scheme"],
)
async def test_unauthenticated_closed_4401(headers: list[tuple[bytes, bytes]]) -> None:
    assert await close_code(headers) == 4401


async def test_expired_and_inactive_closed_4401() -> None:
    user = await create_user()
    inactive = await create_user(is_active=False)
    assert await close_code([(b"authorization", f"Bearer {token_for(user, ttl_s=-120)}".encode())]) == 4401
    assert await close_code([(b"authorization", f"Bearer {token_for(inactive)}".encode())]) == 4401


async def test_ticket_is_single_use() -> None:
    user = await create_user()
    issued = await sync_to_async(ws_ticket_issue)(user=user)
    async with ws_connect(path=f"/ws/?ticket={issued.ticket}") as client:
        assert client.hello is not None and client.hello["user"]["id"] == str(user.id)
    assert await close_code([], path=f"/ws/?ticket={issued.ticket}") == 4401


async def test_session_cookie() -> None:
    user = await create_user()

    def login_cookie() -> str:
        client = Client()
        client.force_login(user)
        return f"sessionid={client.cookies['sessionid'].value}"

    cookie = await sync_to_async(login_cookie)()
    async with ws_connect(headers=[(b"cookie", cookie.encode()), (b"origin", b"http://localhost:3000")]) as client:
        assert client.hello is not None and client.hello["user"]["id"] == str(user.id)


async def test_origin_checked(settings) -> None:  # type: ignore[no-untyped-def]
    user = await create_user()
    auth = (b"authorization", f"Bearer {token_for(user)}".encode())
    assert await close_code([auth, (b"origin", b"https://evil.example")]) == 4403
    async with ws_connect(user, headers=[(b"origin", b"http://127.0.0.1:5173")]) as client:
        assert client.hello is not None
    settings.HUB_ALLOWED_ORIGINS = ["https://app.loconomy.com"]
    assert await close_code([auth, (b"origin", b"http://app.loconomy.com")]) == 4403
    async with ws_connect(user, headers=[(b"origin", b"https://app.loconomy.com")]) as client:
        assert client.hello is not None


async def test_events_reach_every_device_of_the_user_only() -> None:

    alice, bob = await create_user(), await create_user()
    async with ws_connect(alice) as a1, ws_connect(alice) as a2, ws_connect(bob) as b1:
        await emit_raw("test.event", {"n": 1}, to=[alice.id])
        assert (await a1.event("test.event"))["n"] == 1
        assert (await a2.event("test.event"))["n"] == 1
        await b1.no_event("test.event", within=0.3)
