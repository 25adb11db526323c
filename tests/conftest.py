"""Shared fixtures: real PostgreSQL and Redis (from `make test`), WebSocket clients, a real daphne."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
from channels.testing import WebsocketCommunicator
from django.conf import settings

from bench.servers import procfile_command
from hub.models import User
from hub.services import message_commit
from hub.services.identity import jwt_mint
from tests.wsclient import CommunicatorClient

ROOT = Path(__file__).resolve().parent.parent


def pytest_configure(config: pytest.Config) -> None:
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        raise pytest.UsageError("tests run against PostgreSQL: use `make test` (or set DATABASE_URL/REDIS_URL)")


@pytest.fixture(autouse=True)
def _clean_redis() -> Iterator[None]:
    """Each test starts with an empty Redis (rate limits, presence, tickets are per test)."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.flushdb()
    client.close()
    yield
    message_commit.close_connections()  # the group commit's per-loop connection ends with the test's loop


@pytest.fixture(autouse=True)
def _validate_events(settings: Any) -> None:
    """Every published event is round-tripped through JSON and validated at the call (hub.events)."""
    settings.HUB_EVENTS_VALIDATE = True


def token_for(user: User, ttl_s: int = 600) -> str:
    return jwt_mint(user=user, ttl_s=ttl_s)


def auth_headers(user: User) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token_for(user)}"}


@asynccontextmanager
async def ws_connect(
    user: User | None = None,
    *,
    token: str | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
    path: str = "/ws/",
    expect_hello: bool = True,
) -> AsyncIterator[CommunicatorClient]:
    """An in-process connection through the full ASGI stack (origin, auth, consumer)."""
    from config.asgi import application

    all_headers = list(headers or [])
    if user is not None or token is not None:
        all_headers.append((b"authorization", f"Bearer {token or token_for(user)}".encode()))  # type: ignore[arg-type]
    communicator = WebsocketCommunicator(application, path, headers=all_headers)
    connected, _ = await communicator.connect(timeout=10)
    assert connected
    client = CommunicatorClient(communicator)
    try:
        if expect_hello:
            hello = await client.recv_frame(10)
            assert hello["type"] == "hello", hello
            client.hello = hello["data"]
        yield client
    finally:
        await communicator.disconnect()


@pytest.fixture
def ws() -> Callable[..., Any]:
    return ws_connect


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """A Procfile process (e.g. `web`) started for real, with the test database and Redis."""

    def __init__(self, process: str, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/ws/"
        full_env = {**os.environ, **env, "PORT": str(self.port), "BIND_ADDRESS": "127.0.0.1"}
        full_env["PATH"] = f"{ROOT / '.venv' / 'bin'}:{full_env['PATH']}"
        self.log_path = ROOT / ".run" / f"test-{process}-{self.port}.log"
        self.log_path.parent.mkdir(exist_ok=True)
        self.log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            ["bash", "-c", f"exec {procfile_command(process)}"],
            cwd=ROOT, env=full_env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def wait_ready(self, timeout: float = 30) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise TimeoutError(f"server not ready: {self.log_path.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()


def test_database_env() -> dict[str, str]:
    """The environment a subprocess needs to use this test run's database (pytest-django's test_ DB)."""
    from django.db import connection

    db = connection.settings_dict
    url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    return {
        "DATABASE_URL": url,
        "REDIS_URL": settings.REDIS_URL,
        "DJANGO_DEBUG": "0",
        "HUB_JWT_SECRET": settings.HUB_JWT_SECRET,
        "HUB_EVENTS_SECRET": settings.HUB_EVENTS_SECRET,
    }


@contextlib.contextmanager
def running_web(django_db_blocker: Any, **env: str | None) -> Iterator[ServerProcess]:
    """The Procfile's `web` on a real port, sharing the test database, with `env` over the test
    environment (None removes a variable); stopped, and its database sessions gone, on the way out."""
    with django_db_blocker.unblock():
        full = test_database_env()
    for key, value in env.items():
        if value is None:
            full.pop(key, None)
        else:
            full[key] = value
    server = ServerProcess("web", full)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
        with django_db_blocker.unblock():
            wait_for_other_sessions_to_leave()


@pytest.fixture(scope="session")
def web_server(django_db_setup: None, django_db_blocker: Any) -> Iterator[ServerProcess]:
    """The Procfile's `web` process (daphne) on a real port, sharing the test database."""
    with running_web(django_db_blocker) as server:
        yield server


@pytest.fixture(scope="session", autouse=True)
def _end_other_sessions(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """Before the test database is dropped: sessions still open in it (idle connections of worker
    threads that database_sync_to_async keeps, of servers just stopped) are waited for, then ended,
    so the drop does not fail with "being accessed by other users"."""
    yield
    with django_db_blocker.unblock():
        wait_for_other_sessions_to_leave()
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )


def wait_for_other_sessions_to_leave(timeout: float = 5) -> None:
    """A killed server's PostgreSQL sessions end a moment later; the test DB can't be dropped before."""
    from django.db import connection

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            if cursor.fetchone()[0] == 0:
                return
        time.sleep(0.1)
