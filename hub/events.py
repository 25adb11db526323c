"""The event catalogue and the one publish call (PROTOCOL §2; ADR 0055).

Every frame the hub sends is defined here as a pydantic model, in the manner of Zulip's
`event_types.py`: a frame model with `type: Literal[...]` and a `data` model, nested models for
what it carries (Message, Booking, …). Frames are built from these models, the AsyncAPI document
(`GET /api/asyncapi.json`, hub.api.asyncapi) is generated from them, and `publish` refuses an
event that is not in `EVENTS`. Services publish with:

- `publish(event, to=user_ids)` from sync code: sent once the current transaction commits;
- `await publish_async([(event, user_ids), …])` from async code: many events, one pipeline;
- `await publish_to_channel(event, channel_name)`: exactly one connection.

With `HUB_EVENTS_VALIDATE` on (the test suite turns it on), every published frame is round-tripped
through JSON and validated against its model at the call, so a bad payload fails where it was
made. Production builds the frame from the already validated model and does not check it again."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from django.conf import settings
from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, TypeAdapter, WithJsonSchema

from hub import realtime
from hub.serialize import iso

log = logging.getLogger(__name__)


class Schema(BaseModel):
    """Base of every outgoing shape: unknown fields are refused, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _iso(value: datetime) -> str:
    return iso(value) or ""


