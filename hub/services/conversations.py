"""Conversations: who talks to whom, blocks, receipts and unread counts (PROTOCOL §2.1).

Unread (ADR 0010): the messages of a conversation with `seq > my read_seq` that I did not send and
that are not deleted. It is counted from the (conversation, seq) unique index, starting at my read
position, so it costs a short index range scan per conversation rather than a stored counter that
every send would have to update."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from django.db import IntegrityError, connection, transaction
from django.db.models import Count, Exists, F, OuterRef, Q
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from hub import events
from hub.errors import BadRequest, HubError, NotFound, PermissionDenied
from hub.models import (
    Block,
    Booking,
    Conversation,
    ConversationKind,
    ConversationMember,
    Message,
    Role,
    User,
)


def conversation_for_booking(*, booking: Booking) -> Conversation:
    """The booking's conversation between its customer and its provider, created when missing."""
    conversation, _ = _conversation_get_or_create(
        {"kind": ConversationKind.BOOKING, "booking": booking}, member_ids=[booking.customer_id, booking.provider_id]
    )
    return conversation


def _conversation_get_or_create(key: dict[str, Any], *, member_ids: list[uuid.UUID]) -> tuple[Conversation, bool]:
    """The conversation with this unique key (booking or pair), created with its two members when missing."""
    lookup = {k: v for k, v in key.items() if k != "kind"}
    existing = Conversation.objects.filter(**lookup).first()
    if existing is not None:
        return existing, False
    try:
        with transaction.atomic():
            conversation = Conversation.objects.create(**key)
            ConversationMember.objects.bulk_create(
                [ConversationMember(conversation=conversation, user_id=uid) for uid in member_ids]
            )
            return conversation, True
    except IntegrityError:  # created concurrently by another request
        return Conversation.objects.get(**lookup), False


# --- who may see what -------------------------------------------------------------------------


def _block_between(a: Any, b: Any) -> Q:
    """The block rule for the ORM: a block either way between `a` and `b` (a list of ids for `b` too)."""
    if isinstance(b, list):
        return Q(blocker_id=a, blocked_id__in=b) | Q(blocked_id=a, blocker_id__in=b)
    return Q(blocker_id=a, blocked_id=b) | Q(blocker_id=b, blocked_id=a)


@dataclass(frozen=True)
class Audience:
    """A conversation's members as seen from one actor: who is in, and who has a block with the actor."""

    members: list[uuid.UUID]
    blocked: frozenset[uuid.UUID]

    def recipients(self, *, actor_id: uuid.UUID, include_actor: bool = True) -> list[uuid.UUID]:
        """Members who may receive the actor's events: no block either way (and the actor if asked)."""
        return [m for m in self.members if m not in self.blocked and (include_actor or m != actor_id)]


def block_between_sql(a: str, b: str, *, alias: str = "b") -> str:
    """The block rule in SQL (one source for every raw statement): a block row either way between `a` and `b`."""
    return (
        f"(({alias}.blocker_id = {a} AND {alias}.blocked_id = {b})"
        f" OR ({alias}.blocker_id = {b} AND {alias}.blocked_id = {a}))"
    )


_AUDIENCE_SQL = (
    "WITH a(conv, actor) AS (VALUES {pairs})"
    " SELECT a.conv, a.actor, m.user_id,"
    f" EXISTS(SELECT 1 FROM {Block._meta.db_table} b WHERE {block_between_sql('m.user_id', 'a.actor')})"
    f" FROM {ConversationMember._meta.db_table} m"
    " JOIN a ON m.conversation_id = a.conv"
)
_UUID_FIELD = ConversationMember._meta.get_field("conversation").target_field  # type: ignore[union-attr]


def _uuid_param(value: uuid.UUID) -> Any:
    return _UUID_FIELD.get_db_prep_value(value, connection)


