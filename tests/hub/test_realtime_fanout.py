"""hub.realtime fan-out: batched PUBLISHes reach the same subscribers as group_send, in order."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from channels.db import database_sync_to_async as sync_to_async
from channels.layers import get_channel_layer

from hub import realtime
from tests.conftest import ws_connect
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db(transaction=True)


async def test_concurrent_emits_arrive_complete_and_in_order() -> None:
    alice, bob = await sync_to_async(CustomerFactory)(), await sync_to_async(CustomerFactory)()
    async with ws_connect(alice) as a1, ws_connect(alice) as a2, ws_connect(bob) as b:
        # Many emitters at once: they share pipelines, yet each user's events keep emit order.
        await asyncio.gather(*[realtime.emit_async("test.n", {"n": n}, to=[alice.id, bob.id]) for n in range(100)])
        for client in (a1, a2, b):
            got = [(await client.event("test.n"))["n"] for _ in range(100)]
            assert got == list(range(100))


async def test_other_channel_layers_use_group_send(settings: Any) -> None:
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(realtime.user_group("u1"), channel)
    await realtime.emit_async("test.y", {"k": 1}, to=["u1"])
    message = await asyncio.wait_for(layer.receive(channel), 5)
    assert message["type"] == realtime.EVENT_MESSAGE_TYPE and '"test.y"' in message["text"]
