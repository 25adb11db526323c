"""The pipe from services to devices: every event goes to the `user.<id>` groups of its recipients.

Services decide who receives an event (from the database) and call `emit` after commit; the
channel layer is only transport, so anything a client must not miss is persisted first."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

import orjson
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

EVENT_MESSAGE_TYPE = "hub.event"


def user_group(user_id: uuid.UUID | str) -> str:
    return f"user.{user_id}"


def encode_frame(frame_type: str, data: dict[str, Any]) -> str:
    """An event frame (no `ref`) as JSON text, encoded once for every recipient."""
    return orjson.dumps({"type": frame_type, "data": data}, default=_default).decode()


def _default(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def layer_message(text: str, *, exclude_channel: str | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"type": EVENT_MESSAGE_TYPE, "text": text}
    if exclude_channel:
        message["exclude"] = exclude_channel
    return message


async def emit_async(
    frame_type: str,
    data: dict[str, Any],
    *,
    to: Iterable[uuid.UUID | str],
    exclude_channel: str | None = None,
) -> None:
    """Send one event to every device of the given users (optionally not to one connection)."""
    layer = get_channel_layer()
    assert layer is not None, "CHANNEL_LAYERS is not configured"
    message = layer_message(encode_frame(frame_type, data), exclude_channel=exclude_channel)
    for user_id in dict.fromkeys(str(u) for u in to):
        await layer.group_send(user_group(user_id), message)


async def send_to_channel(channel_name: str, frame_type: str, data: dict[str, Any]) -> None:
    """Send one event to exactly one connection (call signaling)."""
    layer = get_channel_layer()
    assert layer is not None
    await layer.send(channel_name, layer_message(encode_frame(frame_type, data)))


def emit(
    frame_type: str,
    data: dict[str, Any],
    *,
    to: Iterable[uuid.UUID | str],
    exclude_channel: str | None = None,
) -> None:
    """From sync code: emit once the current transaction commits (at once outside one)."""
    recipients = list(to)

    def _send() -> None:
        async_to_sync(emit_async)(frame_type, data, to=recipients, exclude_channel=exclude_channel)

    transaction.on_commit(_send, robust=True)
