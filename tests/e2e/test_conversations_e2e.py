"""Conversations end to end: two real daphne `web` processes sharing PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import websockets
from channels.db import database_sync_to_async as sync_to_async

from hub.models import Message
from tests import conftest
from tests.conftest import ServerProcess, token_for, wait_for_other_sessions_to_leave
from tests.factories import booking_with_conversation
from tests.wsclient import SocketClient

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

PRESENCE_TTL_S = 3


def chat_env() -> dict[str, str]:
    return {
        **conftest.test_database_env(),
        "DATABASE_CONN_MAX_AGE": "60",
        # The load below is the test's point, not the per-user allowance.
        "HUB_SEND_RATE_BURST": "5000",
        "HUB_SEND_RATE_PER_S": "5000",
        "HUB_PRESENCE_TTL_S": str(PRESENCE_TTL_S),
    }


@pytest.fixture(scope="module")
def servers(django_db_setup: None, django_db_blocker: Any) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Two `web` processes, as behind a load balancer."""
    with django_db_blocker.unblock():
        env = chat_env()
    started = [ServerProcess("web", env), ServerProcess("web", env)]
    try:
        for server in started:
            server.wait_ready()
        yield started[0], started[1]
    finally:
        for server in started:
            server.stop()
        with django_db_blocker.unblock():
            wait_for_other_sessions_to_leave()


@sync_to_async
def chat() -> tuple[Any, Any, Any]:
    booking, conversation = booking_with_conversation()
    return booking.customer, booking.provider.user, conversation


async def connect(server: ServerProcess, user: Any) -> Any:
    ws = await websockets.connect(server.ws_url, additional_headers={"Authorization": f"Bearer {token_for(user)}"})
    client = SocketClient(ws)
    hello = await client.recv_frame(10)
    assert hello["type"] == "hello"
    return client


def send_frame(conversation: Any, ref: str, body: str) -> str:
    return json.dumps(
        {
            "type": "message.send",
            "ref": ref,
            "data": {"conversation_id": str(conversation.id), "client_id": str(uuid.uuid4()), "body": body},
        }
    )


async def fire_and_collect(client: SocketClient, conversation: Any, prefix: str, n: int) -> list[dict[str, Any]]:
    """Send n message.send frames without waiting, then read until every one is answered."""
    for i in range(n):
        await client.ws.send(send_frame(conversation, f"{prefix}{i}", f"{prefix} {i}"))
    replies: dict[str, dict[str, Any]] = {}
    while len(replies) < n:
        frame = await client.recv_frame(30)
        if frame.get("ref", "").startswith(prefix):
            assert frame["type"] == "reply", frame
            replies[frame["ref"]] = frame["data"]["message"]
        else:
            client.events.append(frame)
    return [replies[f"{prefix}{i}"] for i in range(n)]


async def created_seqs(client: SocketClient, count: int) -> list[int]:
    """The seqs of the next `count` message.created events (backlog first)."""
    seqs = [e["data"]["message"]["seq"] for e in client.events if e["type"] == "message.created"]
    client.events = [e for e in client.events if e["type"] != "message.created"]
    while len(seqs) < count:
        frame = await client.recv_frame(30)
        if frame["type"] == "message.created":
            seqs.append(frame["data"]["message"]["seq"])
    return seqs


async def test_two_devices_on_two_processes_200_parallel_sends_each(
    servers: tuple[ServerProcess, ServerProcess],
) -> None:
    s1, s2 = servers
    customer, provider, conversation = await chat()
    a = await connect(s1, customer)
    b = await connect(s2, customer)
    watcher = await connect(s2, provider)
    try:
        from_a, from_b = await asyncio.gather(
            fire_and_collect(a, conversation, "a", 200), fire_and_collect(b, conversation, "b", 200)
        )
        seqs = [m["seq"] for m in from_a + from_b]
        assert sorted(seqs) == list(range(1, 401))
        # One device's messages keep their order (a connection's frames are handled in turn).
        assert [m["seq"] for m in from_a] == sorted(m["seq"] for m in from_a)
        assert sorted(await created_seqs(watcher, 400)) == list(range(1, 401))
        assert sorted(await created_seqs(a, 400)) == list(range(1, 401))
    finally:
        for client in (a, b, watcher):
            await client.ws.close()
    stored = await sync_to_async(
        lambda: list(Message.objects.filter(conversation=conversation).values_list("seq", flat=True))
    )()
    assert sorted(stored) == list(range(1, 401))
    conversation.refresh_from_db = sync_to_async(conversation.refresh_from_db)
    await conversation.refresh_from_db()
    assert conversation.last_seq == 400


