"""The batching pub/sub channel layer (hub/layers.py, ADR 0030) against a real Redis."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
import redis
from django.conf import settings

from hub.layers import BatchingPubSubChannelLayer, BatchingShardConnection


def new_layer(url: str | None = None) -> BatchingPubSubChannelLayer:
    return BatchingPubSubChannelLayer(hosts=[url or settings.REDIS_URL])


@pytest.fixture
def sends(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """How many Redis commands (or pipelines) each kind of operation took."""
    counts: Counter[str] = Counter()
    original = BatchingShardConnection._send

    async def counting(self: BatchingShardConnection, op: str, args: list[Any]) -> None:
        counts[op] += 1
        await original(self, op, args)

    monkeypatch.setattr(BatchingShardConnection, "_send", counting)
    return counts


def redis_channels(pattern: str) -> set[str]:
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        return {c.decode() for c in client.pubsub_channels(pattern)}
    finally:
        client.close()


async def test_a_burst_of_subscriptions_goes_out_in_a_few_commands(sends: Counter[str]) -> None:
    layer = new_layer()
    try:
        channels = await asyncio.gather(*(layer.new_channel() for _ in range(200)))
        await asyncio.gather(*(layer.group_add(f"g{i}", ch) for i, ch in enumerate(channels)))
        assert sends["subscribe"] <= 6  # 400 subscriptions; upstream sent one command each
        subscribed = redis_channels("asgi*")
        assert set(channels) <= subscribed
        assert {f"asgi__group__g{i}" for i in range(200)} <= subscribed
    finally:
        await layer.flush()


async def test_group_send_reaches_every_member_in_another_process_in_order(sends: Counter[str]) -> None:
    receiver, sender = new_layer(), new_layer()  # two layers: two processes' worth of connections
    try:
        a, b = await receiver.new_channel(), await receiver.new_channel()
        await receiver.group_add("user.1", a)
        await receiver.group_add("user.1", b)
        await asyncio.gather(*(sender.group_send("user.1", {"type": "hub.event", "n": n}) for n in range(300)))
        assert sends["publish"] < 300  # pipelined
        for channel in (a, b):
            got = [await asyncio.wait_for(receiver.receive(channel), 5) for _ in range(300)]
            assert [m["n"] for m in got] == list(range(300))
    finally:
        await receiver.flush()
        await sender.flush()


async def test_order_of_subscribe_and_unsubscribe_is_kept() -> None:
    layer = new_layer()
    try:
        channel = await layer.new_channel()
        await asyncio.gather(layer.group_add("g", channel), layer.group_discard("g", channel))
        assert "asgi__group__g" not in redis_channels("asgi__group__*")
        await asyncio.gather(layer.group_discard("g", channel), layer.group_add("g", channel))
        assert "asgi__group__g" in redis_channels("asgi__group__*")
    finally:
        await layer.flush()


async def test_a_failed_publish_reaches_its_caller() -> None:
    layer = new_layer("redis://127.0.0.1:1/0")  # nothing listens there
    try:
        results = await asyncio.gather(
            layer.group_send("g", {"type": "hub.event"}), layer.send("c", {"type": "x"}), return_exceptions=True
        )
        assert all(isinstance(r, redis.exceptions.ConnectionError) for r in results), results
    finally:
        await layer.flush()
