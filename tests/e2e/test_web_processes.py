"""The Procfile's `web` as several daphne processes on one port (config/web.py, ADR 0037)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import websockets
from channels.db import database_sync_to_async as sync_to_async

from tests import conftest
from tests.conftest import ServerProcess, token_for
from tests.factories import CustomerFactory, booking_with_conversation
from tests.wsclient import SocketClient

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


def _group(leader: int) -> list[int]:
    """The processes of `leader`'s process group, the leader (the supervisor) excluded."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == leader and int(entry.name) != leader:
                members.append(int(entry.name))
    return members


def _sockets(pid: int) -> int:
    return sum(1 for fd in Path(f"/proc/{pid}/fd").iterdir() if os.readlink(fd).startswith("socket:"))


@pytest.fixture
def three_web_processes(django_db_blocker: object) -> Iterator[ServerProcess]:
    with conftest.running_web(django_db_blocker, WEB_CONCURRENCY="3") as server:
        yield server


async def test_connections_spread_over_every_process_and_talk_across_them(three_web_processes: ServerProcess) -> None:
    server = three_web_processes
    daphnes = _group(server.proc.pid)
    assert len(daphnes) == 3
    before = {pid: _sockets(pid) for pid in daphnes}
    booking, conversation = await sync_to_async(booking_with_conversation)()
    others = await sync_to_async(lambda: [CustomerFactory() for _ in range(30)])()
    connections = [
        await websockets.connect(server.ws_url, additional_headers={"Authorization": f"Bearer {token_for(u)}"})
        for u in others
    ]
    try:
        for ws in connections:
            assert "hello" in await ws.recv()
        grown = [pid for pid in daphnes if _sockets(pid) > before[pid]]
        assert len(grown) >= 2  # SO_REUSEPORT spreads 30 connects; one shared socket let one process take all
        # A conversation's two members, each on whichever process the kernel chose, reach each other.
        headers = [{"Authorization": f"Bearer {token_for(u)}"} for u in (booking.customer, booking.provider.user)]
        async with (
            websockets.connect(server.ws_url, additional_headers=headers[0]) as a,
            websockets.connect(server.ws_url, additional_headers=headers[1]) as b,
        ):
            alice, bob = SocketClient(a), SocketClient(b)
            await alice.recv_frame()
            await bob.recv_frame()
            sent = await alice.request(
                "message.send", {"conversation_id": str(conversation.id), "client_id": "x1", "body": "hi"}
            )
            event = await bob.event("message.created")
            assert event["message"]["id"] == sent["message"]["id"]
    finally:
        await asyncio.gather(*(ws.close() for ws in connections))


def test_a_dying_daphne_takes_the_others_down_for_a_restart(three_web_processes: ServerProcess) -> None:
    server = three_web_processes
    daphnes = _group(server.proc.pid)
    os.kill(daphnes[0], signal.SIGKILL)
    assert server.proc.wait(20) != 0  # the supervisor exits non-zero: the process manager restarts `web`
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in daphnes[1:]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(Path(f"/proc/{pid}/stat").exists() and "Z" not in _state(pid) for pid in daphnes[1:])


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"
