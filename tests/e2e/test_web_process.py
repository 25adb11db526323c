"""End to end: the Procfile's `web` process (daphne) on a real port, a real WebSocket client."""

from __future__ import annotations

import json

import httpx
import pytest
import websockets
from channels.db import database_sync_to_async as sync_to_async

from tests.conftest import ServerProcess, token_for
from tests.factories import CustomerFactory
from tests.wsclient import SocketClient

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


async def test_hello_ping_and_limits_over_a_real_socket(web_server: ServerProcess) -> None:
    user = await sync_to_async(CustomerFactory)(display_name="Eve")
    async with httpx.AsyncClient(base_url=web_server.url) as http:
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        ticket = (await http.post("/api/ws-tickets", headers={"Authorization": f"Bearer {token_for(user)}"})).json()

    headers = {"Authorization": f"Bearer {token_for(user)}"}
    async with websockets.connect(web_server.ws_url, additional_headers=headers) as ws:
        client = SocketClient(ws)
        hello = await client.recv_frame()
        assert hello["type"] == "hello" and hello["data"]["user"]["display_name"] == "Eve"
        assert "pong" in await client.request("ping")
        await ws.send("{")
        assert (await client.recv_frame())["data"]["code"] == "bad_request"
        assert "pong" in await client.request("ping")
        await ws.send(json.dumps({"type": "ping", "data": {"pad": "x" * 70_000}}))
        with pytest.raises(websockets.ConnectionClosed):
            await client.recv_frame()
        assert ws.close_code == 1009

    async with websockets.connect(f"{web_server.ws_url}?ticket={ticket['ticket']}") as ws:
        hello = json.loads(await ws.recv())
        assert hello["data"]["user"]["id"] == str(user.id)

    async with websockets.connect(web_server.ws_url, additional_headers={"Authorization": "Bearer x"}) as ws:
        with pytest.raises(websockets.ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 4401

    async with websockets.connect(web_server.ws_url, additional_headers=headers, origin="https://evil.example") as ws:
        with pytest.raises(websockets.ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 4403
