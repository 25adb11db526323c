"""Defect 7: the Redis of a real daphne `web` restarts under connected clients (ADR 0050).

A dedicated redis-server (its own port, no persistence) is stopped for 3 s and started again.
Nothing is closed 1011 (nor at all); every connection that may have missed events, old ones and one
made while Redis was away, gets `resync`; afterwards live events reach old and new connections."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import websockets
from channels.db import database_sync_to_async as sync_to_async

from tests import conftest
from tests.conftest import ServerProcess, free_port, token_for
from tests.factories import CustomerFactory
from tests.published import emit_raw
from tests.wsclient import SocketClient

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


class RedisServer:
    """A redis-server of this test only, on a free port; stopped and started again at will."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.directory = directory
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is needed (make test installs it)"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if redis.Redis.from_url(self.url, socket_connect_timeout=0.2).ping():
                    return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise TimeoutError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def web_on_own_redis(own_redis: RedisServer, django_db_blocker: Any, settings: Any) -> Iterator[ServerProcess]:
    settings.REDIS_URL = own_redis.url  # this test process publishes to the same Redis
    with conftest.running_web(django_db_blocker, REDIS_URL=own_redis.url, WEB_CONCURRENCY="1") as server:
        yield server


async def _connect(server: ServerProcess, user: Any) -> tuple[Any, SocketClient]:
    ws = await websockets.connect(server.ws_url, additional_headers={"Authorization": f"Bearer {token_for(user)}"})
    client = SocketClient(ws)
    hello = await client.recv_frame(10)
    assert hello["type"] == "hello", hello
    return ws, client


async def _live(clients: list[tuple[Any, SocketClient]], users: list[Any], tag: str) -> None:
    """One event per user, published now, reaches each of that user's connections."""
    for n, user in enumerate(users):
        assert await emit_raw("test.live", {"tag": tag, "n": n}, to=[user.id])
    for (_, client), n in zip(clients, range(len(users)), strict=True):
        assert await client.event("test.live", timeout=10, tag=tag) == {"tag": tag, "n": n}


async def test_a_redis_restart_closes_nothing_and_every_connection_resyncs(
    web_on_own_redis: ServerProcess, own_redis: RedisServer
) -> None:
    server = web_on_own_redis
    users = await sync_to_async(lambda: [CustomerFactory() for _ in range(3)])()
    old = [await _connect(server, user) for user in users[:2]]
    await _live(old, users[:2], "before")

    own_redis.stop()
    down_at = time.monotonic()
    # Publishing while Redis is away fails cleanly: False, nothing raised.
    assert await emit_raw("test.lost", {}, to=[users[0].id]) is False
    # A handshake while Redis is away is accepted at once (hello), not held, not closed.
    during = await _connect(server, users[2])
    assert time.monotonic() - down_at < 3
    for _, client in [*old, during]:
        assert "pong" in await client.request("ping")
    await asyncio.sleep(max(0.0, 3 - (time.monotonic() - down_at)))
    own_redis.start()

    everyone = [*old, during]
    for ws, client in everyone:
        await client.event("resync", timeout=15)
        await client.no_event("resync", within=0.2)  # once
        assert ws.close_code is None
    await _live(everyone, users, "after")
    late = await _connect(server, users[0])  # a connection made after the restart
    await _live([late], users[:1], "late")
    await late[1].no_event("resync", within=0.3)  # it missed nothing
    for ws, client in [*everyone, late]:
        assert "pong" in await client.request("ping")
        assert ws.close_code is None
        await ws.close()
    assert "Exception inside application" not in server.log_path.read_text()  # no consumer crashed (1011)
