"""Zulip's verify_action for the hub: the events a device gets, applied to what it had, equal a fresh fetch.

Each case: every device fetches its state (`sync`, `GET /api/bookings/{id}`, `presence.query`), the
action runs, the events it published are captured (after commit), each is validated against the
catalogue, each device applies the ones addressed to its user, and the result must equal the state
that device fetches fresh. An event a client would miss, or one that says something else than the
database, fails here. A new event type adds its applier to APPLY; a new case is a few lines."""

from __future__ import annotations

import copy
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async

from hub import events, serialize
from hub.models import Conversation, Message, User
from hub.services import conversations as conv_services
from hub.services import messages as msg_services
from hub.services import presence as presence_services
from hub.services.bookings import booking_detail, booking_location_update, booking_set_status
from tests.factories import booking_with_conversation
from tests.published import Sent, capture_published

State = dict[str, Any]


@dataclass
class Device:
    """One device of `user` and what it keeps: some conversations, bookings and people's presence."""

    user: User
    conversations: list[uuid.UUID] = field(default_factory=list)
    bookings: list[uuid.UUID] = field(default_factory=list)
    presence_of: list[uuid.UUID] = field(default_factory=list)

    @property
    def me(self) -> str:
        return str(self.user.id)


def _presence_view(entry: dict[str, Any]) -> dict[str, Any]:
    # An online user's last_seen_at is "now" at the query: only the status is comparable.
    return entry if entry["status"] == "offline" else {"status": "online"}


def fetch(device: Device) -> State:
    """What the device gets by asking: sync from the start, each booking, presence."""
    synced = msg_services.sync(user=device.user, cursors=dict.fromkeys(device.conversations, 0), limit=500)
    presence = async_to_sync(presence_services.presence_query)(user=device.user, user_ids=device.presence_of)
    return {
        "conversations": {c["id"]: c for c in synced},
        "bookings": {
            str(b): serialize.booking(booking_detail(user=device.user, booking_id=b)) for b in device.bookings
        },
        "presence": {user_id: _presence_view(entry) for user_id, entry in presence.items()},
    }


# --- appliers: what a client does with each event ------------------------------------------------


def _unread(conversation: dict[str, Any], me: str) -> int:
    read = conversation["read"].get(me, 0)
    return sum(1 for m in conversation["messages"] if m["seq"] > read and m["sender_id"] != me and not m["deleted"])


def _message_created(state: State, data: dict[str, Any], me: str) -> None:
    conversation = state["conversations"].get(data["message"]["conversation_id"])
    if conversation is not None:
        conversation["messages"].append(data["message"])
        conversation["version"] = max(conversation["version"], data["message"]["version"])
        conversation["unread_count"] = _unread(conversation, me)


def _message_updated(state: State, data: dict[str, Any], me: str) -> None:
    conversation = state["conversations"].get(data["message"]["conversation_id"])
    if conversation is not None:
        conversation["messages"] = [
            data["message"] if m["id"] == data["message"]["id"] else m for m in conversation["messages"]
        ]
        conversation["version"] = max(conversation["version"], data["message"]["version"])


def _message_deleted(state: State, data: dict[str, Any], me: str) -> None:
    conversation = state["conversations"].get(data["conversation_id"])
    if conversation is None:
        return
    for m in conversation["messages"]:
        if m["id"] == data["message_id"]:
            m.update(body="", data={}, attachments=[], deleted=True, version=data["version"])
    conversation["version"] = max(conversation["version"], data["version"])
    conversation["unread_count"] = _unread(conversation, me)


def _receipt_read(state: State, data: dict[str, Any], me: str) -> None:
    conversation = state["conversations"].get(data["conversation_id"])
    if conversation is not None:
        conversation["read"][data["user_id"]] = data["seq"]
        delivered = conversation["delivered"]
        delivered[data["user_id"]] = max(delivered.get(data["user_id"], 0), data["seq"])  # read implies delivered
        conversation["unread_count"] = _unread(conversation, me)


def _receipt_delivered(state: State, data: dict[str, Any], me: str) -> None:
    conversation = state["conversations"].get(data["conversation_id"])
    if conversation is not None:
        conversation["delivered"][data["user_id"]] = data["seq"]


