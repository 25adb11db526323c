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
from typing import Any, Literal

from django.conf import settings
from django.db import DataError, IntegrityError, connection, transaction
from django.db.models import F, Q, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from hub import events, serialize
from hub.errors import BadRequest, Conflict, HubError, NotFound, PermissionDenied
from hub.models import Attachment, Conversation, ConversationMember, Message, MessageKind, User
from hub.services import ratelimit
from hub.services.attachments import attachments_claim, attachments_claimable, attachments_drop, kind_for
from hub.services.conversations import (
    access_audience,
    access_membership,
    as_uuid,
    conversation_audiences,
    non_member_error,
    non_members_error,
    unread_counts,
)
from hub.validation import NUL, NUL_MESSAGE

log = logging.getLogger(__name__)

_CONV_PK = Conversation._meta.pk

SYNC_DEFAULT_LIMIT = 100
SYNC_MAX_LIMIT = 500
SYNC_MAX_CONVERSATIONS = 1000
COUNTER_MAX = 2**63 - 1  # seqs and versions are bigint columns
HISTORY_DEFAULT_LIMIT = 50
HISTORY_MAX_LIMIT = 200


_SEQ_SQL = (
    "UPDATE conversations SET last_message_at = %s, last_seq = last_seq + CASE id {cases} END,"
    " last_version = last_version + CASE id {cases} END"
    " WHERE id IN ({ids}) RETURNING id, last_seq, last_version"
)
_VERSION_SQL = "UPDATE conversations SET last_version = last_version + 1 WHERE id = %s RETURNING last_version"


def _take_seqs(counts: dict[uuid.UUID, int], now: Any) -> dict[uuid.UUID, tuple[int, int]]:
    """Take `n` consecutive seqs and versions in each conversation: its first new (seq, version), by id.

    The rows stay locked until the transaction ends; one statement for any number of conversations."""
    ids = list(counts)
    cases: list[Any] = []
    for cid in ids:
        cases += [_CONV_PK.get_db_prep_value(cid, connection), counts[cid]]  # type: ignore[union-attr]
    params: list[Any] = [now, *cases, *cases]
    params += [_CONV_PK.get_db_prep_value(cid, connection) for cid in ids]  # type: ignore[union-attr]
    sql = _SEQ_SQL.format(cases=" ".join(["WHEN %s THEN %s"] * len(ids)), ids=", ".join(["%s"] * len(ids)))
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    last = {as_uuid(raw): (int(seq), int(version)) for raw, seq, version in rows}
    missing = [cid for cid in ids if cid not in last]
    if missing:
        raise Conversation.DoesNotExist(missing[0])
    return {cid: (last[cid][0] - counts[cid] + 1, last[cid][1] - counts[cid] + 1) for cid in ids}


