"""Domain errors: one small hierarchy, mapped once to WebSocket error frames and once to HTTP bodies."""

from __future__ import annotations

from typing import Any


class HubError(Exception):
    """Base of every error a client may see; `code` is the protocol's error code."""

    code = "internal"
    http_status = 500
    default_message = "Internal error."

    def __init__(self, message: str | None = None, **details: Any) -> None:
        self.message = message or self.default_message
        self.details = details
        super().__init__(self.message)

    def as_data(self) -> dict[str, Any]:
        """The `data` of an error frame / the body of an HTTP error."""
        data: dict[str, Any] = {"code": self.code, "message": self.message}
        data.update(self.details)
        return data


class BadRequest(HubError):
    code, http_status, default_message = "bad_request", 400, "Bad request."


class Unauthorized(HubError):
    code, http_status, default_message = "unauthorized", 401, "Authentication required."


class PermissionDenied(HubError):
    code, http_status, default_message = "forbidden", 403, "Not allowed."


class NotFound(HubError):
    code, http_status, default_message = "not_found", 404, "Not found."


class Conflict(HubError):
    code, http_status, default_message = "conflict", 409, "Conflict."


class Busy(HubError):
    code, http_status, default_message = "busy", 409, "Busy."


class TooLarge(HubError):
    code, http_status, default_message = "too_large", 413, "Too large."


class RateLimited(HubError):
    code, http_status, default_message = "rate_limited", 429, "Slow down."

    def __init__(self, message: str | None = None, *, retry_after_s: float, **details: Any) -> None:
        super().__init__(message, retry_after_s=round(retry_after_s, 3), **details)
        self.retry_after_s = retry_after_s
