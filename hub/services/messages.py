"""Messages: the one place a message gets its seq (PROTOCOL §2.1), and everything done to messages.

`seq` comes from `UPDATE conversations SET last_seq = last_seq + 1 … RETURNING last_seq` inside the
inserting transaction: the row lock serialises writers of one conversation (across devices and web
processes), and a rollback rolls the counter back too, so seqs stay gap-free and unique."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from hub import realtime, serialize
from hub.errors import BadRequest, Conflict, NotFound, PermissionDenied
from hub.models import Attachment, Conversation, ConversationMember, Message, MessageKind, User
from hub.services import ratelimit
from hub.services.attachments import attachments_claim, attachments_claimable, attachments_drop, kind_for
from hub.services.conversations import (
    access_audience,
    access_membership,
    conversation_audience,
    refuse_non_member,
    unread_counts,
)

log = logging.getLogger(__name__)

_CONV_PK = Conversation._meta.pk

SYNC_DEFAULT_LIMIT = 100
SYNC_MAX_LIMIT = 500
SYNC_MAX_CONVERSATIONS = 1000
HISTORY_DEFAULT_LIMIT = 50
HISTORY_MAX_LIMIT = 200


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
    client_id: uuid.UUID | str | None = None,
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
        client_id=str(client_id) if client_id is not None else None,
        kind=kind,
        body=body,
        data=data or {},
        created_at=now,
    )


def member_ids(conversation_id: uuid.UUID) -> list[uuid.UUID]:
    return list(ConversationMember.objects.filter(conversation_id=conversation_id).values_list("user_id", flat=True))


def announce_created(message: Message, *, to: list[uuid.UUID], attachments: list[Attachment] | None = None) -> None:
    """`message.created` to every device of the given members, after commit."""
    realtime.emit("message.created", {"message": serialize.message(message, attachments=attachments or [])}, to=to)


def message_post_system(
    *,
    conversation: Conversation,
    body: str,
    kind: str = MessageKind.SYSTEM,
    data: dict[str, Any] | None = None,
) -> Message:
    """A hub-authored message (booking status, call summary) in a conversation, announced to its members."""
    with transaction.atomic():
        message = message_append(conversation_id=conversation.id, sender=None, kind=kind, body=body, data=data)
        announce_created(message, to=member_ids(conversation.id))
    return message


# --- sending, editing, deleting ------------------------------------------------------------------


def checked_body(body: str, *, allow_empty: bool = False) -> str:
    """1 to HUB_MESSAGE_MAX_CHARS characters after trimming (stored as given); empty only with attachments."""
    length = len(body.strip())
    if length > settings.HUB_MESSAGE_MAX_CHARS:
        raise BadRequest(
            f"A message body is at most {settings.HUB_MESSAGE_MAX_CHARS} characters.",
            max_chars=settings.HUB_MESSAGE_MAX_CHARS,
        )
    if length == 0 and not allow_empty:
        raise BadRequest("A message body needs at least one non-blank character.")
    return body


@dataclass
class Sent:
    message: Message
    attachments: list[Attachment] = field(default_factory=list)
    created: bool = True
    # With message_send(defer_announce=True): the `message.created` recipients, for the caller.
    announce_to: list[uuid.UUID] = field(default_factory=list)

    def as_data(self) -> dict[str, Any]:
        return serialize.message(self.message, attachments=self.attachments)

    async def announce(self) -> None:
        """Emit the deferred `message.created` (the message is committed: message_send has returned)."""
        if not self.announce_to:
            return
        try:
            await realtime.emit_async("message.created", {"message": self.as_data()}, to=self.announce_to)
        except Exception:  # like on_commit(robust=True): the message is stored; devices recover via sync
            log.exception("message.created for %s not announced", self.message.id)


def message_send(
    *,
    sender: User,
    conversation_id: uuid.UUID,
    client_id: str,
    body: str,
    attachment_ids: Sequence[uuid.UUID] = (),
    defer_announce: bool = False,
) -> Sent:
    """Store the message once per (sender, client_id); announce it to the members after commit.

    Hot path: one query for members and blocks, then the seq UPDATE and the INSERT (plus two for
    attachments when there are any). A repeated client_id is found by the unique constraint rather
    than a look-up before every insert, so a first send pays nothing for idempotency.

    `defer_announce=True` (async callers outside any transaction) leaves the broadcast to
    `await sent.announce()`, saving the worker thread a blocking hop back to the event loop."""
    if defer_announce:
        assert not transaction.get_connection().in_atomic_block, "deferred announce needs its own commit"
    checked_body(body, allow_empty=bool(attachment_ids))
    ratelimit.message_send_allowance(user_id=sender.id)
    audience = conversation_audience(conversation_id=conversation_id, actor_id=sender.id)
    if sender.id not in audience.members:
        refuse_non_member(conversation_id=conversation_id)
    if audience.blocked:
        raise PermissionDenied("A block stands between you and a member of this conversation.")
    try:
        with transaction.atomic():
            attachments = attachments_claimable(user=sender, attachment_ids=attachment_ids) if attachment_ids else []
            message = message_append(
                conversation_id=conversation_id,
                sender=sender,
                kind=kind_for(attachments),
                body=body,
                client_id=client_id,
            )
            if attachments:
                attachments_claim(message=message, attachments=attachments)
            if not defer_announce:
                announce_created(message, to=audience.members, attachments=attachments)
    except IntegrityError:
        # The same client_id from this sender was stored first (maybe by a concurrent request):
        # this transaction rolled back (seq included), and the first message is the answer.
        existing = Message.objects.filter(sender_id=sender.id, client_id=client_id).first()
        if existing is None:
            raise
        return Sent(message=existing, attachments=list(existing.attachments.all()), created=False)
    return Sent(message=message, attachments=attachments, announce_to=audience.members if defer_announce else [])


def _own_message(*, user: User, message_id: uuid.UUID) -> Message:
    message = Message.objects.select_for_update(of=("self",)).filter(id=message_id).first()
    if message is None:
        raise NotFound("No such message.", message_id=str(message_id))
    if message.sender_id != user.id:
        raise PermissionDenied("Only the sender may change a message.")
    return message


def message_edit(*, user: User, message_id: uuid.UUID, body: str) -> Sent:
    """Replace the body of one's own message; `message.updated` to the members."""
    checked_body(body, allow_empty=True)
    with transaction.atomic():
        message = _own_message(user=user, message_id=message_id)
        if message.deleted_at is not None:
            raise Conflict("The message was deleted.")
        audience = access_audience(user=user, conversation_id=message.conversation_id)
        attachments = list(message.attachments.all())
        checked_body(body, allow_empty=bool(attachments))  # a caption may be emptied, a text may not
        message.body = body
        message.edited_at = timezone.now()
        message.save(update_fields=["body", "edited_at"])
        realtime.emit(
            "message.updated",
            {"message": serialize.message(message, attachments=attachments)},
            to=audience.recipients(actor_id=user.id),
        )
    return Sent(message=message, attachments=attachments, created=False)


