"""Conversation requests (PROTOCOL §2.1): messages, receipts, typing, catch-up, presence.

Transport only: validate, call a service, shape the reply. Database work runs in the thread pool
(not the single thread-sensitive executor) so that connections of one process do not queue behind
each other; a connection's own frames are still handled one at a time, in order."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar

from channels.db import database_sync_to_async
from django.conf import settings
from pydantic import Field

from consumers.connection import Connection
from consumers.registry import Payload, handles, on_connect, on_disconnect
from hub.services import conversations as conv_services
from hub.services import messages as msg_services
from hub.services import presence as presence_services
from hub.services.send_queue import message_send_submit
from hub.validation import Text

T = TypeVar("T")


def db(func: Callable[..., T]) -> Callable[..., Any]:
    """Run a sync service in the thread pool; a connection's frames are still handled in order."""
    return database_sync_to_async(func, thread_sensitive=False)


class MessageSendIn(Payload):
    conversation_id: uuid.UUID
    client_id: Text = Field(min_length=1, max_length=msg_services.CLIENT_ID_MAX)
    body: Text = Field(default="", max_length=64 * 1024)
    attachment_ids: list[uuid.UUID] = Field(default_factory=list, max_length=10)


class MessageEditIn(Payload):
    message_id: uuid.UUID
    body: Text = Field(max_length=64 * 1024)


class MessageDeleteIn(Payload):
    message_id: uuid.UUID


class ReceiptIn(Payload):
    conversation_id: uuid.UUID
    seq: int = Field(ge=0)


class TypingIn(Payload):
    conversation_id: uuid.UUID
    state: Literal["start", "stop"]


class SyncCursorIn(Payload):
    """`{"seq": k, "version": v}`: also the messages up to k changed after version v (PROTOCOL §2.1)."""

    seq: int = Field(ge=0)
    version: int = Field(ge=0)


class SyncIn(Payload):
    cursors: dict[uuid.UUID, int | SyncCursorIn] = Field(
        max_length=msg_services.SYNC_MAX_CONVERSATIONS
    )
    limit: int = Field(default=msg_services.SYNC_DEFAULT_LIMIT, ge=1)


class PresenceQueryIn(Payload):
    user_ids: list[uuid.UUID] = Field(max_length=presence_services.QUERY_MAX)


@handles("message.send", MessageSendIn, pipelined=True)
def message_send(conn: Connection, data: MessageSendIn) -> Awaitable[dict[str, Any]]:
    """Pipelined: queues the send now, in frame order (so a connection's sends keep their order);
    the reply comes when it is stored."""
    request = msg_services.SendRequest(
        conn.user, data.conversation_id, data.client_id, data.body, tuple(data.attachment_ids)
    )
    return _sent(conn, message_send_submit(request))


async def _sent(conn: Connection, stored: Awaitable[msg_services.Sent]) -> dict[str, Any]:
    # A `rate_limited` refusal goes up to the consumer, whose flood rule may close 4429 (ADR 0042).
    sent = await stored
    return {"message": sent.data}


@handles("message.edit", MessageEditIn)
async def message_edit(conn: Connection, data: MessageEditIn) -> dict[str, Any]:
    sent = await db(msg_services.message_edit)(user=conn.user, message_id=data.message_id, body=data.body)
    return {"message": sent.data}


@handles("message.delete", MessageDeleteIn)
async def message_delete(conn: Connection, data: MessageDeleteIn) -> dict[str, Any]:
    sent = await db(msg_services.message_delete)(user=conn.user, message_id=data.message_id)
    return {"message": sent.data}


@handles("conversation.read", ReceiptIn)
async def conversation_read(conn: Connection, data: ReceiptIn) -> dict[str, Any]:
    result = await db(conv_services.conversation_read)(
        user=conn.user, conversation_id=data.conversation_id, seq=data.seq
    )
    return {
        "conversation_id": str(data.conversation_id),
        "read_seq": result.read_seq,
        "unread_count": result.unread_count,
    }


@handles("conversation.delivered", ReceiptIn)
async def conversation_delivered(conn: Connection, data: ReceiptIn) -> dict[str, Any]:
    result = await db(conv_services.conversation_delivered)(
        user=conn.user, conversation_id=data.conversation_id, seq=data.seq
    )
    return {"conversation_id": str(data.conversation_id), "delivered_seq": result.delivered_seq}


@handles("typing", TypingIn)
async def typing(conn: Connection, data: TypingIn) -> dict[str, Any]:
    await db(conv_services.typing_notify)(
        user=conn.user,
        conversation_id=data.conversation_id,
        state=data.state,
        expires_in_s=settings.HUB_TYPING_EXPIRES_S,
    )
    return {}


@handles("sync", SyncIn)
async def sync(conn: Connection, data: SyncIn) -> dict[str, Any]:
    cursors = {
        cid: c if isinstance(c, int) else msg_services.Cursor(c.seq, c.version) for cid, c in data.cursors.items()
    }
    conversations = await db(msg_services.sync)(user=conn.user, cursors=cursors, limit=data.limit)
    return {"conversations": conversations}


@handles("presence.query", PresenceQueryIn)
async def presence_query(conn: Connection, data: PresenceQueryIn) -> dict[str, Any]:
    return {"presence": await presence_services.presence_query(user=conn.user, user_ids=data.user_ids)}


@on_connect
async def presence_online(conn: Connection) -> None:
    await presence_services.presence_connect(
        user_id=conn.user_id, connection_id=conn.connection_id, owner=conn.consumer
    )


@on_disconnect
async def presence_offline(conn: Connection) -> None:
    await presence_services.presence_disconnect(user_id=conn.user_id, connection_id=conn.connection_id)
