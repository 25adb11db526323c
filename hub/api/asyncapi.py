"""GET /api/asyncapi.json: the WebSocket protocol as an AsyncAPI 3 document (ADR 0056).

Generated at request time from the code that defines the protocol, so it cannot drift from it:
events, hello and error from the catalogue (hub.events), requests from the handler registry
(consumers.registry.ROUTES, each with the schema its frames are validated with), replies from
hub.events.REPLIES. A new `@handles` route or catalogue event appears here without any edit.
Operations are from the hub's side: it `receive`s requests (each with its `reply`) and `send`s events."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from consumers import handlers  # noqa: F401  (registers every request type)
from consumers.registry import ROUTES
from hub import events

CHANNEL = "hub"
SCHEMAS = "#/components/schemas/"

DESCRIPTION = """\
One WebSocket per device, `GET /ws/`, carries everything for its user; there is nothing to subscribe to.
Authenticate with `Authorization: Bearer <jwt>`, a `?ticket=` from `POST /api/ws-tickets`, or the session cookie.
Every frame is a JSON text object `{"type", "ref"?, "data"}`. A request carries a `ref` of the client's choosing
and is answered by exactly one `reply` or `error` with the same `ref`; events carry no `ref`.
Close codes: 4401 authentication failed or expired, 4403 origin not allowed, 1009 frame over 64 KiB,
4408 no traffic for 90 s, 4429 kept flooding after `rate_limited`."""


def _event_type(model: type[events.Event]) -> str:
    return str(model.model_fields["type"].default)


def _doc(model: type[BaseModel]) -> str:
    return (model.__doc__ or "").strip()


def _message(name: str, payload: dict[str, Any], summary: str) -> dict[str, Any]:
    message: dict[str, Any] = {"name": name, "title": name, "contentType": "application/json", "payload": payload}
    if summary:
        message["summary"] = summary
    return message


def _envelope(frame_type: str, data: dict[str, Any], *, ref: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"type": {"type": "string", "const": frame_type}, "ref": ref, "data": data},
        "required": required,
        "additionalProperties": False,
    }


def document(*, servers: dict[str, Any] | None = None) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of /ws/ as the code defines it now (optionally naming its servers)."""
    doc = _generated(tuple(sorted((t, r.schema) for t, r in ROUTES.items())), tuple(events.REPLIES.items()))
    if not servers:
        return doc
    channel = {**doc["channels"][CHANNEL], "servers": [{"$ref": f"#/servers/{name}"} for name in servers]}
    return {**doc, "servers": servers, "channels": {CHANNEL: channel}}


@lru_cache(maxsize=4)
def _generated(routes_key: tuple[Any, ...], replies_key: tuple[Any, ...]) -> dict[str, Any]:
    """Generated once per set of routes and replies (13 ms); treat the result as read-only."""
    frames: list[type[BaseModel]] = [*events.EVENTS, events.Hello, events.ErrorFrame]
    routes = [ROUTES[frame_type] for frame_type, _ in routes_key]
    wanted: list[tuple[type[BaseModel], JsonSchemaMode]] = [(m, "serialization") for m in frames]
    wanted += [(r.schema, "validation") for r in routes]
    wanted += [(m, "serialization") for m in dict.fromkeys(events.REPLIES.values())]
    refs, definitions = models_json_schema(wanted, ref_template=SCHEMAS + "{model}")
    schemas = definitions.get("$defs", {})

    def schema(model: type[BaseModel], mode: JsonSchemaMode) -> dict[str, Any]:
        return refs[(model, mode)]

    messages: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    channel_ref = {"$ref": f"#/channels/{CHANNEL}"}

    def in_channel(key: str) -> dict[str, str]:
        return {"$ref": f"#/channels/{CHANNEL}/messages/{key}"}

    for model in frames:
        key = "error" if model is events.ErrorFrame else _event_type(model)  # type: ignore[arg-type]
        messages[key] = _message(key, schema(model, "serialization"), _doc(model))
        if model is not events.ErrorFrame:
            operations[f"send.{key}"] = {
                "action": "send",
                "channel": channel_ref,
                "messages": [in_channel(key)],
                "summary": f"`{key}` event",
            }
    for route in routes:
        request_key, reply_key = f"{route.frame_type}.request", f"{route.frame_type}.reply"
        reply_model = events.REPLIES.get(route.frame_type)
        reply_data = schema(reply_model, "serialization") if reply_model else {"type": "object"}
        messages[request_key] = _message(
            request_key,
            _envelope(route.frame_type, schema(route.schema, "validation"), ref={"type": "string"}, required=["type"]),
            f"The `{route.frame_type}` request.",
        )
        messages[reply_key] = _message(
            reply_key,
            _envelope("reply", reply_data, ref={"type": ["string", "null"]}, required=["type", "ref", "data"]),
            f"The reply to `{route.frame_type}`.",
        )
        operations[f"receive.{route.frame_type}"] = {
            "action": "receive",
            "channel": channel_ref,
            "messages": [in_channel(request_key)],
            "summary": f"`{route.frame_type}` request",
            "reply": {"channel": channel_ref, "messages": [in_channel(reply_key), in_channel("error")]},
        }
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "Loconomy Hub WebSocket", "version": "1.0.0", "description": DESCRIPTION},
        "defaultContentType": "application/json",
        "channels": {
            CHANNEL: {
                "address": "/ws/",
                "title": "The hub's WebSocket",
                "messages": {key: {"$ref": f"#/components/messages/{key}"} for key in messages},
            }
        },
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


class AsyncAPIView(APIView):
    """Public documentation: no authentication."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    @extend_schema(
        auth=[],
        responses={200: OpenApiTypes.OBJECT},
        summary="The WebSocket protocol (/ws/) as an AsyncAPI 3 document",
    )
    def get(self, request: Request) -> Response:
        protocol = "wss" if request.is_secure() else "ws"
        return Response(document(servers={"hub": {"host": request.get_host(), "protocol": protocol}}))
