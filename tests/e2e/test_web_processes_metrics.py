"""Defect 13: /metrics answers for the whole `web`, whichever daphne process a scrape reaches (ADR 0051)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets
from channels.db import database_sync_to_async as sync_to_async

from tests import conftest
from tests.conftest import ServerProcess, token_for, wait_for_other_sessions_to_leave
from tests.e2e.test_web_processes import _group, _sockets
from tests.factories import CustomerFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


@pytest.fixture
def two_web_processes(django_db_blocker: object) -> Iterator[ServerProcess]:
    with conftest.running_web(django_db_blocker, PROMETHEUS_MULTIPROC_DIR=None, WEB_CONCURRENCY="2") as server:
        yield server


def _open_connections(text: str) -> float:
    match = re.search(r"^hub_ws_connections_open (\S+)$", text, re.MULTILINE)
    assert match, text[:2000]
    return float(match.group(1))


def _accepted(text: str) -> float:
    match = re.search(r"^hub_ws_connections_total (\S+)$", text, re.MULTILINE)
    assert match, text[:2000]
    return float(match.group(1))


async def test_every_scrape_shows_the_connections_of_both_processes(two_web_processes: ServerProcess) -> None:
    server = two_web_processes
    daphnes = _group(server.proc.pid)
    assert len(daphnes) == 2
    before = {pid: _sockets(pid) for pid in daphnes}
    users = await sync_to_async(lambda: [CustomerFactory() for _ in range(24)])()
    connections = []
    try:
        for user in users:
            headers = {"Authorization": f"Bearer {token_for(user)}"}
            ws = await websockets.connect(server.ws_url, additional_headers=headers)
            connections.append(ws)
            assert "hello" in await ws.recv()
        assert all(_sockets(pid) > before[pid] for pid in daphnes), "both processes hold connections"
        scraped = []
        for _ in range(12):  # a new TCP connection each time: the kernel spreads them over both
            async with httpx.AsyncClient(base_url=server.url) as http:
                scraped.append((await http.get("/metrics")).text)
        assert [_open_connections(t) for t in scraped] == [24.0] * 12
        assert [_accepted(t) for t in scraped] == [24.0] * 12
        await asyncio.gather(*(ws.close() for ws in connections[:10]))
        connections = connections[10:]
        for _ in range(50):
            async with httpx.AsyncClient(base_url=server.url) as http:
                if _open_connections((await http.get("/metrics")).text) == 14.0:
                    break
            await asyncio.sleep(0.1)
        for _ in range(6):
            async with httpx.AsyncClient(base_url=server.url) as http:
                assert _open_connections((await http.get("/metrics")).text) == 14.0
    finally:
        await asyncio.gather(*(ws.close() for ws in connections))


def test_the_supervisor_removes_its_metrics_directory(django_db_blocker: object, tmp_path: Path) -> None:
    with django_db_blocker.unblock():  # type: ignore[attr-defined]
        env = conftest.test_database_env()
    server = ServerProcess("web", {**env, "WEB_CONCURRENCY": "2", "TMPDIR": str(tmp_path)})
    try:
        server.wait_ready()
        (made,) = list(tmp_path.glob("hub-metrics-*"))
        assert made.is_dir()
    finally:
        server.stop()
        with django_db_blocker.unblock():  # type: ignore[attr-defined]
            wait_for_other_sessions_to_leave()
    assert list(tmp_path.glob("hub-metrics-*")) == []
