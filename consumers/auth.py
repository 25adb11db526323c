"""WebSocket handshake checks: the browser origin, then who the client is (PROTOCOL §1).

The outcome is left in the scope; the consumer accepts and then closes with 4403 / 4401, so the
client sees the protocol's close code rather than a bare HTTP 403."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from channels.auth import get_user
from channels.db import database_sync_to_async
from channels.sessions import CookieMiddleware, SessionMiddleware
from django.conf import settings

from hub.errors import Unauthorized
from hub.models import User
from hub.services.identity import user_from_jwt, ws_ticket_redeem

CLOSE_UNAUTHORIZED = 4401
CLOSE_ORIGIN = 4403


def origin_allowed(origin: str | None, allowed: list[str]) -> bool:
    """No Origin (native apps, services) is allowed; a browser's must match an allowed entry."""
    if not origin:
        return True
    parts = urlsplit(origin)
    host = (parts.hostname or "").lower()
    for entry in allowed:
        entry = entry.strip().lower().rstrip("/")
        if entry == "*":
            return True
        if "://" in entry:
            if origin.lower().rstrip("/") == entry:
                return True
        elif entry.startswith("."):
            if host == entry[1:] or host.endswith(entry):
                return True
        elif host == entry:
            return True
    return False


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


@database_sync_to_async
def _user_from_token(token: str) -> User:
    return user_from_jwt(token)


@database_sync_to_async
def _user_from_ticket(ticket: str) -> User:
    return ws_ticket_redeem(ticket=ticket)


async def authenticate(scope: dict[str, Any]) -> User:
    """Bearer header, then `?ticket=`, then the session cookie; `Unauthorized` if none holds."""
    authorization = _header(scope, b"authorization")
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("Malformed Authorization header.")
        return await _user_from_token(token.strip())
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    if "ticket" in query:
        return await _user_from_ticket(query["ticket"][0])
    if scope.get("session") is not None:
        user = await get_user(scope)
        if user.is_authenticated and user.is_active:
            return user  # type: ignore[return-value]
    raise Unauthorized("No credentials.")


class HandshakeMiddleware:
    """Sets scope["hub_close"] (4403/4401) or scope["user"] for the consumer."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        scope = dict(scope)
        if not origin_allowed(_header(scope, b"origin"), settings.HUB_ALLOWED_ORIGINS):
            scope["hub_close"] = (CLOSE_ORIGIN, "origin not allowed")
        else:
            try:
                scope["user"] = await authenticate(scope)
            except Unauthorized as exc:
                scope["hub_close"] = (CLOSE_UNAUTHORIZED, exc.message)
        return await self.inner(scope, receive, send)


def handshake_stack(inner: Any) -> Any:
    return CookieMiddleware(SessionMiddleware(HandshakeMiddleware(inner)))