def as_uuid(value: Any) -> uuid.UUID:
    """A UUID column's value from raw SQL (a UUID on PostgreSQL, hex text on SQLite)."""
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def conversation_audiences(
    *, pairs: Iterable[tuple[uuid.UUID, uuid.UUID]]
) -> dict[tuple[uuid.UUID, uuid.UUID], Audience]:
    """For each (conversation, actor): its members, each flagged when a block stands between them and the actor.

    One query for any number of pairs (a batch of sends asks for all of its conversations at once).
    Raw SQL because this runs on every send, typing and receipt: the ORM spends longer compiling
    the EXISTS with an OR than PostgreSQL spends running it. An unknown conversation has no members."""
    keys = list(dict.fromkeys(pairs))
    if not keys:
        return {}
    members: dict[tuple[uuid.UUID, uuid.UUID], list[uuid.UUID]] = {key: [] for key in keys}
    blocked: dict[tuple[uuid.UUID, uuid.UUID], set[uuid.UUID]] = {key: set() for key in keys}
    params: list[Any] = []
    for conversation_id, actor_id in keys:
        params += [_uuid_param(conversation_id), _uuid_param(actor_id)]
    sql = _AUDIENCE_SQL.replace("{pairs}", ", ".join(["(%s, %s)"] * len(keys)))
    if connection.vendor == "postgresql":  # VALUES rows of parameters are text until cast
        sql = sql.replace("(%s, %s)", "(%s::uuid, %s::uuid)")
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    for raw_conv, raw_actor, raw_user, is_blocked in rows:
        key = (as_uuid(raw_conv), as_uuid(raw_actor))
        user_id = as_uuid(raw_user)
        members[key].append(user_id)
        if is_blocked:
            blocked[key].add(user_id)
    return {key: Audience(members=members[key], blocked=frozenset(blocked[key])) for key in keys}


def conversation_audience(*, conversation_id: uuid.UUID, actor_id: uuid.UUID) -> Audience:
    """One conversation's audience as seen from `actor_id` (see `conversation_audiences`)."""
    return conversation_audiences(pairs=[(conversation_id, actor_id)])[(conversation_id, actor_id)]


def non_member_error(*, conversation_id: uuid.UUID, exists: bool) -> HubError:
    """The one rule for a conversation the user is not in: `not_found` if it does not exist, else `forbidden`."""
    return non_members_error(conversation_ids=[conversation_id], existing={conversation_id} if exists else set())


def non_members_error(
    *, conversation_ids: Sequence[uuid.UUID], existing: Iterable[uuid.UUID], many: bool = False
) -> HubError:
    """`non_member_error` for several conversations at once (`many`: the plural form `sync` answers):
    `not_found` naming the unknown ones if any, else `forbidden`."""
    found = set(existing)
    unknown = [str(c) for c in conversation_ids if c not in found]
    if not many:
        [conversation_id] = conversation_ids
        if unknown:
            return NotFound("No such conversation.", conversation_id=str(conversation_id))
        return PermissionDenied("You are not a member of this conversation.", conversation_id=str(conversation_id))
    if unknown:
        return NotFound("No such conversations.", conversation_ids=unknown)
    return PermissionDenied(
        "You are not a member of these conversations.", conversation_ids=[str(c) for c in conversation_ids]
    )


def refuse_non_member(*, conversation_id: uuid.UUID) -> None:
    """Raise the right error for a user who is not a member: unknown conversation or forbidden."""
    raise non_member_error(
        conversation_id=conversation_id, exists=Conversation.objects.filter(id=conversation_id).exists()
    )


def access_audience(*, user: User, conversation_id: uuid.UUID) -> Audience:
    """The conversation's audience if `user` is a member; `not_found` / `forbidden` otherwise."""
    audience = conversation_audience(conversation_id=conversation_id, actor_id=user.id)
    if user.id not in audience.members:
        refuse_non_member(conversation_id=conversation_id)
    return audience


def access_membership(*, user: User, conversation_id: uuid.UUID) -> ConversationMember:
    """The user's membership (with its conversation); `not_found` / `forbidden` otherwise."""
    membership = (
        ConversationMember.objects.select_related("conversation")
        .filter(conversation_id=conversation_id, user_id=user.id)
        .first()
    )
    if membership is None:
        refuse_non_member(conversation_id=conversation_id)
    assert membership is not None
    return membership


def access_conversation(*, user: User, conversation_id: uuid.UUID) -> Conversation:
    """A conversation the user is a member of."""
    return access_membership(user=user, conversation_id=conversation_id).conversation


# --- opening ------------------------------------------------------------------------------------


def pair_key(a: uuid.UUID, b: uuid.UUID) -> str:
    first, second = sorted([str(a), str(b)])
    return f"{first}:{second}"


def _may_talk(user: User, other: User) -> bool:
    """Direct conversations: a customer with a provider; an admin with anyone (ADR 0010)."""
    if user.is_admin or other.is_admin:
        return True
    return {user.role, other.role} == {Role.CUSTOMER, Role.PROVIDER}