def message_delete(*, user: User, message_id: uuid.UUID) -> Sent:
    """Delete one's own message: body, data and attachment files are gone; its seq stays as a tombstone."""
    with transaction.atomic():
        message = _own_message(user=user, message_id=message_id)
        if message.deleted_at is not None:
            return Sent(message=message, attachments=[], created=False)
        audience = access_audience(user=user, conversation_id=message.conversation_id)
        attachments_drop(attachments=list(message.attachments.all()))
        message.body = ""
        message.data = {}
        message.deleted_at = timezone.now()
        message.save(update_fields=["body", "data", "deleted_at"])
        realtime.emit(
            "message.deleted",
            {
                "conversation_id": str(message.conversation_id),
                "message_id": str(message.id),
                "seq": message.seq,
            },
            to=audience.recipients(actor_id=user.id),
        )
    return Sent(message=message, attachments=[], created=False)


# --- reading: history and catch-up ---------------------------------------------------------------


def _serialized(messages: list[Message]) -> list[dict[str, Any]]:
    return [serialize.message(m, attachments=list(m.attachments.all())) for m in messages]


def message_history(
    *,
    user: User,
    conversation_id: uuid.UUID,
    before: int | None = None,
    after: int | None = None,
    limit: int = HISTORY_DEFAULT_LIMIT,
) -> tuple[list[dict[str, Any]], bool]:
    """Oldest first: the newest `limit` below `before`, or the oldest `limit` above `after`; (page, more)."""
    access_membership(user=user, conversation_id=conversation_id)
    limit = max(1, min(limit, HISTORY_MAX_LIMIT))
    qs = Message.objects.filter(conversation_id=conversation_id).prefetch_related("attachments")
    if after is not None:
        qs = qs.filter(seq__gt=after)
    if before is not None:
        qs = qs.filter(seq__lt=before)
    if after is not None:
        rows = list(qs.order_by("seq")[: limit + 1])
        more = len(rows) > limit
        return _serialized(rows[:limit]), more
    rows = list(qs.order_by("-seq")[: limit + 1])
    more = len(rows) > limit
    return _serialized(list(reversed(rows[:limit]))), more


