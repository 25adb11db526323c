"""Plain-dict views of domain objects: the one shape used by WebSocket frames and HTTP bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from hub.models import Attachment, Block, Booking, Message, User


def iso(value: datetime | None) -> str | None:
    """RFC 3339 UTC timestamps with milliseconds, `Z` suffix."""
    if value is None:
        return None
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def user_public(user: User) -> dict[str, Any]:
    return {"id": str(user.id), "display_name": user.display_name, "role": user.role}


def booking(b: Booking, *, conversation_id: Any = None) -> dict[str, Any]:
    conv_id = conversation_id if conversation_id is not None else _booking_conversation_id(b)
    return {
        "id": str(b.id),
        "customer_id": str(b.customer_id),
        "provider_id": str(b.provider_id),
        "service_id": str(b.service_id) if b.service_id else None,
        "status": b.status,
        "scheduled_at": iso(b.scheduled_at),
        "duration_minutes": b.duration_minutes,
        "location": b.location,
        "notes": b.notes,
        "pricing": b.pricing,
        "conversation_id": str(conv_id) if conv_id else None,
        # The provider's last fix (PROTOCOL §2.2), only while en route.
        "live_location": b.live_location if b.status == "en_route" else None,
    }


def _booking_conversation_id(b: Booking) -> Any:
    try:
        return b.conversation.id
    except Booking.conversation.RelatedObjectDoesNotExist:
        return None


def attachment(a: Attachment) -> dict[str, Any]:
    return {
        "id": str(a.id),
        "url": f"/api/attachments/{a.id}",
        "name": a.name,
        "content_type": a.content_type,
        "size": a.size,
    }


def message(m: Message, *, attachments: list[Attachment] | None = None) -> dict[str, Any]:
    """A message object; pass `attachments` when known to save a query (e.g. from a prefetch)."""
    items = attachments if attachments is not None else list(m.attachments.all())
    deleted = m.deleted_at is not None
    return {
        "id": str(m.id),
        "conversation_id": str(m.conversation_id),
        "seq": m.seq,
        "version": m.version,
        "sender_id": str(m.sender_id) if m.sender_id else None,
        "client_id": str(m.client_id) if m.client_id else None,
        "kind": m.kind,
        "body": "" if deleted else m.body,
        "data": {} if deleted else m.data,
        "attachments": [] if deleted else [attachment(a) for a in items],
        "created_at": iso(m.created_at),
        "edited_at": iso(m.edited_at),
        "deleted": deleted,
    }


def conversation(view: Any) -> dict[str, Any]:
    """A conversation list entry (hub.services.conversations.ConversationView) for its member."""
    c, me = view.conversation, view.membership
    return {
        "id": str(c.id),
        "kind": c.kind,
        "booking_id": str(c.booking_id) if c.booking_id else None,
        "members": [user_public(u) for u in view.members],
        "last_seq": c.last_seq,
        "version": c.last_version,
        "last_message": message(view.last_message, attachments=list(view.last_message.attachments.all()))
        if view.last_message is not None
        else None,
        "last_message_at": iso(c.last_message_at),
        "read_seq": me.read_seq,
        "delivered_seq": me.delivered_seq,
        "unread_count": view.unread_count,
        "created_at": iso(c.created_at),
    }


def block(b: Block) -> dict[str, Any]:
    return {"user": user_public(b.blocked), "created_at": iso(b.created_at)}
