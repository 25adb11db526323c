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
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone
from jwt import PyJWK

from hub.errors import Unauthorized
from hub.models import User, WsTicket


@dataclass(frozen=True)
class TokenSubject:
    """Who a verified token names, and when the hub stops accepting it (`exp` plus the leeway, Unix seconds)."""

    user_id: uuid.UUID
    valid_until: float


@dataclass(frozen=True)
class Credential:
    """A user a connection authenticated as, and when that credential lapses (None: it does not)."""

    user: User
    valid_until: float | None


def _verification() -> tuple[Any, list[str]]:
    """The key and the one algorithm a token may name: HS256 with the shared secret, or the public key's own."""
    if settings.HUB_JWT_PUBLIC_KEY:
        return _public_key(settings.HUB_JWT_PUBLIC_KEY)
    return _hs256_key(settings.HUB_JWT_SECRET), ["HS256"]


@functools.lru_cache(maxsize=4)
def _public_key(pem: str) -> tuple[Any, list[str]]:
    """The PEM parsed once, with the algorithm its type allows: RS256 for RSA, ES256 for P-256. Offering both
    for either key made PyJWT try an RSA key as an EC one (InvalidKeyError, a 500) for a token naming the other."""
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except ValueError as exc:
        raise ImproperlyConfigured(f"HUB_JWT_PUBLIC_KEY is not a PEM public key: {exc}") from exc
    if isinstance(key, rsa.RSAPublicKey):
        return key, ["RS256"]
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return key, ["ES256"]
    raise ImproperlyConfigured("HUB_JWT_PUBLIC_KEY must be an RSA (RS256) or P-256 (ES256) public key.")


@functools.lru_cache(maxsize=4)
def _hs256_key(secret: str) -> PyJWK:
    """The shared secret as a prepared key: PyJWT otherwise re-checks a plain string key on every
    decode (is it PEM? SSH?), a twentieth of the web process's CPU in a connect storm."""
    k = base64.urlsafe_b64encode(secret.encode()).rstrip(b"=").decode()
    return PyJWK({"kty": "oct", "k": k}, algorithm="HS256")


def user_from_jwt(token: str) -> User:
    """The active user named by a valid token's `sub`; anything else is `Unauthorized`."""
    return active_user(jwt_verify(token).user_id)


def jwt_verify(token: str) -> TokenSubject:
    """The subject and expiry of a token whose signature and expiry check out; no database involved."""
    key, algorithms = _verification()
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=algorithms,
            options={"require": ["sub", "exp"]},
            leeway=settings.HUB_JWT_LEEWAY_S,
        )
        valid_until = float(claims["exp"]) + settings.HUB_JWT_LEEWAY_S
        return TokenSubject(user_id=uuid.UUID(str(claims["sub"])), valid_until=valid_until)
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized("Token expired.") from exc
    # PyJWTError is the base of everything PyJWT raises about a token (InvalidKeyError included).
    except (jwt.PyJWTError, ValueError, TypeError, OverflowError) as exc:
        raise Unauthorized("Invalid token.") from exc


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


def ws_ticket_issue(*, user: User, valid_until: float | None = None) -> IssuedTicket:
    """A fresh single-use ticket for a browser WebSocket; expired ones are swept on the way.

    `valid_until` is when the credential the ticket was asked with lapses (a token's expiry, a
    session's): the connection made with the ticket is closed then (ADR 0041). It travels inside
    the ticket, which is stored only as a digest, so it cannot be altered."""
    now = timezone.now()
    WsTicket.objects.filter(expires_at__lte=now).delete()
    ticket = secrets.token_urlsafe(32)  # never holds a "."
    if valid_until is not None:
        ticket = f"{ticket}.{int(valid_until)}"
    expires_at = now + timedelta(seconds=settings.HUB_WS_TICKET_TTL_S)
    WsTicket.objects.create(digest=_digest(ticket), user=user, expires_at=expires_at)
    return IssuedTicket(ticket=ticket, expires_at=expires_at)


def ws_ticket_redeem(*, ticket: str) -> Credential:
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
    _, dot, until = ticket.partition(".")
    return Credential(user=row.user, valid_until=float(until) if dot else None)
