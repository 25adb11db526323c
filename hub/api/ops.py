"""Operations endpoints: liveness, readiness (database, Redis, broker) and Prometheus metrics."""

from __future__ import annotations

import os
import time
from typing import Any

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from kombu import Connection as BrokerConnection
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from hub.redis_clients import sync_redis


def healthz(request: HttpRequest) -> JsonResponse:
    """The process is up and serving."""
    return JsonResponse({"status": "ok"})


def _check(name: str, probe: Any, results: dict[str, Any]) -> bool:
    started = time.monotonic()
    try:
        probe()
    except Exception as exc:
        results[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
        return False
    results[name] = {"ok": True, "ms": round((time.monotonic() - started) * 1000, 1)}
    return True


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _redis() -> None:
    sync_redis().ping()


def _broker() -> None:
    with BrokerConnection(settings.CELERY_BROKER_URL, connect_timeout=2) as conn:
        conn.ensure_connection(max_retries=1, timeout=2)


def readyz(request: HttpRequest) -> JsonResponse:
    """Ready when the database, Redis and the Celery broker all answer; 503 otherwise."""
    checks: dict[str, Any] = {}
    ok = all(
        [
            _check("database", _database, checks),
            _check("redis", _redis, checks),
            _check("broker", _broker, checks),
        ]
    )
    return JsonResponse(
        {"status": "ok" if ok else "unavailable", "checks": checks}, status=200 if ok else 503
    )


def metrics_view(request: HttpRequest) -> HttpResponse:
    """This `web`'s metrics: summed over every daphne process when they share PROMETHEUS_MULTIPROC_DIR
    (config/web.py sets it), else this process's own."""
    return HttpResponse(generate_latest(_registry()), content_type=CONTENT_TYPE_LATEST)


def _registry() -> CollectorRegistry:
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    return registry
