"""Health, readiness, metrics and API documentation endpoints."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.conftest import free_port

pytestmark = pytest.mark.django_db


def test_healthz(client: Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_readyz_checks_database_redis_and_broker(client: Client) -> None:
    body = client.get("/readyz").json()
    assert body["status"] == "ok"
    assert {name for name, check in body["checks"].items() if check["ok"]} == {"database", "redis", "broker"}


def test_readyz_fails_when_broker_is_down(client: Client, settings) -> None:  # type: ignore[no-untyped-def]
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{free_port()}/0"
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable" and body["checks"]["broker"]["ok"] is False
    assert body["checks"]["database"]["ok"] is True


def test_metrics_prometheus_text(client: Client) -> None:
    client.post("/api/ws-tickets")  # an unauthorized error is counted
    response = client.get("/metrics")
    assert response.status_code == 200
    text = response.content.decode()
    for name in ("hub_ws_connections_open", "hub_ws_frames_in_total", "hub_ws_frames_out_total", "hub_errors_total"):
        assert name in text
    assert 'hub_errors_total{code="unauthorized",transport="http"}' in text


def test_openapi_schema_and_docs(client: Client) -> None:
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert schema.status_code == 200
    doc = schema.json()
    assert doc["openapi"].startswith("3.") and "/api/ws-tickets" in doc["paths"]
    docs = client.get("/api/docs/")
    assert docs.status_code == 200 and b"swagger" in docs.content.lower()
    assert b"cdn" not in docs.content.lower()  # served locally: no internet needed


def test_unknown_api_path_is_json_404(client: Client) -> None:
    response = client.get("/api/nope")
    assert response.status_code == 404