def conversation_open(
    *, user: User, participant_id: uuid.UUID, booking_id: uuid.UUID | None = None
) -> tuple[Conversation, bool]:
    """Get or create THE conversation with `participant_id` (or for a booking); (conv, created)."""
    participant = User.objects.filter(id=participant_id, is_active=True).first()
    if participant is None:
        raise NotFound("No such user.", participant_id=str(participant_id))
    if participant.id == user.id:
        raise BadRequest("You cannot open a conversation with yourself.")
    if booking_id is not None:
        booking = Booking.objects.filter(id=booking_id).first()
        if booking is None:
            raise NotFound("No such booking.", booking_id=str(booking_id))
        parties = {booking.customer_id, booking.provider_id}
        if user.id not in parties and not user.is_admin:
            raise PermissionDenied("Only the booking's customer and provider (or an admin) may open its conversation.")
        if participant.id not in parties:
            raise BadRequest("participant_id is not a party to this booking.", participant_id=str(participant_id))
        return _conversation_get_or_create(
            {"kind": ConversationKind.BOOKING, "booking": booking},
            member_ids=[booking.customer_id, booking.provider_id],
        )
    if not _may_talk(user, participant):
        raise PermissionDenied("Conversations are between a customer and a provider (or with an admin).")
    return _conversation_get_or_create(
        {"kind": ConversationKind.DIRECT, "pair_key": pair_key(user.id, participant.id)},
        member_ids=[user.id, participant.id],
    )


# --- reading: lists, counts ---------------------------------------------------------------------


def _unread_filter(user_id: uuid.UUID) -> Q:
    return Q(deleted_at__isnull=True) & ~Q(sender_id=user_id)


def unread_count(*, user: User, conversation_id: uuid.UUID, read_seq: int) -> int:
    return (
        Message.objects.filter(conversation_id=conversation_id, seq__gt=read_seq)
        .filter(_unread_filter(user.id))
        .count()
    )


def unread_counts(*, user: User, positions: dict[uuid.UUID, int]) -> dict[uuid.UUID, int]:
    """Unread per conversation, for conversations given with the user's read_seq; one query."""
    if not positions:
        return {}
    cond = Q()
    for conversation_id, read_seq in positions.items():
        cond |= Q(conversation_id=conversation_id, seq__gt=read_seq)
    rows = (
        Message.objects.filter(cond)
        .filter(_unread_filter(user.id))
        .values("conversation_id")
        .annotate(n=Count("id"))
        .values_list("conversation_id", "n")
    )
    counts = dict.fromkeys(positions, 0)
    counts.update(dict(rows))
    return counts


def unread_total(*, user: User) -> int:
    """Unread messages over all the user's conversations; one query."""
    return (
        Message.objects.filter(
            conversation__memberships__user_id=user.id,
            seq__gt=F("conversation__memberships__read_seq"),
        )
        .filter(_unread_filter(user.id))
        .count()
    )


@dataclass
class ConversationView:
    """What a conversation list entry shows; built with a fixed number of queries per page."""

    conversation: Conversation
    membership: ConversationMember
    members: list[User]
    last_message: Message | None
    unread_count: int


