"""The connect path and idle connections (ADR 0035): coalesced presence, the per-process router, the idle sweep."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import pytest
from channels.db import aclose_old_connections
from channels.db import database_sync_to_async as sync_to_async
from django.utils import timezone

from consumers.registry import ROUTES, Empty, Route
from consumers.router import local_router
from hub import realtime
from hub.coalesce import Coalescer
from hub.models import Block, User
from hub.redis_clients import sync_redis
from hub.services import presence
from tests.conftest import ws_connect
from tests.factories import CustomerFactory, ProviderFactory, booking_with_conversation
from tests.published import emit_raw, send_raw

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
async def _close_the_batches_connection() -> Any:
    """Batched look-ups run in a task of their own, whose sync-thread connection no consumer's disconnect
    closes (as in test_handshake_costs); the test closes it."""
    yield
    await aclose_old_connections()


@sync_to_async
def provider_with_customers(n: int) -> tuple[User, list[User], User]:
    """A provider user sharing a booking conversation with each of n customers, plus one more they blocked."""
    provider = ProviderFactory()
    customers = [booking_with_conversation(provider=provider)[0].customer for _ in range(n)]
    blocked = booking_with_conversation(provider=provider)[0].customer
    Block.objects.create(blocker=provider.user, blocked=blocked)
    return provider.user, customers, blocked


@pytest.fixture
def peer_queries(monkeypatch: pytest.MonkeyPatch) -> list[list[uuid.UUID]]:
    """The user ids of every peers query presence made, one list per query."""
    calls: list[list[uuid.UUID]] = []
    original = presence.conversation_peers_many

    def spying(*, user_ids: Any) -> Any:
        calls.append(list(user_ids))
        return original(user_ids=user_ids)

    monkeypatch.setattr(presence, "conversation_peers_many", spying)
    return calls


async def presence_events(client: Any, n: int) -> dict[str, str]:
    got: dict[str, str] = {}
    for _ in range(n):
        event = await client.event("presence", timeout=10)
        assert event["user_id"] not in got, event  # once per user, not per device
        got[event["user_id"]] = event["status"]
    return got


# --- presence, coalesced ---------------------------------------------------------------------------


async def test_concurrent_first_connects_are_announced_once_each_to_their_peers(
    peer_queries: list[list[uuid.UUID]],
) -> None:
    provider, customers, blocked = await provider_with_customers(8)
    async with ws_connect(provider) as watcher, contextlib.AsyncExitStack() as stack:
        await watcher.request("ping")  # answered after the connect hooks (the provider's own presence) ran
        peer_queries.clear()
        devices = [ws_connect(user) for user in [*customers, *customers[:3], blocked]]
        await asyncio.gather(*(stack.enter_async_context(device) for device in devices))
        assert await presence_events(watcher, 8) == {str(c.id): "online" for c in customers}
        await watcher.no_event("presence", within=0.3)  # not the blocked one, not a second device
        asked = [user_id for query in peer_queries for user_id in query]
        assert set(asked) == {c.id for c in customers} | {blocked.id}
        assert len(asked) == len(set(asked))  # each user's peers looked up once
        online = await sync_to_async(presence.online_user_ids)(user_ids=[c.id for c in customers])
        assert online == {c.id for c in customers}

        await stack.aclose()  # every customer device goes at once
        assert await presence_events(watcher, 8) == {str(c.id): "offline" for c in customers}
        await watcher.no_event("presence", within=0.3)
        seen = await sync_to_async(lambda: dict(User.objects.values_list("id", "last_seen_at")))()
        assert all(seen[c.id] is not None for c in [*customers, blocked])


async def test_announcements_made_together_share_one_peers_query_and_keep_their_order(
    peer_queries: list[list[uuid.UUID]],
) -> None:
    provider, customers, _ = await provider_with_customers(5)
    async with ws_connect(provider) as watcher:
        await watcher.request("ping")  # answered after the connect hooks (the provider's own presence) ran
        peer_queries.clear()
        now = timezone.now()
        first = customers[0].id
        await asyncio.gather(
            presence._announce(first, "online", now),
            *(presence._announce(c.id, "online", now) for c in customers[1:]),
            presence._announce(first, "offline", now),
        )
        assert len(peer_queries) == 1
        events = [await watcher.event("presence") for _ in range(6)]
        mine = [e["status"] for e in events if e["user_id"] == str(first)]
        assert mine == ["online", "offline"]
        assert {e["user_id"] for e in events} == {str(c.id) for c in customers}
    stored = await sync_to_async(User.objects.get)(id=first)
    assert stored.last_seen_at is not None


async def test_coalescer_batches_what_arrives_while_a_batch_runs() -> None:
    batches: list[list[int]] = []
    release = asyncio.Event()

    async def run(items: list[int]) -> list[int]:
        batches.append(items)
        if len(batches) == 1:
            await release.wait()
        if -1 in items:
            raise RuntimeError("bad batch")
        return [i * 10 for i in items]

    coalescer: Coalescer[int, int] = Coalescer(run)
    lone = asyncio.ensure_future(coalescer(1))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    later = [asyncio.ensure_future(coalescer(i)) for i in (2, 3, 4)]
    await asyncio.sleep(0)
    release.set()
    assert [await lone, *[await f for f in later]] == [10, 20, 30, 40]
    assert batches == [[1], [2, 3, 4]]

    failing = await asyncio.gather(coalescer(5), coalescer(-1), return_exceptions=True)
    assert [str(r) for r in failing] == ["bad batch", "bad batch"]  # every caller of that batch learns it
    assert await coalescer(6) == 60  # and the next batch runs


# --- the router ------------------------------------------------------------------------------------


def channel_of(connection_id: str) -> str:
    return local_router()._by_connection[connection_id].channel_name  # type: ignore[attr-defined]


async def test_send_to_channel_reaches_one_connection_and_exclude_skips_one() -> None:
    user = await sync_to_async(CustomerFactory)()
    async with ws_connect(user) as d1, ws_connect(user) as d2:
        assert d1.hello is not None
        one = channel_of(d1.hello["connection_id"])
        await send_raw(one, "test.only", {"n": 1})
        assert (await d1.event("test.only"))["n"] == 1
        await emit_raw("test.others", {"n": 2}, to=[user.id], exclude_channel=one)
        assert (await d2.event("test.others"))["n"] == 2
        await d2.no_event("test.only", within=0.3)
        await d1.no_event("test.others", within=0.3)


async def test_a_users_subscription_ends_with_their_last_local_connection() -> None:
    user = await sync_to_async(CustomerFactory)()
    router = local_router()
    group = realtime.user_channel(user.id)

    def subscribers() -> int:
        return int(sync_redis().pubsub_numsub(group)[0][1])

    async with ws_connect(user):
        async with ws_connect(user):
            assert subscribers() == 1  # one per process, not per connection
        assert subscribers() == 1
    for _ in range(100):
        if subscribers() == 0:
            break
        await asyncio.sleep(0.05)
    assert subscribers() == 0 and router.connection_count() == 0


async def test_events_arriving_while_a_request_is_handled_follow_its_reply(monkeypatch: pytest.MonkeyPatch) -> None:
    user = await sync_to_async(CustomerFactory)()

    async def emit_to_self(conn: Any, data: Empty) -> dict[str, Any]:
        await emit_raw("test.meanwhile", {}, to=[conn.user_id])
        for _ in range(200):  # hold the request until the event is here
            if conn.consumer._deferred:
                break
            await asyncio.sleep(0.01)
        return {"held": bool(conn.consumer._deferred)}

    monkeypatch.setitem(ROUTES, "test.emit_to_self", Route("test.emit_to_self", Empty, emit_to_self))
    async with ws_connect(user) as client:
        assert await client.request("test.emit_to_self") == {"held": True}
        assert client.events == []  # nothing came before the reply
        await client.event("test.meanwhile")


async def test_the_router_subscribes_again_after_losing_redis() -> None:
    user = await sync_to_async(CustomerFactory)()
    async with ws_connect(user) as client:
        router = local_router()
        host, port = router._subscription._conn._writer.get_extra_info("sockname")[:2]
        sync_redis().execute_command("CLIENT", "KILL", "ADDR", f"{host}:{port}")
        for n in range(100):  # events published while it reconnects are lost (at most once)
            await emit_raw("test.probe", {"n": n}, to=[user.id])
            with contextlib.suppress(TimeoutError):
                await client.event("test.probe", timeout=0.2)
                break
        else:
            pytest.fail("no event after the reconnect")
        for n in range(5):
            await emit_raw("test.after", {"n": n}, to=[user.id])
        assert [(await client.event("test.after"))["n"] for _ in range(5)] == list(range(5))
        assert "pong" in await client.request("ping")


# --- idle connections ----------------------------------------------------------------------------


async def test_one_sweep_closes_silent_connections_and_spares_talking_ones(settings: Any) -> None:
    settings.HUB_WS_IDLE_TIMEOUT_S = 0.8
    user = await sync_to_async(CustomerFactory)()
    async with ws_connect(user) as talking, ws_connect(user) as silent:
        closed_with = None
        for _ in range(12):  # ~2.4 s: three idle timeouts
            assert "pong" in await talking.request("ping")
            await asyncio.sleep(0.2)
            if closed_with is None:
                try:
                    await silent.recv_frame(0.01)
                except ConnectionError as exc:
                    closed_with = str(exc)
                except TimeoutError:
                    pass
        assert closed_with == "closed 4408"
        assert "pong" in await talking.request("ping")
