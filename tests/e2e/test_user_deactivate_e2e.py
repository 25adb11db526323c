"""Defect 10, second half: a deactivated user's open sockets close 4401 at once, in a real daphne."""

from __future__ import annotations

import asyncio

import pytest
import websockets
from channels.db import database_sync_to_async as sync_to_async

from hub.errors import NotFound
from hub.models import User
from hub.services.users import user_deactivate
from tests.conftest import ServerProcess, token_for
from tests.factories import CustomerFactory
from tests.wsclient import SocketClient

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


async def _closed_with(ws: websockets.ClientConnection, within: float = 5) -> int | None:
    with pytest.raises(websockets.ConnectionClosed):
        while True:
            await asyncio.wait_for(ws.recv(), within)
    return ws.close_code


async def test_deactivation_closes_every_socket_of_the_user_4401_and_no_other(web_server: ServerProcess) -> None:
    alice, bob = await sync_to_async(CustomerFactory)(), await sync_to_async(CustomerFactory)()
    token = token_for(alice)

    def connect(user_token: str) -> websockets.connect:
        return websockets.connect(web_server.ws_url, additional_headers={"Authorization": f"Bearer {user_token}"})

    async with connect(token) as phone, connect(token) as laptop, connect(token_for(bob)) as other:
        for ws in (phone, laptop, other):
            assert (await SocketClient(ws).recv_frame(10))["type"] == "hello"

        await sync_to_async(user_deactivate)(user_id=alice.id)

        assert [await _closed_with(phone), await _closed_with(laptop)] == [4401, 4401]
        assert "pong" in await SocketClient(other).request("ping")  # another user's socket stays open
        assert other.close_code is None

    assert not (await sync_to_async(User.objects.get)(id=alice.id)).is_active
    async with connect(token) as again:  # the same, still unexpired token: refused
        assert await _closed_with(again) == 4401


def test_deactivating_an_unknown_user_is_not_found() -> None:
    import uuid

    with pytest.raises(NotFound):
        user_deactivate(user_id=uuid.uuid4())