def _encode_cursor(*parts: str) -> str:
    return base64.urlsafe_b64encode("|".join(parts).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, n: int) -> list[str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest("Invalid cursor.") from exc
    parts = raw.split("|")
    if len(parts) != n:
        raise BadRequest("Invalid cursor.")
    return parts


def conversation_views(*, user: User, memberships: Sequence[ConversationMember]) -> list[ConversationView]:
    """List entries (members, last message, unread) for memberships with their conversations loaded."""
    if not memberships:
        return []
    ids = [m.conversation_id for m in memberships]
    members: dict[uuid.UUID, list[User]] = {cid: [] for cid in ids}
    for row in (
        ConversationMember.objects.filter(conversation_id__in=ids).select_related("user").order_by("joined_at", "id")
    ):
        members[row.conversation_id].append(row.user)
    last_cond = Q()
    for m in memberships:
        if m.conversation.last_seq:
            last_cond |= Q(conversation_id=m.conversation_id, seq=m.conversation.last_seq)
    last: dict[uuid.UUID, Message] = {}
    if last_cond:
        for msg in Message.objects.filter(last_cond).prefetch_related("attachments"):
            last[msg.conversation_id] = msg
    counts = unread_counts(user=user, positions={m.conversation_id: m.read_seq for m in memberships})
    return [
        ConversationView(
            conversation=m.conversation,
            membership=m,
            members=members[m.conversation_id],
            last_message=last.get(m.conversation_id),
            unread_count=counts[m.conversation_id],
        )
        for m in memberships
    ]


def conversation_list(
    *, user: User, cursor: str | None = None, limit: int = 50
) -> tuple[list[ConversationView], str | None]:
    """The user's conversations, most recently active first; (page, next cursor)."""
    qs = (
        ConversationMember.objects.filter(user_id=user.id)
        .select_related("conversation")
        .annotate(activity=Coalesce("conversation__last_message_at", "conversation__created_at"))
        .order_by("-activity", "-conversation_id")
    )
    if cursor:
        stamp, conv_id = _decode_cursor(cursor, 2)
        at = parse_datetime(stamp)
        try:
            after_id = uuid.UUID(conv_id)
        except ValueError as exc:
            raise BadRequest("Invalid cursor.") from exc
        if at is None:
            raise BadRequest("Invalid cursor.")
        qs = qs.filter(Q(activity__lt=at) | Q(activity=at, conversation_id__lt=after_id))
    rows = list(qs[: limit + 1])
    page, more = rows[:limit], len(rows) > limit
    next_cursor = None
    if more:
        tail = page[-1]
        next_cursor = _encode_cursor(tail.activity.isoformat(), str(tail.conversation_id))  # type: ignore[attr-defined]
    return conversation_views(user=user, memberships=page), next_cursor


def conversation_view(*, user: User, conversation_id: uuid.UUID) -> ConversationView:
    membership = access_membership(user=user, conversation_id=conversation_id)
    return conversation_views(user=user, memberships=[membership])[0]


# --- receipts -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceiptResult:
    read_seq: int
    delivered_seq: int
    unread_count: int


def _advance(*, user: User, conversation_id: uuid.UUID, seq: int, read: bool) -> tuple[ConversationMember, bool, bool]:
    """Move read (and delivered) or only delivered forward to min(seq, last_seq); never backwards."""
    if seq < 0:
        raise BadRequest("seq must be >= 0.")
    with transaction.atomic():
        membership = (
            ConversationMember.objects.select_for_update(of=("self",))
            .select_related("conversation")
            .filter(conversation_id=conversation_id, user_id=user.id)
            .first()
        )
        if membership is None:
            refuse_non_member(conversation_id=conversation_id)
        assert membership is not None
        target = min(seq, membership.conversation.last_seq)
        read_moved = read and target > membership.read_seq
        delivered_moved = target > membership.delivered_seq
        fields = []
        if read_moved:
            membership.read_seq = target
            fields.append("read_seq")
        if delivered_moved:
            membership.delivered_seq = target
            fields.append("delivered_seq")
        if fields:
            membership.save(update_fields=fields)
    return membership, read_moved, delivered_moved


def _receipt(
    kind: type[events.ReceiptRead | events.ReceiptDelivered], *, user: User, conversation_id: uuid.UUID, seq: int
) -> None:
    audience = conversation_audience(conversation_id=conversation_id, actor_id=user.id)
    receipt = events.Receipt(conversation_id=conversation_id, user_id=user.id, seq=seq, at=timezone.now())
    events.publish(kind(data=receipt), to=audience.recipients(actor_id=user.id))


def conversation_read(*, user: User, conversation_id: uuid.UUID, seq: int) -> ReceiptResult:
    """Read up to and including `seq` (clamped to the last message); reading implies delivered."""
    membership, read_moved, _ = _advance(user=user, conversation_id=conversation_id, seq=seq, read=True)
    if read_moved:
        # One event: a read receipt also tells clients the messages were delivered (ADR 0010).
        _receipt(events.ReceiptRead, user=user, conversation_id=conversation_id, seq=membership.read_seq)
    return ReceiptResult(
        read_seq=membership.read_seq,
        delivered_seq=membership.delivered_seq,
        unread_count=unread_count(user=user, conversation_id=conversation_id, read_seq=membership.read_seq),
    )


def conversation_delivered(*, user: User, conversation_id: uuid.UUID, seq: int) -> ReceiptResult:
    """Delivered up to and including `seq` (clamped); never backwards."""
    membership, _, moved = _advance(user=user, conversation_id=conversation_id, seq=seq, read=False)
    if moved:
        _receipt(events.ReceiptDelivered, user=user, conversation_id=conversation_id, seq=membership.delivered_seq)
    return ReceiptResult(read_seq=membership.read_seq, delivered_seq=membership.delivered_seq, unread_count=-1)


# --- typing -------------------------------------------------------------------------------------


def typing_notify(
    *, user: User, conversation_id: uuid.UUID, state: Literal["start", "stop"], expires_in_s: int
) -> None:
    """Tell the other members' devices; nothing is stored."""
    audience = access_audience(user=user, conversation_id=conversation_id)
    to = audience.recipients(actor_id=user.id, include_actor=False)
    if to:
        data = events.TypingData(
            conversation_id=conversation_id,
            user_id=user.id,
            state=state,
            expires_in_s=expires_in_s if state == "start" else 0,
        )
        events.publish(events.Typing(data=data), to=to)


# --- blocks -------------------------------------------------------------------------------------


def block_create(*, user: User, user_id: uuid.UUID) -> tuple[Block, bool]:
    """Block a user (idempotent); (block, created)."""
    if user_id == user.id:
        raise BadRequest("You cannot block yourself.")
    if not User.objects.filter(id=user_id).exists():
        raise NotFound("No such user.", user_id=str(user_id))
    try:
        with transaction.atomic():
            return Block.objects.create(blocker_id=user.id, blocked_id=user_id), True
    except IntegrityError:
        return Block.objects.get(blocker_id=user.id, blocked_id=user_id), False


def block_delete(*, user: User, user_id: uuid.UUID) -> None:
    """Unblock; `not_found` when there was no block."""
    deleted, _ = Block.objects.filter(blocker_id=user.id, blocked_id=user_id).delete()
    if not deleted:
        raise NotFound("You have not blocked this user.", user_id=str(user_id))


def block_list(*, user: User) -> list[Block]:
    return list(Block.objects.filter(blocker_id=user.id).select_related("blocked").order_by("-created_at"))


def blocked_either_way(*, user_id: uuid.UUID, others: Iterable[uuid.UUID]) -> set[uuid.UUID]:
    """Those of `others` with a block between them and `user_id`, in either direction; one query."""
    others = list(others)
    if not others:
        return set()
    rows = Block.objects.filter(_block_between(user_id, others)).values_list("blocker_id", "blocked_id")
    return {blocked if blocker == user_id else blocker for blocker, blocked in rows}


def conversation_peers(*, user_id: uuid.UUID) -> list[uuid.UUID]:
    """Users who share at least one conversation with `user_id` and have no block with them; one query."""
    mine = ConversationMember.objects.filter(user_id=user_id).values("conversation_id")
    blocks = Block.objects.filter(_block_between(OuterRef("user_id"), user_id))
    return list(
        ConversationMember.objects.filter(conversation_id__in=mine)
        .exclude(user_id=user_id)
        .annotate(blocked=Exists(blocks))
        .filter(blocked=False)
        .values_list("user_id", flat=True)
        .distinct()
    )


def conversation_peers_many(*, user_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, list[uuid.UUID]]:
    """`conversation_peers` of many users at once (presence in a reconnect storm): two queries for any number."""
    peers: dict[uuid.UUID, set[uuid.UUID]] = {user_id: set() for user_id in user_ids}
    if not peers:
        return {}
    ids = list(peers)
    mine = ConversationMember.objects.filter(user_id__in=ids).values("conversation_id")
    members: dict[uuid.UUID, list[uuid.UUID]] = {}
    for conversation_id, member_id in ConversationMember.objects.filter(conversation_id__in=mine).values_list(
        "conversation_id", "user_id"
    ):
        members.setdefault(conversation_id, []).append(member_id)
    for group in members.values():
        for member_id in group:
            if member_id in peers:
                peers[member_id].update(other for other in group if other != member_id)
    blocks = Block.objects.filter(Q(blocker_id__in=ids) | Q(blocked_id__in=ids)).values_list("blocker_id", "blocked_id")
    for blocker, blocked in blocks:
        if blocker in peers:
            peers[blocker].discard(blocked)
        if blocked in peers:
            peers[blocked].discard(blocker)
    return {user_id: list(found) for user_id, found in peers.items()}


def shares_conversation(*, user_id: uuid.UUID, others: Iterable[uuid.UUID]) -> set[uuid.UUID]:
    """Those of `others` who share a conversation with `user_id`; one query."""
    mine = ConversationMember.objects.filter(user_id=user_id).values("conversation_id")
    return set(
        ConversationMember.objects.filter(conversation_id__in=mine, user_id__in=list(others))
        .values_list("user_id", flat=True)
        .distinct()
    )
