"""POST /api/ws-tickets: a single-use ticket for a browser WebSocket (PROTOCOL §1)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from hub.serialize import iso
from hub.services.identity import TokenSubject, ws_ticket_issue


def _credential_lapses(request: Request) -> float:
    """When what this request authenticated with lapses: the bearer token's expiry, or the session's."""
    if isinstance(request.auth, TokenSubject):
        return request.auth.valid_until
    return request.session.get_expiry_date().timestamp()


class WsTicketView(APIView):
    @extend_schema(
        request=None,
        responses={
            201: inline_serializer(
                "WsTicket", {"ticket": serializers.CharField(), "expires_at": serializers.DateTimeField()}
            )
        },
        summary="Issue a single-use WebSocket ticket (valid 30 s)",
    )
    def post(self, request: Request) -> Response:
        issued = ws_ticket_issue(user=request.user, valid_until=_credential_lapses(request))  # type: ignore[arg-type]
        return Response({"ticket": issued.ticket, "expires_at": iso(issued.expires_at)}, status=201)
