"""What keeps connects and deliveries cheap (ADR 0030): batched user look-ups at the handshake,
no sync-thread round trip per delivered event, and autobahn's debug formatting left undone."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
import txaio
from autobahn.websocket import protocol as autobahn_protocol
from channels.db import aclose_old_connections
from channels.db import database_sync_to_async as sync_to_async

from config import daphne_options
from consumers import auth
from hub.errors import Unauthorized
from tests.conftest import ws_connect
from tests.factories import CustomerFactory
from tests.published import emit_raw

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
async def _close_the_loaders_connection() -> Any:
    """Loader calls made outside a consumer leave the sync thread's connection open; a consumer's
    disconnect would close it, here the test does."""
    yield
    await aclose_old_connections()


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> list[list[uuid.UUID]]:
    """The id lists the loader asked the database about, one per query."""
    calls: list[list[uuid.UUID]] = []
    original = auth.active_users

    def spying(user_ids: Any) -> Any:
        calls.append(list(user_ids))
        return original(user_ids)

    monkeypatch.setattr(auth, "active_users", spying)
    return calls


async def test_concurrent_handshakes_share_one_user_query(lookups: list[list[uuid.UUID]]) -> None:
    users = [await sync_to_async(CustomerFactory)() for _ in range(20)]
    inactive = await sync_to_async(CustomerFactory)(is_active=False)
    unknown = uuid.uuid4()
    ids = [u.id for u in users] + [users[0].id, inactive.id, unknown]
    results = await asyncio.gather(*(auth.user_load(i) for i in ids), return_exceptions=True)

    assert len(lookups) == 1 and set(lookups[0]) == set(ids)
    assert [r.id for r in results[:21]] == [u.id for u in users] + [users[0].id]  # type: ignore[union-attr]
    assert results[0] is not results[20]  # each connection gets its own instance
    assert all(isinstance(r, Unauthorized) for r in results[21:])


async def test_a_lone_handshake_is_not_kept_waiting(lookups: list[list[uuid.UUID]]) -> None:
    user = await sync_to_async(CustomerFactory)()
    async with ws_connect(user) as client:
        assert client.hello is not None and client.hello["user"]["id"] == str(user.id)
    assert lookups == [[user.id]]


async def test_a_database_failure_reaches_every_waiting_handshake(monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(user_ids: Any) -> Any:
        raise RuntimeError("database down")

    monkeypatch.setattr(auth, "active_users", failing)
    results = await asyncio.gather(*(auth.user_load(uuid.uuid4()) for _ in range(3)), return_exceptions=True)
    assert [str(r) for r in results] == ["database down"] * 3
    monkeypatch.undo()
    user = await sync_to_async(CustomerFactory)()
    assert (await auth.user_load(user.id)).id == user.id  # the next batch runs as usual


async def test_events_are_delivered_without_a_round_trip_through_the_sync_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hops: list[str] = []

    async def counting() -> None:
        hops.append("aclose_old_connections")

    monkeypatch.setattr("channels.consumer.aclose_old_connections", counting)  # per message, upstream
    monkeypatch.setattr("channels.generic.websocket.aclose_old_connections", counting)  # at disconnect, upstream
    monkeypatch.setattr("consumers.hub.aclose_old_connections", counting)  # at disconnect, the hub's consumer
    user = await sync_to_async(CustomerFactory)()
    async with ws_connect(user) as client:
        for n in range(5):
            await emit_raw("bench.test", {"n": n}, to=[user.id])
            assert (await client.event("bench.test"))["n"] == n
        assert "pong" in await client.request("ping")
        assert hops == []
    assert hops == ["aclose_old_connections"]  # once, when the connection ends


def test_autobahn_formats_its_debug_lines_only_when_they_are_shown() -> None:
    daphne_options.install()
    assert autobahn_protocol.pformat is daphne_options._pformat_when_shown
    level = txaio.get_global_log_level()
    try:
        assert "not formatted" in autobahn_protocol.pformat([("a", 1)])
        txaio.set_global_log_level("debug")
        assert autobahn_protocol.pformat([("a", 1)]) == "[('a', 1)]"
    finally:
        txaio.set_global_log_level(level)
