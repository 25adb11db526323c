"""Identity (PROTOCOL §1): JWTs from the main app, single-use WebSocket tickets."""

from __future__ import annotations

import base64
import functools
import hashlib
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt
from django.conf import settings
from django.utils import timezone
from jwt import PyJWK

from hub.errors import Unauthorized
from hub.models import User, WsTicket

ASYMMETRIC_ALGORITHMS = ["RS256", "ES256"]


def _verification() -> tuple[str | PyJWK, list[str]]:
    if settings.HUB_JWT_PUBLIC_KEY:
        return settings.HUB_JWT_PUBLIC_KEY, ASYMMETRIC_ALGORITHMS
    return _hs256_key(settings.HUB_JWT_SECRET), ["HS256"]


@functools.lru_cache(maxsize=4)
def _hs256_key(secret: str) -> PyJWK:
    """The shared secret as a prepared key: PyJWT otherwise re-checks a plain string key on every
    decode (is it PEM? SSH?), a twentieth of the web process's CPU in a connect storm."""
    k = base64.urlsafe_b64encode(secret.encode()).rstrip(b"=").decode()
    return PyJWK({"kty": "oct", "k": k}, algorithm="HS256")


def user_from_jwt(token: str) -> User:
    """The active user named by a valid token's `sub`; anything else is `Unauthorized`."""
    return active_user(jwt_subject(token))


def jwt_subject(token: str) -> uuid.UUID:
    """The user id (`sub`) of a token whose signature and expiry check out; no database involved."""
    key, algorithms = _verification()
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=algorithms,
            options={"require": ["sub", "exp"]},
            leeway=settings.HUB_JWT_LEEWAY_S,
        )
        user_id = uuid.UUID(str(claims["sub"]))
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized("Token expired.") from exc
    except (jwt.InvalidTokenError, ValueError) as exc:
        raise Unauthorized("Invalid token.") from exc
    return user_id


def active_user(user_id: uuid.UUID) -> User:
    user = User.objects.filter(id=user_id, is_active=True).first()
    if user is None:
        raise Unauthorized("Unknown or inactive user.")
    return user


def active_users(user_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, User]:
    """The active users among these ids, by id, in one query (handshakes in a burst share it)."""
    return {user.id: user for user in User.objects.filter(id__in=set(user_ids), is_active=True)}


def jwt_mint(*, user: User, ttl_s: int = 3600) -> str:
    """A token as the main app would issue it (HS256 with the shared secret); for dev, demo and tests."""
    now = timezone.now()
    claims = {
        "sub": str(user.id),
        "role": user.role,
        "permissions": [],
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(seconds=ttl_s)).timestamp()),
    }
    return jwt.encode(claims, settings.HUB_JWT_SECRET, algorithm="HS256")


@dataclass(frozen=True)
class IssuedTicket:
    ticket: str
    expires_at: datetime


def _digest(ticket: str) -> str:
    return hashlib.sha256(ticket.encode()).hexdigest()


def ws_ticket_issue(*, user: User) -> IssuedTicket:
    """A fresh single-use ticket for a browser WebSocket; expired ones are swept on the way."""
    now = timezone.now()
    WsTicket.objects.filter(expires_at__lte=now).delete()
    ticket = secrets.token_urlsafe(32)
    expires_at = now + timedelta(seconds=settings.HUB_WS_TICKET_TTL_S)
    WsTicket.objects.create(digest=_digest(ticket), user=user, expires_at=expires_at)
    return IssuedTicket(ticket=ticket, expires_at=expires_at)


def ws_ticket_redeem(*, ticket: str) -> User:
    """The ticket's user, consuming the ticket: the DELETE makes a second use (or a race) fail."""
    row = WsTicket.objects.filter(digest=_digest(ticket)).select_related("user").first()
    if row is None:
        raise Unauthorized("Unknown or used ticket.")
    deleted, _ = WsTicket.objects.filter(digest=row.digest).delete()
    if not deleted:
        raise Unauthorized("Unknown or used ticket.")
    if row.expires_at <= timezone.now():
        raise Unauthorized("Ticket expired.")
    if not row.user.is_active:
        raise Unauthorized("Unknown or inactive user.")
    return row.user
