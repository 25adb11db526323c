"""HTTP error bodies: `{"code", "message", "details"?}` for domain and DRF errors alike (PROTOCOL §3)."""

from __future__ import annotations

import logging
from typing import Any

from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from hub import metrics
from hub.errors import BadRequest, HubError, NotFound, PermissionDenied, RateLimited

log = logging.getLogger(__name__)

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
    """DRF's handler: domain and DRF errors as `{"code", "message", "details"?}`; anything else is a bug,
    logged here once with its traceback and answered as the JSON 500 (in DEBUG too)."""
    if isinstance(exc, HubError):
        return hub_error_response(exc)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    response = drf_exception_handler(exc, context)
    if response is None:
        request = context.get("request")
        log.error("Internal Server Error: %s", getattr(request, "path", "?"), exc_info=exc)
        response = hub_error_response(HubError())
        response._has_been_logged = True  # type: ignore[attr-defined]  # django.request: not again, without it
        return response
    code = _DRF_CODES.get(response.status_code, "internal")
    if isinstance(exc, exceptions.ValidationError):
        body = {"code": code, "message": "Invalid request.", "details": response.data}
    else:
        detail = response.data.get("detail", "") if isinstance(response.data, dict) else response.data
        body = {"code": code, "message": str(detail)}
    metrics.ERRORS.labels(code, "http").inc()
    response.data = body
    return response


def _json_error(exc: HubError) -> JsonResponse:
    metrics.ERRORS.labels(exc.code, "http").inc()
    return JsonResponse({"code": exc.code, "message": exc.message}, status=exc.http_status)


def _is_api(request: HttpRequest) -> bool:
    return request.path == "/api" or request.path.startswith("/api/")


def api_not_found(request: HttpRequest) -> JsonResponse:
    """Any /api/ path no route matched (e.g. an id that is not a UUID)."""
    return _json_error(NotFound())


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _is_api(request):
        return _json_error(NotFound())
    return defaults.page_not_found(request, exception)  # type: ignore[arg-type]


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _is_api(request):
        return _json_error(BadRequest())
    return defaults.bad_request(request, exception)  # type: ignore[arg-type]


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _is_api(request):
        return _json_error(PermissionDenied())
    return defaults.permission_denied(request, exception)  # type: ignore[arg-type]


def server_error(request: HttpRequest) -> HttpResponse:
    if _is_api(request):
        return _json_error(HubError())
    return defaults.server_error(request)
