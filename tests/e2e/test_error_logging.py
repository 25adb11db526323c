"""Each 4xx/5xx is logged once (the server's access line), not also by django.request; a server error's
traceback once (ADR 0043)."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import httpx
import pytest
from django.test import Client

from tests.conftest import ServerProcess, auth_headers
from tests.factories import CustomerFactory


def lines_with(server: ServerProcess, marker: str) -> list[str]:
    deadline = time.monotonic() + 5
    while True:
        found = [line for line in server.log_path.read_text(errors="replace").splitlines() if marker in line]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_each_client_error_is_one_line_in_the_web_log(web_server: ServerProcess) -> None:
    marker = uuid.uuid4().hex
    for path in [f"/api/{marker}-a", f"/{marker}-b", f"/api/conversations/{marker}/messages"]:
        assert httpx.get(f"{web_server.url}{path}").status_code == 404
    assert httpx.post(f"{web_server.url}/api/ws-tickets?m={marker}-c").status_code == 401
    time.sleep(0.5)  # let every line reach the log
    for suffix in ["-a", "-b", "/messages", "-c"]:
        found = lines_with(web_server, marker + suffix)
        assert len(found) == 1, found


@pytest.mark.django_db
def test_a_server_error_is_logged_once_with_its_traceback(
    client: Client, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(**kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr("hub.api.tickets.ws_ticket_issue", broken)
    with caplog.at_level(logging.INFO):
        assert client.post("/api/ws-tickets", **auth_headers(CustomerFactory())).status_code == 500
        assert client.get("/api/no-such-thing").status_code == 404
    mine = [r for r in caplog.records if "/api/ws-tickets" in r.getMessage() or "no-such-thing" in r.getMessage()]
    assert [(r.name, r.levelname, r.exc_info is not None) for r in mine] == [("hub.api.errors", "ERROR", True)]
