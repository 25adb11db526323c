"""Identity (PROTOCOL §1): every way a token or ticket can be good or bad, over HTTP."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from datetime import timedelta

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.conf import settings
from django.test import Client
from django.utils import timezone

from hub.errors import Unauthorized
from hub.models import WsTicket
from hub.services.identity import user_from_jwt, ws_ticket_issue, ws_ticket_redeem
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db


def claims(sub: object, *, exp_in: int = 300, **extra: object) -> dict[str, object]:
    now = int(time.time())
    return {"sub": str(sub), "role": "customer", "permissions": [], "iat": now, "exp": now + exp_in, **extra}


def hs256(payload: dict[str, object], secret: str | None = None) -> str:
    return jwt.encode(payload, secret or settings.HUB_JWT_SECRET, algorithm="HS256")


def test_valid_hs256_token() -> None:
    user = CustomerFactory()
    assert user_from_jwt(hs256(claims(user.id))) == user


@pytest.mark.parametrize(
    "make_token, message",
    [
        (lambda u: hs256(claims(u.id, exp_in=-120)), "expired"),
        (lambda u: hs256(claims(u.id), secret="not-the-secret-" * 3), "Invalid"),
        (lambda u: hs256(claims(uuid.uuid4())), "Unknown"),
        (lambda u: hs256(claims("not-a-uuid")), "Invalid"),
        (lambda u: hs256({"sub": str(u.id)}), "Invalid"),  # no exp
        (lambda u: jwt.encode(claims(u.id), key="", algorithm="none"), "Invalid"),  # alg none
        (lambda u: "garbage", "Invalid"),
    ],
    ids=["expired", "forged", "unknown-sub", "bad-sub", "no-exp", "alg-none", "garbage"],
)
def test_bad_tokens_refused(make_token, message) -> None:  # type: ignore[no-untyped-def]
    user = CustomerFactory()
    with pytest.raises(Unauthorized, match=message):
        user_from_jwt(make_token(user))


def test_inactive_user_refused() -> None:
    user = CustomerFactory(is_active=False)
    with pytest.raises(Unauthorized, match="inactive"):
        user_from_jwt(hs256(claims(user.id)))


@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
def test_public_key_tokens(settings, algorithm: str) -> None:  # type: ignore[no-untyped-def]
    private = rsa.generate_private_key(65537, 2048) if algorithm == "RS256" else ec.generate_private_key(ec.SECP256R1())
    settings.HUB_JWT_PUBLIC_KEY = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    user = CustomerFactory()
    assert user_from_jwt(jwt.encode(claims(user.id), private, algorithm=algorithm)) == user
    # With a public key configured, an HS256 token (even one signed with that key's text) is refused.
    with pytest.raises(Unauthorized):
        user_from_jwt(hs256(claims(user.id)))
    with pytest.raises(Unauthorized):
        user_from_jwt(hand_signed_hs256(claims(user.id), settings.HUB_JWT_PUBLIC_KEY))


def hand_signed_hs256(payload: dict[str, object], secret: str) -> str:
    """The key-confusion attack: HS256 keyed with the public key's PEM (PyJWT refuses to make one)."""
    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    signing_input = f"{b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}.{b64(json.dumps(payload).encode())}"
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def test_ticket_single_use() -> None:
    user = CustomerFactory()
    issued = ws_ticket_issue(user=user)
    assert issued.expires_at - timezone.now() <= timedelta(seconds=30)
    assert ws_ticket_redeem(ticket=issued.ticket).user == user
    with pytest.raises(Unauthorized):
        ws_ticket_redeem(ticket=issued.ticket)


def test_ticket_expired_and_stored_hashed() -> None:
    user = CustomerFactory()
    issued = ws_ticket_issue(user=user)
    assert not WsTicket.objects.filter(digest=issued.ticket).exists()
    WsTicket.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(Unauthorized, match="expired"):
        ws_ticket_redeem(ticket=issued.ticket)


