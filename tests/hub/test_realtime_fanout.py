"""hub.realtime: batched PUBLISHes on the hub's own channels, in order; failures are clean (ADR 0050)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from channels.db import database_sync_to_async as sync_to_async

from hub import metrics, realtime
from hub.redis_clients import async_redis
from tests.conftest import free_port, ws_connect
from tests.factories import CustomerFactory
from tests.published import emit_raw, send_raw

pytestmark = pytest.mark.django_db(transaction=True)


async def test_concurrent_emits_arrive_complete_and_in_order() -> None:
    alice, bob = await sync_to_async(CustomerFactory)(), await sync_to_async(CustomerFactory)()
    async with ws_connect(alice) as a1, ws_connect(alice) as a2, ws_connect(bob) as b:
        # Many emitters at once: they share pipelines, yet each user's events keep emit order.
        await asyncio.gather(*[emit_raw("test.n", {"n": n}, to=[alice.id, bob.id]) for n in range(100)])
        for client in (a1, a2, b):
            got = [(await client.event("test.n"))["n"] for _ in range(100)]
            assert got == list(range(100))


async def test_events_are_orjson_payloads_on_the_hubs_own_channels() -> None:
    client = async_redis().pubsub()
    await client.subscribe(realtime.user_channel("u1"))
    await client.get_message(timeout=1)  # the subscribe confirmation
    assert await emit_raw("test.y", {"k": 1}, to=["u1", "u1"], exclude_channel="hub:process.p!c")
    assert await realtime.publish_frames([('{"type":"test.z","data":{}}', ["u1"], None)])
    got = [await client.get_message(timeout=2) for _ in range(2)]
    assert [(m["channel"], orjson.loads(m["data"])) for m in got if m] == [
        (b"hub:user.u1", {"text": '{"type":"test.y","data":{"k":1}}', "exclude": "hub:process.p!c"}),
        (b"hub:user.u1", {"text": '{"type":"test.z","data":{}}'}),
    ]  # once per user, in order
    assert await client.get_message(timeout=0.3) is None
    await client.aclose()


async def test_send_to_channel_refuses_a_name_that_is_not_a_connections() -> None:
    for name in ("user.1", "", "hub:user.x", "other:process.p!c"):
        with pytest.raises(ValueError):
            await send_raw(name, "test.x", {})


async def test_publishing_while_redis_is_away_fails_cleanly(
    settings: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(realtime, "_failures", realtime._Failures())
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    failed = metrics.PUBLISH_FAILED._value.get()
    assert await emit_raw("test.x", {}, to=["u1", "u2"]) is False
    assert await realtime.publish_frames([('{"type":"test.x","data":{}}', ["u1"], None)]) is False
    assert await send_raw("hub:process.p!c", "test.x", {}) is False
    # sync, at once outside a transaction
    await sync_to_async(realtime.publish_frames_on_commit)([('{"type":"test.x","data":{}}', ["u1"], None)])
    assert metrics.PUBLISH_FAILED._value.get() - failed == 5
    assert [r.levelname for r in caplog.records if r.name == "hub.realtime"] == ["WARNING"]  # once, not per event
