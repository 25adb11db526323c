"""Identity (PROTOCOL §1): JWTs from the main app, single-use WebSocket tickets."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt
from django.conf import settings
from django.utils import timezone

from hub.errors import Unauthorized
from hub.models import User, WsTicket

ASYMMETRIC_ALGORITHMS = ["RS256", "ES256"]


def _verification() -> tuple[str, list[str]]:
    if settings.HUB_JWT_PUBLIC_KEY:
        return settings.HUB_JWT_PUBLIC_KEY, ASYMMETRIC_ALGORITHMS
    return settings.HUB_JWT_SECRET, ["HS256"]


def user_from_jwt(token: str) -> User:
    """The active user named by a valid token's `sub`; anything else is `Unauthorized`."""
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
    return active_user(user_id)


def active_user(user_id: uuid.UUID) -> User:
    user = User.objects.filter(id=user_id, is_active=True).first()
    if user is None:
        raise Unauthorized("Unknown or inactive user.")
    return user


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