def test_http_bearer_and_error_format(client: Client) -> None:
    user = CustomerFactory()
    ok = client.post("/api/ws-tickets", HTTP_AUTHORIZATION=f"Bearer {hs256(claims(user.id))}")
    assert ok.status_code == 201
    assert set(ok.json()) == {"ticket", "expires_at"}
    for header in ({}, {"HTTP_AUTHORIZATION": "Bearer nope"},
                   {"HTTP_AUTHORIZATION": f"Bearer {hs256(claims(user.id, exp_in=-100))}"}):
        response = client.post("/api/ws-tickets", **header)
        assert response.status_code == 401
        body = response.json()
        assert body["code"] == "unauthorized" and body["message"]


def test_http_session_cookie(client: Client) -> None:
    user = CustomerFactory()
    client.force_login(user)
    assert client.post("/api/ws-tickets").status_code == 201
    # Cookie authentication is CSRF-protected: a cross-site form post gets nothing.
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(user)
    assert strict.post("/api/ws-tickets").status_code == 403


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def with_header(header: dict[str, object], payload: dict[str, object]) -> str:
    """A token with any header at all (PyJWT will not make most of these), signature bytes made up."""
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}.{_b64(b'not-a-signature')}"


def public_key_pem(private: object) -> str:
    return private.public_key().public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


RSA_KEY = rsa.generate_private_key(65537, 2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_EC_KEY = ec.generate_private_key(ec.SECP256R1())


def other_algorithm_tokens(sub: object) -> dict[str, str]:
    """Tokens whose header names an algorithm other than the configured key's (PROTOCOL §1: all refused)."""
    from cryptography.hazmat.primitives.asymmetric import ed25519

    payload = claims(sub)
    return {
        "HS256": hs256(payload),
        "HS256-keyed-with-the-pem": "",  # filled in per key below
        "RS256": jwt.encode(payload, RSA_KEY, algorithm="RS256"),
        "ES256": jwt.encode(payload, EC_KEY, algorithm="ES256"),
        "ES256-other-key": jwt.encode(payload, OTHER_EC_KEY, algorithm="ES256"),
        "PS256": jwt.encode(payload, RSA_KEY, algorithm="PS256"),
        "EdDSA": jwt.encode(payload, ed25519.Ed25519PrivateKey.generate(), algorithm="EdDSA"),
        "ES512-header": with_header({"alg": "ES512", "typ": "JWT"}, payload),
        "garbage-alg": with_header({"alg": "xyz\u0000", "typ": "JWT"}, payload),
        "list-alg": with_header({"alg": ["RS256"], "typ": "JWT"}, payload),
        "none": with_header({"alg": "none", "typ": "JWT"}, payload),
        "no-alg": with_header({"typ": "JWT"}, payload),
    }


def tokens_refused_in_public_key_mode(key: str, sub: object) -> list[tuple[str, str]]:
    tokens = other_algorithm_tokens(sub)
    tokens["HS256-keyed-with-the-pem"] = hand_signed_hs256(claims(sub), settings.HUB_JWT_PUBLIC_KEY)
    own = "RS256" if key == "rsa" else "ES256"
    return [(name, token) for name, token in tokens.items() if name != own]


@pytest.mark.parametrize("key", ["rsa", "ec"])
def test_public_key_mode_refuses_every_other_algorithm_with_401(settings, client: Client, key: str) -> None:  # type: ignore[no-untyped-def]
    settings.HUB_JWT_PUBLIC_KEY = public_key_pem(RSA_KEY if key == "rsa" else EC_KEY)
    user = CustomerFactory()
    private, algorithm = (RSA_KEY, "RS256") if key == "rsa" else (EC_KEY, "ES256")
    own = jwt.encode(claims(user.id), private, algorithm=algorithm)
    assert user_from_jwt(own) == user
    assert client.post("/api/ws-tickets", HTTP_AUTHORIZATION=f"Bearer {own}").status_code == 201
    refused = tokens_refused_in_public_key_mode(key, user.id)
    assert len(refused) == 11
    for name, token in refused:
        with pytest.raises(Unauthorized, match="Invalid token"):
            user_from_jwt(token)
        response = client.post("/api/ws-tickets", HTTP_AUTHORIZATION=f"Bearer {token}")
        assert response.status_code == 401, (name, response.content)
        assert response.json() == {"code": "unauthorized", "message": "Invalid token."}, name
