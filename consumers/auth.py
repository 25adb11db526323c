"""WebSocket handshake checks: the browser origin, then who the client is (PROTOCOL §1).

The outcome is left in the scope; the consumer accepts and then closes with 4403 / 4401, so the
client sees the protocol's close code rather than a bare HTTP 403."""

from __future__ import annotations

import copy
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

from channels.auth import get_user
from channels.db import database_sync_to_async
from channels.sessions import CookieMiddleware, SessionMiddleware
from django.conf import settings

from hub.coalesce import loop_coalescer
from hub.errors import Unauthorized
from hub.models import User
from hub.services.identity import Credential, active_users, jwt_verify, ws_ticket_redeem

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


async def _active_users_batch(user_ids: list[uuid.UUID]) -> list[User | None]:
    """One query for the user look-ups of every handshake that arrived while the last batch ran (ADR 0030)."""
    users = await database_sync_to_async(active_users)(user_ids)
    seen: set[uuid.UUID] = set()
    out: list[User | None] = []
    for user_id in user_ids:
        user = users.get(user_id)
        if user is not None and user_id in seen:  # each connection its own instance, as its own query gave
            user = copy.copy(user)
        seen.add(user_id)
        out.append(user)
    return out


async def user_load(user_id: uuid.UUID) -> User:
    """The active user with this id, looked up in a batch with concurrent handshakes; `Unauthorized` if none.

    Every database call from async code is a round trip through channels' single sync thread; during a
    reconnect storm, one per handshake queued them by the thousand behind each other. A lone connect
    still costs one query, a storm one query per batch."""
    user = await loop_coalescer("auth.users", _active_users_batch)(user_id)
    if user is None:
        raise Unauthorized("Unknown or inactive user.")
    return user


async def _credential_from_token(token: str) -> Credential:
    # The signature check is CPU only and stays on the loop; the user row comes in a batch.
    subject = jwt_verify(token)
    return Credential(user=await user_load(subject.user_id), valid_until=subject.valid_until)


@database_sync_to_async
def _credential_from_ticket(ticket: str) -> Credential:
    return ws_ticket_redeem(ticket=ticket)


@database_sync_to_async
def _session_lapses(scope: dict[str, Any]) -> float:
    return float(scope["session"].get_expiry_date().timestamp())


async def authenticate(scope: dict[str, Any]) -> Credential:
    """Bearer header, then `?ticket=`, then the session cookie; `Unauthorized` if none holds."""
    authorization = _header(scope, b"authorization")
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("Malformed Authorization header.")
        return await _credential_from_token(token.strip())
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    if "ticket" in query:
        return await _credential_from_ticket(query["ticket"][0])
    if scope.get("session") is not None:
        user = await get_user(scope)
        if user.is_authenticated and user.is_active:
            return Credential(user=user, valid_until=await _session_lapses(scope))  # type: ignore[arg-type]
    raise Unauthorized("No credentials.")


class HandshakeMiddleware:
    """Sets scope["hub_close"] (4403/4401), or scope["user"] and scope["hub_valid_until"] for the consumer."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        scope = dict(scope)
        if not origin_allowed(_header(scope, b"origin"), settings.HUB_ALLOWED_ORIGINS):
            scope["hub_close"] = (CLOSE_ORIGIN, "origin not allowed")
        else:
            try:
                credential = await authenticate(scope)
                scope["user"], scope["hub_valid_until"] = credential.user, credential.valid_until
            except Unauthorized as exc:
                scope["hub_close"] = (CLOSE_UNAUTHORIZED, exc.message)
        return await self.inner(scope, receive, send)


def _has_ticket(scope: dict[str, Any]) -> bool:
    return "ticket" in parse_qs(scope.get("query_string", b"").decode("latin-1"))


def handshake_stack(inner: Any) -> Any:
    """The handshake checks, behind channels' cookie and session middleware only when the session can
    matter: a connection with a bearer header or a ticket never reads it (`authenticate`), and the
    wrappers cost every connection ~2 KiB and a check of every frame it sends (ADR 0035)."""
    bare = HandshakeMiddleware(inner)
    with_session = CookieMiddleware(SessionMiddleware(bare))

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if _header(scope, b"authorization") or _has_ticket(scope):
            return await bare(scope, receive, send)
        return await with_session(scope, receive, send)

    return app
