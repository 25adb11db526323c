"""The router notices a silent, dead subscription by itself and recovers with `resync` (ADR 0050)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from channels.db import database_sync_to_async as sync_to_async

from consumers.router import local_router
from hub.redis_clients import sync_redis
from tests.conftest import ws_connect
from tests.factories import CustomerFactory
from tests.published import emit_raw

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_silent_subscription_is_given_up_and_every_connection_resyncs(settings: Any) -> None:
    settings.HUB_ROUTER_PING_S = 0.2
    alice, bob = await sync_to_async(CustomerFactory)(), await sync_to_async(CustomerFactory)()
    async with ws_connect(alice) as a, ws_connect(bob) as b:
        first = local_router()._subscription._conn
        # Redis answers nobody for 1.5 s (a stalled server or a dead link: no reset, no error).
        await sync_to_async(sync_redis().execute_command)("CLIENT", "PAUSE", 1500, "ALL")
        for client in (a, b):
            await client.event("resync", timeout=10)
        assert local_router()._subscription._conn is not first  # it gave up the silent one
        for n, client in enumerate((a, b)):
            assert await emit_raw("test.after", {"n": n}, to=[(alice, bob)[n].id])
            assert await client.event("test.after") == {"n": n}
            await client.no_event("resync", within=0.2)
        assert "pong" in await a.request("ping")


async def test_a_second_device_of_a_subscribed_user_needs_no_round_trip() -> None:
    alice = await sync_to_async(CustomerFactory)()
    async with ws_connect(alice):
        subscription = local_router()._subscription
        tokens = subscription._tokens
        before = next(tokens)
        async with ws_connect(alice) as second:
            assert next(tokens) == before + 1  # no batch was applied for it
            await emit_raw("test.x", {}, to=[alice.id])
            await second.event("test.x")
    await asyncio.sleep(0)


async def test_a_handshake_does_not_wait_long_for_a_slow_redis_and_resyncs_once_subscribed(settings: Any) -> None:
    settings.HUB_WS_SUBSCRIBE_WAIT_S = 0.3
    alice, bob = await sync_to_async(CustomerFactory)(), await sync_to_async(CustomerFactory)()
    async with ws_connect(alice) as a:
        await sync_to_async(sync_redis().execute_command)("CLIENT", "PAUSE", 1500, "ALL")
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with ws_connect(bob) as b:  # its SUBSCRIBE waits for Redis; its hello does not
            assert loop.time() - started < 1.2
            await b.event("resync", timeout=10)
            assert loop.time() - started >= 1.2  # once Redis had applied its subscription
            assert await emit_raw("test.after", {}, to=[bob.id])
            await b.event("test.after")
        await a.no_event("resync", within=0.2)  # alice's subscription never lapsed