def _typing(state: State, data: dict[str, Any], me: str) -> None:
    """An indicator for a few seconds: nothing a fetch returns."""


def _presence(state: State, data: dict[str, Any], me: str) -> None:
    if data["user_id"] in state["presence"]:
        state["presence"][data["user_id"]] = _presence_view(
            {"status": data["status"], "last_seen_at": data["last_seen_at"]}
        )


def _booking_status_changed(state: State, data: dict[str, Any], me: str) -> None:
    if data["booking"]["id"] in state["bookings"]:
        state["bookings"][data["booking"]["id"]] = data["booking"]


def _booking_location(state: State, data: dict[str, Any], me: str) -> None:
    booking = state["bookings"].get(data["booking_id"])
    if booking is not None:
        booking["live_location"] = {k: data[k] for k in ("lat", "lng", "accuracy_m", "at")}


APPLY: dict[str, Callable[[State, dict[str, Any], str], None]] = {
    "message.created": _message_created,
    "message.updated": _message_updated,
    "message.deleted": _message_deleted,
    "receipt.read": _receipt_read,
    "receipt.delivered": _receipt_delivered,
    "typing": _typing,
    "presence": _presence,
    "booking.status_changed": _booking_status_changed,
    "booking.location": _booking_location,
}


def test_every_event_but_resync_has_an_applier() -> None:
    # resync changes nothing itself: it asks the client to run `sync`.
    assert sorted(APPLY) == sorted(str(m.model_fields["type"].default) for m in events.EVENTS if m is not events.Resync)


# --- the check -----------------------------------------------------------------------------------


def check_schema(sent: Sent) -> None:
    """The event as devices get it is exactly what the catalogue's model of its type says."""
    parsed = events.parse_frame(sent.frame)
    assert parsed.model_dump(mode="json") == sent.frame


def verify_action(
    action: Callable[[], Any], devices: list[Device], *, expected: list[tuple[str, list[str]]], settle_s: float = 0
) -> None:
    """Run `action`; its events are `expected` ((type, recipients), events in order, recipients as a set),
    valid, and bring every device to what it would fetch fresh. `settle_s`: also wait for what background
    tasks publish (presence's refresh loop may be the one that announces a connect)."""
    before = [fetch(device) for device in devices]
    with capture_published() as sent:
        action()
        time.sleep(settle_s)
    assert [(s.type, sorted(s.to)) for s in sent] == [(t, sorted(to)) for t, to in expected]
    for s in sent:
        check_schema(s)
    for device, state in zip(devices, before, strict=True):
        applied = copy.deepcopy(state)
        for s in sent:
            if device.me in s.to:
                APPLY[s.type](applied, s.data, device.me)
        assert applied == fetch(device), f"{device.user} after {[s.type for s in sent]}"


# --- cases ---------------------------------------------------------------------------------------


@pytest.fixture
def pair() -> tuple[Any, Conversation, User, User]:
    booking, conversation = booking_with_conversation(status="confirmed")
    customer, provider = booking.customer, booking.provider.user
    for seq in (1, 2, 3):
        Message.objects.create(conversation=conversation, seq=seq, sender=provider, client_id=f"m{seq}", body=f"m{seq}")
    Conversation.objects.filter(id=conversation.id).update(last_seq=3)
    return booking, conversation, customer, provider


def devices_of(booking: Any, conversation: Conversation, *users: User) -> list[Device]:
    return [Device(u, conversations=[conversation.id], bookings=[booking.id]) for u in users]


@pytest.mark.django_db
def test_booking_status(pair: Any) -> None:
    booking, conversation, customer, provider = pair
    both = [str(customer.id), str(provider.id)]
    for status, actor in [("en_route", provider), ("in_progress", provider), ("completed", provider)]:
        verify_action(
            lambda s=status, a=actor: booking_set_status(actor=a, booking_id=booking.id, status=s, reason="ok"),
            devices_of(booking, conversation, customer, provider),
            expected=[("message.created", both), ("booking.status_changed", both)],
        )


@pytest.mark.django_db
def test_booking_status_by_the_system(pair: Any) -> None:
    booking, conversation, customer, provider = pair
    verify_action(
        lambda: booking_set_status(actor=None, booking_id=booking.id, status="cancelled", source="event"),
        devices_of(booking, conversation, customer, provider),
        expected=[
            ("message.created", [str(customer.id), str(provider.id)]),
            ("booking.status_changed", [str(customer.id), str(provider.id)]),
        ],
    )


