"""The per-process router across processes (ADR 0035): a real daphne `web` process and this test process,
each holding one device of the same user, both subscribed through their own router."""

from __future__ import annotations

import pytest
import websockets
from channels.db import database_sync_to_async as sync_to_async

from consumers.router import local_router
from hub import realtime
from tests.conftest import ServerProcess, token_for, ws_connect
from tests.factories import CustomerFactory
from tests.published import emit_raw, send_raw
from tests.wsclient import SocketClient

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


async def test_events_reach_devices_in_every_process_and_one_connection_only_its_own(
    web_server: ServerProcess,
) -> None:
    user = await sync_to_async(CustomerFactory)()
    headers = {"Authorization": f"Bearer {token_for(user)}"}
    async with websockets.connect(web_server.ws_url, additional_headers=headers) as ws, ws_connect(user) as here:
        there = SocketClient(ws)
        assert (await there.recv_frame(10))["type"] == "hello"

        # From sync code, as a Celery worker emits: both processes deliver, in order.
        for n in range(20):
            await sync_to_async(realtime.publish_frames_on_commit)(
                [(realtime.encode_frame("test.n", {"n": n}), [user.id], None)]
            )
        assert [(await there.event("test.n", timeout=10))["n"] for _ in range(20)] == list(range(20))
        assert [(await here.event("test.n", timeout=10))["n"] for _ in range(20)] == list(range(20))

        # To exactly one connection: the one in this process, not the other process's device.
        assert here.hello is not None
        mine = local_router()._by_connection[here.hello["connection_id"]].channel_name  # type: ignore[attr-defined]
        await send_raw(mine, "test.only", {"k": 1})
        assert await here.event("test.only") == {"k": 1}
        await emit_raw("test.rest", {"k": 2}, to=[user.id], exclude_channel=mine)
        assert await there.event("test.rest", timeout=10) == {"k": 2}
        await there.no_event("test.only", within=0.5)
        await here.no_event("test.rest", within=0.3)
