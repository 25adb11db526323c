"""HTTP error bodies: `{"code", "message", "details"?}` for domain and DRF errors alike (PROTOCOL §3)."""

from __future__ import annotations

from typing import Any

from django.http import Http404
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from hub import metrics
from hub.errors import HubError, RateLimited

_DRF_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "bad_request",
    409: "conflict",
    413: "too_large",
    415: "bad_request",
    429: "rate_limited",
}


def hub_error_response(exc: HubError) -> Response:
    body: dict[str, Any] = {"code": exc.code, "message": exc.message}
    if exc.details:
        body["details"] = exc.details
    headers = {}
    if isinstance(exc, RateLimited):
        body["retry_after_s"] = exc.details["retry_after_s"]
        headers["Retry-After"] = str(max(1, round(exc.retry_after_s)))
    metrics.ERRORS.labels(exc.code, "http").inc()
    return Response(body, status=exc.http_status, headers=headers)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, HubError):
        return hub_error_response(exc)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    code = _DRF_CODES.get(response.status_code, "internal")
    if isinstance(exc, exceptions.ValidationError):
        body = {"code": code, "message": "Invalid request.", "details": response.data}
    else:
        detail = response.data.get("detail", "") if isinstance(response.data, dict) else response.data
        body = {"code": code, "message": str(detail)}
    metrics.ERRORS.labels(code, "http").inc()
    response.data = body
    return response
