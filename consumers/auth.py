"""WebSocket handshake checks: the browser origin, then who the client is (PROTOCOL §1).

The outcome is left in the scope; the consumer accepts and then closes with 4403 / 4401, so the
client sees the protocol's close code rather than a bare HTTP 403."""

from __future__ import annotations

import asyncio
import copy
import uuid
import weakref
from typing import Any
from urllib.parse import parse_qs, urlsplit

from channels.auth import get_user
from channels.db import database_sync_to_async
from channels.sessions import CookieMiddleware, SessionMiddleware
from django.conf import settings

from hub.errors import Unauthorized
from hub.models import User
from hub.services.identity import active_users, jwt_verify, ws_ticket_redeem

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


class UserLoader:
    """Coalesces the user look-ups of concurrent handshakes into one query (ADR 0030).

    Every database call from async code is a round trip through channels' single sync thread;
    during a reconnect storm, one per handshake queued them by the thousand behind each other.
    Look-ups that arrive while a batch is in the database wait for the next batch, so a lone
    connect still costs one query and a storm costs one query per batch."""

    def __init__(self) -> None:
        self._waiting: dict[uuid.UUID, list[asyncio.Future[User]]] = {}
        self._draining = False

    async def load(self, user_id: uuid.UUID) -> User:
        """The active user with this id; `Unauthorized` when there is none."""
        future: asyncio.Future[User] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(user_id, []).append(future)
        if not self._draining:
            self._draining = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, {}
                try:
                    users = await database_sync_to_async(active_users)(list(batch))
                except Exception as exc:  # the database failed: every waiter of this batch learns it
                    for futures in batch.values():
                        for future in futures:
                            if not future.done():
                                future.set_exception(exc)
                    continue
                for user_id, futures in batch.items():
                    user = users.get(user_id)
                    for n, future in enumerate(futures):
                        if future.done():
                            continue  # its handshake was cancelled meanwhile
                        if user is None:
                            future.set_exception(Unauthorized("Unknown or inactive user."))
                        else:  # each connection gets its own instance, as a query of its own would
                            future.set_result(user if n == 0 else copy.copy(user))
        finally:
            self._draining = False


_loaders: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, UserLoader] = weakref.WeakKeyDictionary()


def user_loader() -> UserLoader:
    """This event loop's loader (daphne has one loop; tests make one per test)."""
    loop = asyncio.get_running_loop()
    if (loader := _loaders.get(loop)) is None:
        loader = _loaders[loop] = UserLoader()
    return loader


async def _user_from_token(token: str) -> User:
    # The signature check is CPU only and stays on the loop; the user row comes in a batch.
    return await user_loader().load(jwt_verify(token).user_id)


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