def sync(*, user: User, cursors: dict[uuid.UUID, int], limit: int = SYNC_DEFAULT_LIMIT) -> list[dict[str, Any]]:
    """Catch-up for exactly the conversations in `cursors`: messages with seq > cursor, oldest first.

    A fixed number of queries however many conversations are asked for: memberships, receipts,
    one windowed message query (at most limit + 1 per conversation), attachments, unread counts."""
    if len(cursors) > SYNC_MAX_CONVERSATIONS:
        raise BadRequest(f"At most {SYNC_MAX_CONVERSATIONS} conversations per sync.")
    if any(seq < 0 for seq in cursors.values()):
        raise BadRequest("Cursor values are seqs: integers >= 0.")
    limit = max(1, min(limit, SYNC_MAX_LIMIT))
    if not cursors:
        return []
    ids = list(cursors)
    mine = dict(
        ConversationMember.objects.filter(user_id=user.id, conversation_id__in=ids).values_list(
            "conversation_id", "read_seq"
        )
    )
    missing = [cid for cid in ids if cid not in mine]
    if missing:
        existing = set(Conversation.objects.filter(id__in=missing).values_list("id", flat=True))
        unknown = [str(cid) for cid in missing if cid not in existing]
        if unknown:
            raise NotFound("No such conversations.", conversation_ids=unknown)
        raise PermissionDenied(
            "You are not a member of these conversations.", conversation_ids=[str(c) for c in missing]
        )
    read: dict[uuid.UUID, dict[str, int]] = {cid: {} for cid in ids}
    delivered: dict[uuid.UUID, dict[str, int]] = {cid: {} for cid in ids}
    for cid, uid, read_seq, delivered_seq in ConversationMember.objects.filter(conversation_id__in=ids).values_list(
        "conversation_id", "user_id", "read_seq", "delivered_seq"
    ):
        read[cid][str(uid)] = read_seq
        delivered[cid][str(uid)] = delivered_seq
    cond = Q()
    for cid, after in cursors.items():
        cond |= Q(conversation_id=cid, seq__gt=after)
    rows = list(
        Message.objects.filter(cond)
        .annotate(rank=Window(RowNumber(), partition_by=[F("conversation_id")], order_by=F("seq").asc()))
        .filter(rank__lte=limit + 1)
        .order_by("conversation_id", "seq")
        .prefetch_related("attachments")
    )
    grouped: dict[uuid.UUID, list[Message]] = {cid: [] for cid in ids}
    for m in rows:
        grouped[m.conversation_id].append(m)
    unread = unread_counts(user=user, positions=mine)
    return [
        {
            "id": str(cid),
            "messages": _serialized(grouped[cid][:limit]),
            "has_more": len(grouped[cid]) > limit,
            "read": read[cid],
            "delivered": delivered[cid],
            "unread_count": unread[cid],
        }
        for cid in ids
    ]
