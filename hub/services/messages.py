"""Messages: the one place a message gets its seq (PROTOCOL §2.1), and everything done to messages.

`seq` comes from `UPDATE conversations SET last_seq = last_seq + n … RETURNING last_seq` inside the
inserting transaction (n: that conversation's messages in the batch): the row lock serialises
writers of one conversation (across devices and web processes), and a rollback rolls the counter
back too, so seqs stay gap-free and unique."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from hub import realtime, serialize
from hub.errors import BadRequest, Conflict, HubError, NotFound, PermissionDenied
from hub.models import Attachment, Conversation, ConversationMember, Message, MessageKind, User
from hub.services import ratelimit
from hub.services.attachments import attachments_claim, attachments_claimable, attachments_drop, kind_for
from hub.services.conversations import (
    access_audience,
    access_membership,
    as_uuid,
    conversation_audiences,
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


_SEQ_SQL = (
    "UPDATE conversations SET last_message_at = %s, last_seq = last_seq + CASE id {cases} END"
    " WHERE id IN ({ids}) RETURNING id, last_seq"
)


def _take_seqs(counts: dict[uuid.UUID, int], now: Any) -> dict[uuid.UUID, int]:
    """Take `n` consecutive seqs in each conversation: its first new seq, by conversation id.

    The rows stay locked until the transaction ends; one statement for any number of conversations."""
    ids = list(counts)
    params: list[Any] = [now]
    for cid in ids:
        params += [_CONV_PK.get_db_prep_value(cid, connection), counts[cid]]  # type: ignore[union-attr]
    params += [_CONV_PK.get_db_prep_value(cid, connection) for cid in ids]  # type: ignore[union-attr]
    sql = _SEQ_SQL.format(cases=" ".join(["WHEN %s THEN %s"] * len(ids)), ids=", ".join(["%s"] * len(ids)))
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    last = {as_uuid(raw): int(seq) for raw, seq in rows}
    missing = [cid for cid in ids if cid not in last]
    if missing:
        raise Conversation.DoesNotExist(missing[0])
    return {cid: last[cid] - counts[cid] + 1 for cid in ids}


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
    seq = _take_seqs({conversation_id: 1}, now)[conversation_id]
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
    # With defer_announce=True: the `message.created` recipients, for the caller to announce.
    announce_to: list[uuid.UUID] = field(default_factory=list)

    @cached_property
    def data(self) -> dict[str, Any]:
        """The message as clients see it (serialised once for the reply and the event)."""
        return serialize.message(self.message, attachments=self.attachments)


@dataclass(frozen=True)
class SendRequest:
    """One `message.send`: what the sender asked for."""

    sender: User
    conversation_id: uuid.UUID
    client_id: str
    body: str
    attachment_ids: tuple[uuid.UUID, ...] = ()


def message_send(
    *,
    sender: User,
    conversation_id: uuid.UUID,
    client_id: str,
    body: str,
    attachment_ids: Sequence[uuid.UUID] = (),
) -> Sent:
    """Store one message (a batch of one, see `messages_send`); its `message.created` goes out after commit."""
    request = SendRequest(sender, conversation_id, client_id, body, tuple(attachment_ids))
    outcome = messages_send([request])[0]
    if isinstance(outcome, HubError):
        raise outcome
    return outcome


def messages_send(
    requests: Sequence[SendRequest], *, defer_announce: bool = False, checked: bool = False
) -> list[Sent | HubError]:
    """Store a batch of sends in one transaction (group commit, ADR 0036); one outcome per request, in order.

    Each message is stored once per (sender, client_id): a repeat answers the first message
    (`created=False`). A request refused on its own (body, rate limit, membership, block,
    attachments) gets its `HubError` and takes no seq; the others are unaffected. Queries for the
    whole batch, whatever its size: the audiences, then in one transaction the conversation row
    locks, earlier client_ids, one seq UPDATE, one INSERT (plus the attachments' own).

    `defer_announce=True` (async callers outside any transaction) leaves the broadcast of each created
    message to the caller (`announce_to`), saving a blocking hop back to the event loop.
    `checked=True`: the caller has checked the bodies and taken the rate-limit tokens already."""
    if defer_announce:
        assert not transaction.get_connection().in_atomic_block, "deferred announce needs its own commit"
    try:
        return _send_batch(requests, defer_announce=defer_announce, checked=checked)
    except IntegrityError:
        # A client_id stored concurrently by another process (the unique constraint caught it): the
        # batch rolled back, seqs included. Alone, each request finds that first message.
        if len(requests) > 1:
            return [messages_send([r], defer_announce=defer_announce, checked=True)[0] for r in requests]
        request = requests[0]
        existing = Message.objects.filter(sender_id=request.sender.id, client_id=request.client_id).first()
        if existing is None:
            raise
        return [Sent(message=existing, attachments=list(existing.attachments.all()), created=False)]


def body_refusals(requests: Sequence[SendRequest]) -> list[HubError | None]:
    """Per request: why its body is refused (see `checked_body`), or None."""
    refused: list[HubError | None] = []
    for r in requests:
        try:
            checked_body(r.body, allow_empty=bool(r.attachment_ids))
        except HubError as exc:
            refused.append(exc)
        else:
            refused.append(None)
    return refused


def with_limits(refused: list[HubError | None], limits: Sequence[HubError | None]) -> list[HubError | None]:
    """`refused` with the rate-limit outcomes (one per request not yet refused, in order) filled in."""
    taken = iter(limits)
    return [exc if exc is not None else next(taken) for exc in refused]


def _send_batch(requests: Sequence[SendRequest], *, defer_announce: bool, checked: bool) -> list[Sent | HubError]:
    outcomes: list[Sent | HubError | None] = [None] * len(requests)

    def refuse(i: int, exc: HubError) -> None:
        outcomes[i] = exc

    if not checked:
        refused = body_refusals(requests)
        limits = ratelimit.message_send_allowances(
            user_ids=[r.sender.id for r, exc in zip(requests, refused, strict=True) if exc is None]
        )
        for i, exc in enumerate(with_limits(refused, limits)):
            if exc is not None:
                refuse(i, exc)
    todo = [i for i in range(len(requests)) if outcomes[i] is None]
    audiences = conversation_audiences(pairs=[(requests[i].conversation_id, requests[i].sender.id) for i in todo])
    admitted = []
    for i in todo:
        r = requests[i]
        audience = audiences[(r.conversation_id, r.sender.id)]
        try:
            if r.sender.id not in audience.members:
                refuse_non_member(conversation_id=r.conversation_id)
            if audience.blocked:
                raise PermissionDenied("A block stands between you and a member of this conversation.")
        except HubError as exc:
            refuse(i, exc)
        else:
            admitted.append(i)
    if admitted:
        with transaction.atomic():
            _store(requests, admitted, outcomes, audiences, defer_announce=defer_announce)
    return [outcome for outcome in outcomes if outcome is not None]


def _store(
    requests: Sequence[SendRequest],
    admitted: list[int],
    outcomes: list[Sent | HubError | None],
    audiences: dict[tuple[uuid.UUID, uuid.UUID], Any],
    *,
    defer_announce: bool,
) -> None:
    """The transactional half of a batch: fills `outcomes` for every admitted request."""
    conversation_ids = sorted({requests[i].conversation_id for i in admitted})
    if len(conversation_ids) > 1:
        # Row locks in one order across processes (no deadlocks: the seq UPDATE below locks in
        # whatever order its plan scans). One conversation needs no pre-lock: its UPDATE takes it.
        list(
            Conversation.objects.select_for_update(no_key=True)
            .filter(id__in=conversation_ids)
            .order_by("id")
            .values_list("id")
        )
    earlier = {
        (m.sender_id, m.client_id): m
        for m in Message.objects.filter(
            sender_id__in={requests[i].sender.id for i in admitted},
            client_id__in={requests[i].client_id for i in admitted},
        )
    }
    fresh: list[int] = []
    first_of: dict[tuple[uuid.UUID, str], int] = {}
    claimed: dict[int, list[Attachment]] = {}
    taken: set[uuid.UUID] = set()
    for i in admitted:
        r = requests[i]
        key = (r.sender.id, r.client_id)
        if key in earlier:
            existing = earlier[key]
            outcomes[i] = Sent(message=existing, attachments=list(existing.attachments.all()), created=False)
        elif key in first_of:
            continue  # a repeat inside this batch: answered with the first once it is stored
        elif r.attachment_ids:
            try:
                attachments = attachments_claimable(user=r.sender, attachment_ids=r.attachment_ids)
                if taken.intersection(a.id for a in attachments):
                    raise BadRequest("Unknown, foreign or already used attachments.")
            except HubError as exc:
                outcomes[i] = exc
                continue
            taken.update(a.id for a in attachments)
            claimed[i] = attachments
            first_of[key] = i
            fresh.append(i)
        else:
            first_of[key] = i
            fresh.append(i)
    if not fresh:
        _answer_repeats(requests, admitted, outcomes, first_of)
        return
    now = timezone.now()
    counts: dict[uuid.UUID, int] = {}
    for i in fresh:
        counts[requests[i].conversation_id] = counts.get(requests[i].conversation_id, 0) + 1
    next_seq = _take_seqs(counts, now)
    messages = []
    for i in fresh:
        r = requests[i]
        seq = next_seq[r.conversation_id]
        next_seq[r.conversation_id] = seq + 1
        messages.append(
            Message(
                conversation_id=r.conversation_id,
                seq=seq,
                sender=r.sender,
                client_id=r.client_id,
                kind=kind_for(claimed.get(i, [])),
                body=r.body,
                data={},
                created_at=now,
            )
        )
    Message.objects.bulk_create(messages)
    for i, message in zip(fresh, messages, strict=True):
        attachments = claimed.get(i, [])
        if attachments:
            attachments_claim(message=message, attachments=attachments)
        members = audiences[(message.conversation_id, requests[i].sender.id)].members
        if not defer_announce:
            announce_created(message, to=members, attachments=attachments)
        outcomes[i] = Sent(message=message, attachments=attachments, announce_to=members if defer_announce else [])
    _answer_repeats(requests, admitted, outcomes, first_of)


def _answer_repeats(
    requests: Sequence[SendRequest],
    admitted: list[int],
    outcomes: list[Sent | HubError | None],
    first_of: dict[tuple[uuid.UUID, str], int],
) -> None:
    """A client_id repeated inside one batch gets what its first occurrence got (not announced twice)."""
    for i in admitted:
        if outcomes[i] is None:
            first = outcomes[first_of[(requests[i].sender.id, requests[i].client_id)]]
            assert first is not None  # every first occurrence was stored or refused above
            if isinstance(first, HubError):
                outcomes[i] = first
            else:
                outcomes[i] = Sent(message=first.message, attachments=first.attachments, created=False)


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
