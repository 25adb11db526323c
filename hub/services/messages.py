"""Messages: the one place a message gets its seq (PROTOCOL §2.1).

`seq` comes from `UPDATE conversations SET last_seq = last_seq + 1 … RETURNING last_seq` inside the
inserting transaction: the row lock serialises writers of one conversation (across devices and web
processes), and a rollback rolls the counter back too, so seqs stay gap-free and unique."""

from __future__ import annotations

import uuid
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from hub import realtime, serialize
from hub.models import Conversation, ConversationMember, Message, MessageKind, User

_CONV_PK = Conversation._meta.pk


def _next_seq(conversation_id: uuid.UUID, now: Any) -> int:
    """Take the conversation's next seq; the row stays locked until the transaction ends."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE conversations SET last_seq = last_seq + 1, last_message_at = %s WHERE id = %s RETURNING last_seq",
            [now, _CONV_PK.get_db_prep_value(conversation_id, connection)],  # type: ignore[union-attr]
        )
        row = cursor.fetchone()
    if row is None:
        raise Conversation.DoesNotExist(conversation_id)
    return int(row[0])


def message_append(
    *,
    conversation_id: uuid.UUID,
    sender: User | None,
    kind: str,
    body: str,
    client_id: uuid.UUID | None = None,
    data: dict[str, Any] | None = None,
) -> Message:
    """Insert a message with the next seq. Callers have checked permission; must run in a transaction."""
    assert transaction.get_connection().in_atomic_block, "message_append needs a transaction"
    now = timezone.now()
    seq = _next_seq(conversation_id, now)
    return Message.objects.create(
        conversation_id=conversation_id,
        seq=seq,
        sender=sender,
        client_id=client_id,
        kind=kind,
        body=body,
        data=data or {},
        created_at=now,
    )


def member_ids(conversation_id: uuid.UUID) -> list[uuid.UUID]:
    return list(ConversationMember.objects.filter(conversation_id=conversation_id).values_list("user_id", flat=True))


def announce_created(message: Message, *, to: list[uuid.UUID]) -> None:
    """`message.created` to every device of the given members, after commit."""
    realtime.emit("message.created", {"message": serialize.message(message, attachments=[])}, to=to)


def message_post_system(
    *, conversation: Conversation, body: str, kind: str = MessageKind.SYSTEM, data: dict[str, Any] | None = None
) -> Message:
    """A hub-authored message (booking status, call summary) in a conversation, announced to its members."""
    with transaction.atomic():
        message = message_append(conversation_id=conversation.id, sender=None, kind=kind, body=body, data=data)
        announce_created(message, to=member_ids(conversation.id))
    return message