@pytest.mark.django_db
def test_booking_location(pair: Any) -> None:
    booking, _conversation, customer, provider = pair
    booking_set_status(actor=provider, booking_id=booking.id, status="en_route")
    verify_action(
        lambda: booking_location_update(actor=provider, booking_id=booking.id, lat=45.5, lng=-73.6, accuracy_m=8),
        [Device(customer, bookings=[booking.id])],  # the provider knows the fix it sent
        expected=[("booking.location", [str(customer.id)])],
    )


@pytest.mark.django_db
def test_receipts(pair: Any) -> None:
    booking, conversation, customer, provider = pair
    devices = devices_of(booking, conversation, customer, provider)
    both = [str(customer.id), str(provider.id)]
    read = conv_services.conversation_read
    delivered = conv_services.conversation_delivered
    verify_action(
        lambda: delivered(user=customer, conversation_id=conversation.id, seq=1),
        devices,
        expected=[("receipt.delivered", both)],
    )
    verify_action(
        lambda: read(user=customer, conversation_id=conversation.id, seq=2),
        devices,  # delivered too
        expected=[("receipt.read", both)],
    )
    verify_action(
        lambda: delivered(user=customer, conversation_id=conversation.id, seq=9),
        devices,  # clamped
        expected=[("receipt.delivered", both)],
    )
    verify_action(
        lambda: read(user=customer, conversation_id=conversation.id, seq=1),
        devices,  # never back
        expected=[],
    )
    verify_action(
        lambda: read(user=provider, conversation_id=conversation.id, seq=3), devices, expected=[("receipt.read", both)]
    )


@pytest.mark.django_db
def test_typing(pair: Any) -> None:
    booking, conversation, customer, provider = pair
    for state in ("start", "stop"):
        verify_action(
            lambda s=state: conv_services.typing_notify(
                user=customer, conversation_id=conversation.id, state=s, expires_in_s=8
            ),
            devices_of(booking, conversation, customer, provider),
            expected=[("typing", [str(provider.id)])],  # the other members only
        )


@pytest.mark.django_db
def test_messages(pair: Any) -> None:
    booking, conversation, customer, provider = pair
    devices = devices_of(booking, conversation, customer, provider)
    both = [str(customer.id), str(provider.id)]
    sent: list[Any] = []
    verify_action(
        lambda: sent.append(
            msg_services.message_send(sender=customer, conversation_id=conversation.id, client_id="x", body="hello")
        ),
        devices,
        expected=[("message.created", both)],
    )
    message_id = sent[0].message.id
    verify_action(
        lambda: msg_services.message_edit(user=customer, message_id=message_id, body="hello!"),
        devices,
        expected=[("message.updated", both)],
    )
    verify_action(
        lambda: msg_services.message_delete(user=customer, message_id=message_id),
        devices,
        expected=[("message.deleted", both)],
    )


@pytest.mark.django_db(transaction=True)
async def test_presence() -> None:
    booking, _conversation = await database_sync_to_async(booking_with_conversation)()
    customer, provider = booking.customer, await database_sync_to_async(lambda: booking.provider.user)()
    watcher = Device(provider, presence_of=[customer.id])

    def connect() -> None:
        async_to_sync(presence_services.presence_connect)(user_id=customer.id, connection_id="c1")

    def second_device() -> None:
        async_to_sync(presence_services.presence_connect)(user_id=customer.id, connection_id="c2")

    def disconnect(connection_id: str) -> Callable[[], None]:
        return lambda: async_to_sync(presence_services.presence_disconnect)(
            user_id=customer.id, connection_id=connection_id
        )

    check = database_sync_to_async(verify_action, thread_sensitive=False)
    to_provider = [("presence", [str(provider.id)])]
    await check(connect, [watcher], expected=to_provider, settle_s=0.5)
    await check(second_device, [watcher], expected=[], settle_s=0.3)  # not per tab
    await check(disconnect("c1"), [watcher], expected=[], settle_s=0.3)
    await check(disconnect("c2"), [watcher], expected=to_provider, settle_s=0.3)
