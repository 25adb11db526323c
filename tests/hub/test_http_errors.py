"""Every error of every /api/ URL is the JSON error format `{"code", "message", "details"?}` (PROTOCOL §3):
deeply nested bodies, ids that are not UUIDs, unknown paths, wrong methods, server errors."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

import pytest
from django.test import Client, RequestFactory

from tests.conftest import auth_headers
from tests.factories import CustomerFactory, booking_with_conversation

pytestmark = pytest.mark.django_db


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert body["code"] == code and isinstance(body["message"], str) and body["message"], body
    assert set(body) <= {"code", "message", "details"}, body
    return dict(body)


def nested(depth: int, kind: str) -> str:
    return ("[" * depth + "]" * depth) if kind == "list" else ('{"a":' * depth + "1" + "}" * depth)


@pytest.fixture
def party() -> tuple[Any, dict[str, str], Any, Any]:
    booking, conversation = booking_with_conversation()
    return booking.customer, auth_headers(booking.customer), booking, conversation


@pytest.mark.parametrize("depth", [33, 1_000, 1_024, 5_000, 200_000])
@pytest.mark.parametrize("kind", ["list", "object"])
def test_deeply_nested_json_is_400_in_every_body(client: Client, party: Any, depth: int, kind: str) -> None:
    _, headers, booking, conversation = party
    body = nested(depth, kind)
    wrapped = '{"body": ' + body + ', "client_id": "x"}'
    for path, payload in [
        ("/api/conversations", body),
        ("/api/conversations", '{"participant_id": ' + body + "}"),
        (f"/api/conversations/{conversation.id}/messages", wrapped),
        (f"/api/conversations/{conversation.id}/read", '{"seq": ' + body + "}"),
        (f"/api/bookings/{booking.id}/status", '{"status": ' + body + "}"),
        ("/api/blocks", body),
        ("/api/blocks", '{"user_id": ' + body + "}"),
    ]:
        response = client.post(path, payload, content_type="application/json", **headers)
        assert_error(response, 400, "bad_request")


def test_nesting_up_to_the_limit_is_parsed(client: Client, party: Any) -> None:
    _, headers, _, conversation = party
    payload = '{"seq": ' + nested(31, "list") + "}"
    path = f"/api/conversations/{conversation.id}/read"
    body = assert_error(client.post(path, payload, content_type="application/json", **headers), 400, "bad_request")
    assert body["message"] == "Invalid request." and "seq" in body["details"]  # the field's own error


def test_malformed_json_is_400(client: Client, party: Any) -> None:
    _, headers, _, conversation = party
    for payload in ["{", '{"a": NaN}', '{"a": 1e400}', '{"body": "\\ud800"}', "\x00"]:
        response = client.post(
            f"/api/conversations/{conversation.id}/messages", payload, content_type="application/json", **headers
        )
        assert_error(response, 400, "bad_request")


@pytest.mark.parametrize(
    "method, path",
    [
        ("get", "/api/bookings/not-a-uuid"),
        ("post", "/api/bookings/not-a-uuid/status"),
        ("get", "/api/conversations/xyz"),
        ("get", "/api/conversations/xyz/messages"),
        ("post", "/api/conversations/xyz/messages"),
        ("post", "/api/conversations/xyz/read"),
        ("post", "/api/conversations/xyz/delivered"),
        ("delete", "/api/messages/xyz"),
        ("get", "/api/attachments/xyz"),
        ("delete", "/api/blocks/xyz"),
        ("get", "/api/conversations/12345678-1234-1234-1234-1234567890123"),
        ("get", "/api/no-such-thing"),
        ("get", "/api/"),
        ("get", "/api"),
        ("get", "/api/conversations/"),
    ],
)
def test_ids_that_are_not_uuids_and_unknown_paths_are_the_json_404(
    client: Client, party: Any, method: str, path: str
) -> None:
    _, headers, _, _ = party
    assert_error(getattr(client, method)(path, **headers), 404, "not_found")


def test_unknown_ids_are_the_json_404(client: Client, party: Any) -> None:
    _, headers, _, _ = party
    assert_error(client.get(f"/api/bookings/{uuid.uuid4()}", **headers), 404, "not_found")
    assert_error(client.get(f"/api/conversations/{uuid.uuid4()}/messages", **headers), 404, "not_found")


def test_unknown_api_paths_are_404_without_credentials_too(client: Client) -> None:
    assert_error(client.get("/api/no-such-thing"), 404, "not_found")


def test_wrong_method_is_the_json_405(client: Client, party: Any) -> None:
    _, headers, booking, _ = party
    assert_error(client.get("/api/ws-tickets", **headers), 405, "bad_request")
    assert_error(client.delete(f"/api/bookings/{booking.id}", **headers), 405, "bad_request")


def test_a_server_error_in_an_api_view_is_the_json_500(
    client: Client, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(**kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr("hub.api.tickets.ws_ticket_issue", broken)
    user = CustomerFactory()
    with caplog.at_level(logging.ERROR):
        response = client.post("/api/ws-tickets", **auth_headers(user))
    assert_error(response, 500, "internal")
    assert response.json() == {"code": "internal", "message": "Internal error."}
    tracebacks = [r for r in caplog.records if r.exc_info and "a bug" in str(r.exc_info[1])]
    assert len(tracebacks) == 1  # logged once, with its traceback


def test_the_500_handler_answers_json_under_api_and_html_elsewhere() -> None:
    from django.urls import get_resolver

    handler = get_resolver().resolve_error_handler(500)
    api = handler(RequestFactory().get("/api/anything"))
    assert api.status_code == 500 and json.loads(api.content) == {"code": "internal", "message": "Internal error."}
    other = handler(RequestFactory().get("/admin/"))
    assert other.status_code == 500 and not other["Content-Type"].startswith("application/json")
