"""DRF authentication: `Authorization: Bearer <jwt>` from the main app (PROTOCOL §1)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request

from hub.errors import Unauthorized
from hub.models import User
from hub.services.identity import TokenSubject, active_user, jwt_verify


class BearerJWTAuthentication(BaseAuthentication):
    """`request.auth` is the token's TokenSubject (its expiry travels into WebSocket tickets)."""

    def authenticate(self, request: Request) -> tuple[User, TokenSubject] | None:
        header = get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer":
            return None
        if not token.strip():
            raise exceptions.AuthenticationFailed("Empty bearer token.")
        try:
            subject = jwt_verify(token.strip())
            return active_user(subject.user_id), subject
        except Unauthorized as exc:
            raise exceptions.AuthenticationFailed(exc.message) from exc

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="hub"'


class BearerJWTScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    target_class = "hub.api.authentication.BearerJWTAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