def _take_version(conversation_id: uuid.UUID) -> int:
    """The conversation's next version, for an edit or a delete (the row stays locked until commit)."""
    with connection.cursor() as cursor:
        cursor.execute(_VERSION_SQL, [_CONV_PK.get_db_prep_value(conversation_id, connection)])  # type: ignore[union-attr]
        (version,) = cursor.fetchone()
    return int(version)


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
    seq, version = _take_seqs({conversation_id: 1}, now)[conversation_id]
    return Message.objects.create(
        conversation_id=conversation_id,
        seq=seq,
        version=version,
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
    data = {"message": serialize.message(message, attachments=attachments or [])}
    events.publish(events.MessageCreated.trusted(data), to=to)


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
    """1 to HUB_MESSAGE_MAX_CHARS characters after trimming (stored as given), no NUL; empty only with attachments."""
    if NUL in body:
        raise BadRequest(NUL_MESSAGE)
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

    def repeat(self) -> Sent:
        """This message as the answer to a repeat of its client_id: not created, announced by nobody."""
        return Sent(message=self.message, attachments=self.attachments, created=False)


@dataclass(frozen=True)
class SendRequest:
    """One `message.send`: what the sender asked for."""

    sender: User
    conversation_id: uuid.UUID
    client_id: str
    body: str
    attachment_ids: tuple[uuid.UUID, ...] = ()


# --- the send rules: one source for both storage paths (this ORM path and message_commit's SQL) ---------
#
# Each path gathers the facts its own way (queries here, one statement there) and these functions
# decide. The SQL stores exactly the requests for which `access_refusal` is None and the sender has
# no earlier message with the client_id; the shared scenario (tests/hub/test_send_rules.py) runs
# both paths against the same expected outcomes.

CLIENT_ID_MAX = 64
Verdict = Literal["new", "repeat"]


def request_refusal(r: SendRequest) -> HubError | None:
    """Why the request itself is refused (client_id, body), before any query; or None."""
    if not 1 <= len(r.client_id) <= CLIENT_ID_MAX or NUL in r.client_id:
        return BadRequest(f"client_id is 1 to {CLIENT_ID_MAX} characters, without NUL.")
    try:
        checked_body(r.body, allow_empty=bool(r.attachment_ids))
    except HubError as exc:
        return exc
    return None


def access_refusal(r: SendRequest, *, conversation_exists: bool, is_member: bool, blocked: bool) -> HubError | None:
    """Membership, then blocks (ADR 0010): who may post in the conversation."""
    if not is_member:
        return non_member_error(conversation_id=r.conversation_id, exists=conversation_exists)
    if blocked:
        return PermissionDenied("A block stands between you and a member of this conversation.")
    return None


def idempotency(r: SendRequest, earlier_conversation_id: uuid.UUID | None) -> Verdict | HubError:
    """Per sender and conversation: a client_id already stored here is a repeat, elsewhere a conflict."""
    if earlier_conversation_id is None:
        return "new"
    if earlier_conversation_id != r.conversation_id:
        return client_id_conflict(r)
    return "repeat"


def client_id_conflict(r: SendRequest) -> HubError:
    return Conflict("This client_id was already used in another conversation.", client_id=r.client_id)


def batch_repeats(requests: Sequence[SendRequest], outcomes: list[Sent | HubError | None]) -> dict[int, int]:
    """Later occurrences of a (sender, client_id) in one batch, by index → the index of the first.

    Only the first is stored; an occurrence naming another conversation than the first's is refused
    (`conflict`, set in `outcomes`). Requests already refused (outcome set) are skipped."""
    first: dict[tuple[uuid.UUID, str], int] = {}
    echoes: dict[int, int] = {}
    for i, r in enumerate(requests):
        if outcomes[i] is not None:
            continue
        j = first.setdefault((r.sender.id, r.client_id), i)
        if j == i:
            continue
        if requests[j].conversation_id != r.conversation_id:
            outcomes[i] = client_id_conflict(r)
        else:
            echoes[i] = j
    return echoes


def answer_repeats(echoes: dict[int, int], outcomes: list[Sent | HubError | None]) -> None:
    """A client_id repeated inside one batch gets what its first occurrence got (announced once, by the first)."""
    for i, j in echoes.items():
        first = outcomes[j]
        assert first is not None, "every first occurrence is answered before its repeats"
        outcomes[i] = first if isinstance(first, HubError) else first.repeat()


def admission_refusals(requests: Sequence[SendRequest]) -> list[HubError | None]:
    """Per request: why it is refused before any query (see `request_refusal`), or None."""
    return [request_refusal(r) for r in requests]


def with_limits(refused: list[HubError | None], limits: Sequence[HubError | None]) -> list[HubError | None]:
    """`refused` with the rate-limit outcomes (one per request not yet refused, in order) filled in."""
    taken = iter(limits)
    return [exc if exc is not None else next(taken) for exc in refused]


# --- the ORM path ------------------------------------------------------------------------------


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
    (`created=False`), the same client_id in another conversation is `conflict`. A request refused
    on its own (body, rate limit, membership, block, attachments) gets its `HubError` and takes no
    seq; the others are unaffected. Seqs follow the order of `requests`. Queries for the whole
    batch, whatever its size: the audiences, then in one transaction the conversation row locks,
    earlier client_ids, one seq UPDATE, one INSERT (plus the attachments' own).

    `defer_announce=True` (async callers outside any transaction) leaves the broadcast of each created
    message to the caller (`announce_to`), saving a blocking hop back to the event loop.
    `checked=True`: the caller has checked the requests and taken the rate-limit tokens already."""
    if defer_announce:
        assert not transaction.get_connection().in_atomic_block, "deferred announce needs its own commit"
    try:
        return _send_batch(requests, defer_announce=defer_announce, checked=checked)
    except (IntegrityError, DataError):
        # A client_id stored concurrently by another process (the unique constraint caught it), or a
        # value the database refuses: the batch rolled back, seqs included. Alone, each request finds
        # that first message or fails on its own, never another sender's.
        if len(requests) > 1:
            return [messages_send([r], defer_announce=defer_announce, checked=True)[0] for r in requests]
        request = requests[0]
        existing = Message.objects.filter(sender_id=request.sender.id, client_id=request.client_id).first()
        if existing is None:
            log.warning("a send the database refused", exc_info=True)
            return [BadRequest("This message cannot be stored.")]
        verdict = idempotency(request, existing.conversation_id)
        if isinstance(verdict, HubError):
            return [verdict]
        return [Sent(message=existing, attachments=list(existing.attachments.all()), created=False)]


def _send_batch(requests: Sequence[SendRequest], *, defer_announce: bool, checked: bool) -> list[Sent | HubError]:
    outcomes: list[Sent | HubError | None] = [None] * len(requests)
    if not checked:
        refused = admission_refusals(requests)
        limits = ratelimit.message_send_allowances(
            user_ids=[r.sender.id for r, exc in zip(requests, refused, strict=True) if exc is None]
        )
        outcomes[:] = with_limits(refused, limits)
    echoes = batch_repeats(requests, outcomes)
    todo = [i for i in range(len(requests)) if outcomes[i] is None and i not in echoes]
    audiences = conversation_audiences(pairs=[(requests[i].conversation_id, requests[i].sender.id) for i in todo])
    strangers = {
        requests[i].conversation_id for i in todo if requests[i].sender.id not in audiences[_key(requests[i])].members
    }
    # Conversations the sender is not in: one query tells the unknown ones from the foreign ones.
    existing = set(Conversation.objects.filter(id__in=strangers).values_list("id", flat=True)) if strangers else set()
    admitted = []
    for i in todo:
        r = requests[i]
        audience = audiences[_key(r)]
        refusal = access_refusal(
            r,
            conversation_exists=r.conversation_id in existing or r.conversation_id not in strangers,
            is_member=r.sender.id in audience.members,
            blocked=bool(audience.blocked),
        )
        if refusal is not None:
            outcomes[i] = refusal
        else:
            admitted.append(i)
    if admitted:
        with transaction.atomic():
            _store(requests, admitted, outcomes, audiences, defer_announce=defer_announce)
    answer_repeats(echoes, outcomes)
    return [outcome for outcome in outcomes if outcome is not None]


def _key(r: SendRequest) -> tuple[uuid.UUID, uuid.UUID]:
    return (r.conversation_id, r.sender.id)


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
    claimed: dict[int, list[Attachment]] = {}
    taken: set[uuid.UUID] = set()
    for i in admitted:
        r = requests[i]
        first = earlier.get((r.sender.id, r.client_id))
        verdict = idempotency(r, first.conversation_id if first is not None else None)
        if isinstance(verdict, HubError):
            outcomes[i] = verdict
        elif verdict == "repeat":
            assert first is not None
            outcomes[i] = Sent(message=first, attachments=list(first.attachments.all()), created=False)
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
            fresh.append(i)
        else:
            fresh.append(i)
    if not fresh:
        return
    now = timezone.now()
    counts: dict[uuid.UUID, int] = {}
    for i in fresh:
        counts[requests[i].conversation_id] = counts.get(requests[i].conversation_id, 0) + 1
    next_seq = _take_seqs(counts, now)
    messages = []
    for i in fresh:
        r = requests[i]
        seq, version = next_seq[r.conversation_id]
        next_seq[r.conversation_id] = (seq + 1, version + 1)
        messages.append(
            Message(
                conversation_id=r.conversation_id,
                seq=seq,
                version=version,
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
        members = audiences[_key(requests[i])].members
        if not defer_announce:
            announce_created(message, to=members, attachments=attachments)
        outcomes[i] = Sent(message=message, attachments=attachments, announce_to=members if defer_announce else [])


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
        message.version = _take_version(message.conversation_id)
        message.save(update_fields=["body", "edited_at", "version"])
        events.publish(
            events.MessageUpdated.trusted({"message": serialize.message(message, attachments=attachments)}),
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
        message.version = _take_version(message.conversation_id)
        message.save(update_fields=["body", "data", "deleted_at", "version"])
        events.publish(
            events.MessageDeleted.trusted(
                {
                    "conversation_id": str(message.conversation_id),
                    "message_id": str(message.id),
                    "seq": message.seq,
                    "version": message.version,
                }
            ),
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


@dataclass(frozen=True)
class Cursor:
    """What a device holds of one conversation: the last seq, and (optionally) the last version."""

    seq: int
    version: int | None = None


def sync(
    *, user: User, cursors: dict[uuid.UUID, int | Cursor], limit: int = SYNC_DEFAULT_LIMIT
) -> list[dict[str, Any]]:
    """Catch-up for exactly the conversations in `cursors`: messages with seq > cursor, oldest first; with a
    version in the cursor also `changed`, the messages up to its seq edited or deleted after that version.

    A fixed number of queries however many conversations are asked for: memberships (with the
    conversations' versions), receipts, one windowed message query (at most limit + 1 per
    conversation), attachments, unread counts, and one for `changed` when asked. The versions are
    read first: a change committed later has a higher version, so the next sync sees it."""
    wanted = {cid: c if isinstance(c, Cursor) else Cursor(c) for cid, c in cursors.items()}
    if len(wanted) > SYNC_MAX_CONVERSATIONS:
        raise BadRequest(f"At most {SYNC_MAX_CONVERSATIONS} conversations per sync.")
    if any(not _counter(c.seq) or (c.version is not None and not _counter(c.version)) for c in wanted.values()):
        raise BadRequest("Cursor values are seqs (and versions): integers from 0 to 2^63 - 1.")
    limit = max(1, min(limit, SYNC_MAX_LIMIT))
    if not wanted:
        return []
    ids = list(wanted)
    mine: dict[uuid.UUID, int] = {}
    versions: dict[uuid.UUID, int] = {}
    for cid, read_seq, version in ConversationMember.objects.filter(
        user_id=user.id, conversation_id__in=ids
    ).values_list("conversation_id", "read_seq", "conversation__last_version"):
        mine[cid] = read_seq
        versions[cid] = version
    missing = [cid for cid in ids if cid not in mine]
    if missing:
        existing = Conversation.objects.filter(id__in=missing).values_list("id", flat=True)
        raise non_members_error(conversation_ids=missing, existing=existing, many=True)
    read: dict[uuid.UUID, dict[str, int]] = {cid: {} for cid in ids}
    delivered: dict[uuid.UUID, dict[str, int]] = {cid: {} for cid in ids}
    for cid, uid, read_seq, delivered_seq in ConversationMember.objects.filter(conversation_id__in=ids).values_list(
        "conversation_id", "user_id", "read_seq", "delivered_seq"
    ):
        read[cid][str(uid)] = read_seq
        delivered[cid][str(uid)] = delivered_seq
    cond = Q()
    for cid, cursor in wanted.items():
        cond |= Q(conversation_id=cid, seq__gt=cursor.seq)
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
    changed = _changed(wanted)
    unread = unread_counts(user=user, positions=mine)
    entries = []
    for cid in ids:
        entry = {
            "id": str(cid),
            "messages": _serialized(grouped[cid][:limit]),
            "has_more": len(grouped[cid]) > limit,
            "read": read[cid],
            "delivered": delivered[cid],
            "unread_count": unread[cid],
            "version": versions[cid],
        }
        if wanted[cid].version is not None:
            entry["changed"] = _serialized(changed.get(cid, []))
        entries.append(entry)
    return entries


def _counter(value: int) -> bool:
    """A value a seq or version column can hold (larger ones would fail the query, not the request)."""
    return 0 <= value <= COUNTER_MAX


def _changed(cursors: dict[uuid.UUID, Cursor]) -> dict[uuid.UUID, list[Message]]:
    """Per conversation with a version cursor: messages with seq <= its seq edited or deleted after its
    version, in version order; one query (a range scan of the partial index messages_changed_idx)."""
    cond = Q()
    for cid, cursor in cursors.items():
        if cursor.version is not None:
            cond |= Q(conversation_id=cid, version__gt=cursor.version, seq__lte=cursor.seq)
    if not cond:
        return {}
    found: dict[uuid.UUID, list[Message]] = {}
    for m in (
        Message.objects.filter(cond)
        .filter(Q(edited_at__isnull=False) | Q(deleted_at__isnull=False))
        .order_by("conversation_id", "version")
        .prefetch_related("attachments")
    ):
        found.setdefault(m.conversation_id, []).append(m)
    return found