async def test_disconnect_reconnect_sync_ends_with_every_message_once(
    servers: tuple[ServerProcess, ServerProcess],
) -> None:
    s1, s2 = servers
    customer, provider, conversation = await chat()
    store: dict[int, str] = {}  # the provider app's local copy: seq -> message id

    def keep(message: dict[str, Any]) -> None:
        assert store.setdefault(message["seq"], message["id"]) == message["id"]

    sender = await connect(s1, customer)
    reader = await connect(s2, provider)
    try:
        for i in range(10):
            await sender.request(
                "message.send",
                {"conversation_id": str(conversation.id), "client_id": f"m{i}", "body": f"m{i}"},
            )
            keep((await reader.event("message.created"))["message"])
        # The provider's network drops mid-conversation (no close handshake).
        reader.ws.transport.abort()
        for i in range(10, 35):
            await sender.request(
                "message.send",
                {"conversation_id": str(conversation.id), "client_id": f"m{i}", "body": f"m{i}"},
            )
        reader = await connect(s1, provider)
        # More arrive while the app catches up: they come as events, the gap comes from sync.
        for i in range(35, 40):
            await sender.ws.send(send_frame(conversation, f"x{i}", f"m{i}"))
        cursor = max(store)
        pages = []
        while True:
            reply = await reader.request("sync", {"cursors": {str(conversation.id): cursor}, "limit": 10})
            [entry] = reply["conversations"]
            seqs = [m["seq"] for m in entry["messages"]]
            assert seqs == list(range(cursor + 1, cursor + 1 + len(seqs)))  # contiguous, no repeats
            pages.append(seqs)
            for message in entry["messages"]:
                keep(message)
            if not entry["has_more"]:
                break
            cursor = seqs[-1]
        for _ in range(5):
            while (await sender.recv_frame(10)).get("ref", "")[:1] != "x":
                pass
        for event in [e for e in reader.events if e["type"] == "message.created"]:
            keep(event["data"]["message"])
        while len(store) < 40:
            keep((await reader.event("message.created"))["message"])
        assert len(pages) >= 3
    finally:
        await sender.ws.close()
        await reader.ws.close()
    stored = await sync_to_async(
        lambda: dict(Message.objects.filter(conversation=conversation).values_list("seq", "id"))
    )()
    assert sorted(store) == list(range(1, 41))
    assert store == {seq: str(message_id) for seq, message_id in stored.items()}


async def test_presence_across_processes_and_after_a_process_dies(
    servers: tuple[ServerProcess, ServerProcess], django_db_blocker: Any
) -> None:
    s1, s2 = servers
    customer, provider, _ = await chat()
    watcher = await connect(s1, provider)
    try:
        d1 = await connect(s1, customer)
        event = await watcher.event("presence", timeout=10)
        assert (event["user_id"], event["status"]) == (str(customer.id), "online")
        d2 = await connect(s2, customer)
        await watcher.no_event("presence", within=0.5)
        await d1.ws.close()
        await watcher.no_event("presence", within=0.5)
        reply = await watcher.request("presence.query", {"user_ids": [str(customer.id)]})
        assert reply["presence"][str(customer.id)]["status"] == "online"
        await d2.ws.close()
        event = await watcher.event("presence", timeout=10)
        assert (event["user_id"], event["status"]) == (str(customer.id), "offline")

        # A process dies with the customer's only connection: another process announces it.
        doomed = ServerProcess("web", chat_env())
        try:
            await asyncio.get_running_loop().run_in_executor(None, doomed.wait_ready)
            d3 = await connect(doomed, customer)
            assert (await watcher.event("presence", timeout=10))["status"] == "online"
            os.killpg(doomed.proc.pid, signal.SIGKILL)
            event = await watcher.event("presence", timeout=PRESENCE_TTL_S * 4)
            assert (event["user_id"], event["status"]) == (str(customer.id), "offline")
            reply = await watcher.request("presence.query", {"user_ids": [str(customer.id)]})
            assert reply["presence"][str(customer.id)]["status"] == "offline"
            d3.ws.transport.abort()
        finally:
            doomed.stop()
    finally:
        await watcher.ws.close()