# On the wire: RFC 3339 UTC with milliseconds and `Z` (hub.serialize.iso), the one timestamp format.
Timestamp = Annotated[
    datetime,
    PlainSerializer(_iso, return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
Seq = Annotated[int, Field(ge=0)]
UserId = uuid.UUID
ConversationId = uuid.UUID

# --- what events carry ---------------------------------------------------------------------------


class UserPublic(Schema):
    id: UserId
    display_name: str
    role: Literal["customer", "provider", "admin", "super_admin"]


class Attachment(Schema):
    id: uuid.UUID
    url: str
    name: str
    content_type: str
    size: Annotated[int, Field(ge=0)]


class Message(Schema):
    """A message as every client sees it; `version` grows with every create, edit and delete."""

    id: uuid.UUID
    conversation_id: ConversationId
    seq: Annotated[int, Field(ge=1)]
    version: Annotated[int, Field(ge=1)]
    sender_id: UserId | None
    client_id: str | None
    kind: Literal["text", "image", "file", "system", "call"]
    body: str
    data: dict[str, Any] = Field(description="Structured content of system messages (e.g. a booking's move).")
    attachments: list[Attachment]
    created_at: Timestamp
    edited_at: Timestamp | None
    deleted: bool


BookingStatusName = Literal["pending", "confirmed", "declined", "cancelled", "en_route", "in_progress", "completed"]


class LiveLocation(Schema):
    lat: float
    lng: float
    accuracy_m: float | None
    at: Timestamp


class Booking(Schema):
    id: uuid.UUID
    customer_id: UserId
    provider_id: UserId
    service_id: uuid.UUID | None
    status: BookingStatusName
    scheduled_at: Timestamp
    duration_minutes: int
    location: dict[str, Any]
    notes: str
    pricing: dict[str, Any]
    conversation_id: ConversationId | None
    live_location: LiveLocation | None = Field(description="The provider's last fix while en_route; else null.")


class Empty(Schema):
    pass


# --- events: one frame model per type -----------------------------------------------------------


class Event(Schema):
    """An event frame: `{"type": …, "data": …}`, no `ref`. Subclasses narrow both."""

    model_config = ConfigDict(json_schema_serialization_defaults_required=True)  # both always sent

    type: str
    data: Schema

    def frame(self) -> dict[str, Any]:
        """The frame as JSON-ready values (UUIDs and timestamps as strings)."""
        return self.model_dump(mode="json")

    @classmethod
    def trusted(cls, data: dict[str, Any]) -> Trusted:
        """This event with `data` already in its wire form (from hub.serialize), for hot paths: not
        validated in production (about 10 µs saved per event, ADR 0055); in tests it is checked at
        the call to be exactly what the model would send."""
        return Trusted(cls, data)


@dataclass(frozen=True, slots=True)
class Trusted:
    """An event of the catalogue whose `data` is already JSON-ready (`Event.trusted`)."""

    event: type[Event]
    data: dict[str, Any]


class MessageData(Schema):
    message: Message


class MessageCreated(Event):
    """To every device of every member (the sender's included)."""

    type: Literal["message.created"] = "message.created"
    data: MessageData


class MessageUpdated(Event):
    """An edit, to the members."""

    type: Literal["message.updated"] = "message.updated"
    data: MessageData


class MessageDeletedData(Schema):
    conversation_id: ConversationId
    message_id: uuid.UUID
    seq: Annotated[int, Field(ge=1)]
    version: Annotated[int, Field(ge=1)]


class MessageDeleted(Event):
    """A delete, to the members: body and attachments are gone, the seq stays."""

    type: Literal["message.deleted"] = "message.deleted"
    data: MessageDeletedData


class Receipt(Schema):
    conversation_id: ConversationId
    user_id: UserId
    seq: Seq
    at: Timestamp


class ReceiptRead(Event):
    """`user_id` read up to and including `seq` (which also means delivered up to it), to the members."""

    type: Literal["receipt.read"] = "receipt.read"
    data: Receipt


class ReceiptDelivered(Event):
    """`user_id`'s devices got the messages up to and including `seq`, to the members."""

    type: Literal["receipt.delivered"] = "receipt.delivered"
    data: Receipt


class TypingData(Schema):
    conversation_id: ConversationId
    user_id: UserId
    state: Literal["start", "stop"]
    expires_in_s: Annotated[int, Field(ge=0, description="Show the indicator this long unless renewed; 0 on stop.")]


class Typing(Event):
    """To the other members' devices; never stored."""

    type: Literal["typing"] = "typing"
    data: TypingData


class PresenceData(Schema):
    user_id: UserId
    status: Literal["online", "offline"]
    last_seen_at: Timestamp | None


class Presence(Event):
    """A user's first device connected or last one left, to the users who share a conversation with them."""

    type: Literal["presence"] = "presence"
    data: PresenceData


class BookingStatusChangedData(Schema):
    booking: Booking
    previous_status: BookingStatusName
    changed_by: UserId | None = Field(description="Who moved it; null for the system (domain events).")
    reason: str | None
    at: Timestamp


class BookingStatusChanged(Event):
    """To the customer's and the provider's devices."""

    type: Literal["booking.status_changed"] = "booking.status_changed"
    data: BookingStatusChangedData


class BookingLocationData(Schema):
    booking_id: uuid.UUID
    lat: float
    lng: float
    accuracy_m: float | None
    at: Timestamp


class BookingLocation(Event):
    """The provider's live fix while en route, to the customer's devices."""

    type: Literal["booking.location"] = "booking.location"
    data: BookingLocationData


class Resync(Event):
    """This connection may have missed events: run `sync` with your cursors."""

    type: Literal["resync"] = "resync"
    data: Empty = Empty()


# Every event `publish` may send. A feature adds its event types here, and nowhere else.
EVENTS: tuple[type[Event], ...] = (
    MessageCreated,
    MessageUpdated,
    MessageDeleted,
    ReceiptRead,
    ReceiptDelivered,
    Typing,
    Presence,
    BookingStatusChanged,
    BookingLocation,
    Resync,
)
_TYPE_OF: dict[type[Event], str] = {cls: cls.model_fields["type"].default for cls in EVENTS}


# --- the connection's own frames: hello, reply, error -------------------------------------------


class HelloData(Schema):
    user: UserPublic
    connection_id: str
    server_time: Timestamp
    heartbeat_s: int


class Hello(Event):
    """The first frame on every accepted connection."""

    type: Literal["hello"] = "hello"
    data: HelloData


_TYPE_OF[Hello] = "hello"  # not published through the router, but built (and checked) like every event


ErrorCode = Literal[
    "bad_request", "unauthorized", "forbidden", "not_found", "conflict", "rate_limited", "too_large", "busy", "internal"
]


class FieldError(Schema):
    field: str
    message: str


class ErrorData(BaseModel):
    """`code` and `message`, plus details that depend on the error (open: more may be added)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    code: ErrorCode
    message: str
    retry_after_s: float | None = Field(default=None, description="With rate_limited: when to try again.")
    errors: list[FieldError] | None = Field(default=None, description="With bad_request: what was wrong, by field.")


class ErrorFrame(Schema):
    """The answer to a request that failed, or to a frame that was not a request (then without `ref`)."""

    type: Literal["error"]
    ref: str | None = None
    data: ErrorData


# --- replies: the `data` of the `reply` to each request type ------------------------------------


class Pong(Schema):
    pong: Timestamp


class MessageReply(Schema):
    message: Message


class ReadReply(Schema):
    conversation_id: ConversationId
    read_seq: Seq
    unread_count: Annotated[int, Field(ge=0)]


class DeliveredReply(Schema):
    conversation_id: ConversationId
    delivered_seq: Seq


class SyncConversation(Schema):
    id: ConversationId
    messages: list[Message]
    has_more: bool
    read: dict[UserId, Seq]
    delivered: dict[UserId, Seq]
    unread_count: Annotated[int, Field(ge=0)]
    version: Annotated[int, Field(ge=0, description="The conversation's current version: the next cursor's `version`.")]
    changed: list[Message] | None = Field(
        default=None,
        description="With a `{seq, version}` cursor only: messages with seq <= its seq edited or deleted after its"
        " version, oldest change first (deleted ones with `deleted: true`, no body, no attachments).",
    )


class SyncReply(Schema):
    conversations: list[SyncConversation]


class PresenceState(Schema):
    status: Literal["online", "offline"]
    last_seen_at: Timestamp | None


class PresenceReply(Schema):
    presence: dict[UserId, PresenceState]


class BookingReply(Schema):
    booking: Booking


class BookingLocationReply(Schema):
    throttled: bool = Field(default=False, description="True when this fix was dropped: one per interval is kept.")
    retry_after_s: float = Field(default=0, ge=0)


# The reply `data` of each request type (the handlers are in consumers/handlers/). A request type
# without an entry is documented with an open object; tests require one for every route.
REPLIES: dict[str, type[BaseModel]] = {
    "ping": Pong,
    "message.send": MessageReply,
    "message.edit": MessageReply,
    "message.delete": MessageReply,
    "conversation.read": ReadReply,
    "conversation.delivered": DeliveredReply,
    "typing": Empty,
    "sync": SyncReply,
    "presence.query": PresenceReply,
    "booking.status": BookingReply,
    "booking.location": BookingLocationReply,
}

# Any frame the hub sends, told apart by `type` (tests parse what a device received with it).
_ANY_FRAME: TypeAdapter[Any] = TypeAdapter(
    Annotated[
        MessageCreated
        | MessageUpdated
        | MessageDeleted
        | ReceiptRead
        | ReceiptDelivered
        | Typing
        | Presence
        | BookingStatusChanged
        | BookingLocation
        | Resync
        | Hello
        | ErrorFrame,
        Field(discriminator="type"),
    ]
)


def parse_frame(frame: dict[str, Any] | str | bytes) -> BaseModel:
    """A frame the hub sent (event, hello or error; not a reply) back as its model; ValidationError if it is not one."""
    if isinstance(frame, dict):
        frame = orjson.dumps(frame)
    return _ANY_FRAME.validate_json(frame)  # type: ignore[no-any-return]


# --- publishing ----------------------------------------------------------------------------------

Recipients = Iterable[uuid.UUID | str]


def _checked(event: Event | Trusted) -> tuple[str, dict[str, Any]]:
    """The event's (type, data); refused when not in the catalogue, and (tests) round-tripped through JSON."""
    if isinstance(event, Trusted):
        model, data = event.event, event.data
    else:
        model, data = type(event), event.data.model_dump(mode="json")
    frame_type = _TYPE_OF.get(model)
    if frame_type is None:
        raise TypeError(f"{model.__name__} is not an event of the catalogue (hub.events.EVENTS)")
    if settings.HUB_EVENTS_VALIDATE:
        frame = {"type": frame_type, "data": data}
        again = model.model_validate_json(orjson.dumps(frame)).frame()
        if again != frame:
            raise ValueError(f"{frame_type} does not survive a JSON round trip: {frame} became {again}")
    return frame_type, data


def encoded(event: Event | Trusted) -> str:
    """The event's frame as JSON text (checked, see `_checked`), encoded once for every recipient."""
    return realtime.encode_frame(*_checked(event))


def publish(event: Event | Trusted, *, to: Recipients) -> None:
    """From sync code: send to every device of the given users once the current transaction commits
    (at once outside one). Nothing rolled back is announced; a failed send is logged, not raised
    (the state is stored: devices recover it through `sync`)."""
    realtime.publish_frames_on_commit([(encoded(event), list(to), None)])


async def publish_async(items: Iterable[tuple[Event | Trusted, Recipients]]) -> None:
    """From async code, outside any transaction: several events at once, in one pipeline, in order."""
    frames = [(encoded(event), to, None) for event, to in items]  # all checked before any is sent
    if frames:
        await realtime.publish_frames(frames)


async def publish_to_channel(event: Event | Trusted, channel_name: str) -> None:
    """Send one event to exactly one connection (its `channel_name`), in whichever web process holds it."""
    await realtime.publish_to_connection(channel_name, encoded(event))
