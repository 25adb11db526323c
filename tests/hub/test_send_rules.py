"""The send rules, once, against both storage paths: the one-statement PostgreSQL path (`sql`) and the
ORM path (`orm`, as SQLite and every fallback use it). One scenario covers attachments, ordering,
client_id reuse (same conversation, other conversation, inside the batch), blocks, non-members,
unknown conversations and NUL, and asserts exact outcomes in exact order."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from channels.db import database_sync_to_async as sync_to_async

from hub import realtime
from hub.errors import HubError
from hub.models import Attachment, Block, Conversation, Message
from hub.services import message_commit, send_queue
from hub.services.messages import SendRequest, Sent, messages_send
from hub.services.send_queue import message_send_queued, store_batch
from tests.factories import CustomerFactory, booking_with_conversation

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

PATHS = ["sql", "orm"]


@pytest.fixture(params=PATHS)
def path(request: Any, monkeypatch: Any, settings: Any) -> str:
    """Which storage path text sends take: `orm` turns the PostgreSQL statement off, as on SQLite."""
    settings.HUB_SEND_RATE_BURST = 1000
    if request.param == "orm":
        monkeypatch.setattr(message_commit, "available", lambda: False)
    return str(request.param)


def codes(outcomes: list[Any]) -> list[str]:
    return [o.code if isinstance(o, HubError) else ("new" if o.created else "repeat") for o in outcomes]


@dataclass
class World:
    member: Any
    home: Any  # the member's conversation: holds "old" (seq 1)
    second: Any  # another conversation of the member: holds "elsewhere" (seq 1)
    foreign: Any  # not the member's
    blocked_sender: Any
    blocked: Any  # blocked_sender's conversation, whose other member blocked them
    photo: Any  # the member's unattached image upload


@sync_to_async
def world() -> World:
    home_booking, home = booking_with_conversation()
    member = home_booking.customer
    _, second = booking_with_conversation(customer=member)
    _, foreign = booking_with_conversation()
    blocked_booking, blocked = booking_with_conversation()
    Block.objects.create(blocker=blocked_booking.provider.user, blocked=blocked_booking.customer)
    for conversation, client_id in ((home, "old"), (second, "elsewhere")):
        Message.objects.create(conversation=conversation, seq=1, version=1, sender=member, client_id=client_id)
        Conversation.objects.filter(id=conversation.id).update(last_seq=1, last_version=1)
    photo = Attachment.objects.create(
        uploader=member, file="attachments/x/y/p.png", name="p.png", content_type="image/png", size=3
    )
    return World(member, home, second, foreign, blocked_booking.customer, blocked, photo)


def scenario(w: World) -> tuple[list[SendRequest], list[str]]:
    m, home = w.member, w.home.id
    cases = [
        (SendRequest(m, home, "a", "first"), "new"),
        (SendRequest(m, home, "p", "", (w.photo.id,)), "new"),
        (SendRequest(m, home, "b", "second"), "new"),
        (SendRequest(m, w.foreign.id, "c", "not a member"), "forbidden"),
        (SendRequest(m, uuid.uuid4(), "d", "no such conversation"), "not_found"),
        (SendRequest(w.blocked_sender, w.blocked.id, "e", "blocked"), "forbidden"),
        (SendRequest(m, home, "f", "   "), "bad_request"),
        (SendRequest(m, home, "a", "a repeat inside the batch"), "repeat"),
        (SendRequest(m, home, "old", "a repeat of a stored message"), "repeat"),
        (SendRequest(m, home, "elsewhere", "used in the other conversation"), "conflict"),
        (SendRequest(m, w.second.id, "b", "used in this batch, in home"), "conflict"),
        (SendRequest(m, home, "g", "NUL \x00 in the body"), "bad_request"),
        (SendRequest(m, home, "h\x00", "NUL in the client_id"), "bad_request"),
        (SendRequest(m, home, "z", "last"), "new"),
    ]
    return [r for r, _ in cases], [c for _, c in cases]


async def test_one_scenario_gives_the_same_exact_outcomes_on_both_paths(path: str) -> None:
    w = await world()
    requests, expected = scenario(w)
    outcomes = await store_batch(requests)
    assert codes(outcomes) == expected
    new = [o for o in outcomes if isinstance(o, Sent) and o.created]
    # Queue order is seq order, whichever path each send took (the photo went through the ORM).
    assert [(o.message.client_id, o.message.seq, o.message.version) for o in new] == [
        ("a", 2, 2),
        ("p", 3, 3),
        ("b", 4, 4),
        ("z", 5, 5),
    ]
    assert new[1].message.kind == "image" and [a.id for a in new[1].attachments] == [w.photo.id]
    members = {w.member.id, w.home.booking.provider_id}
    assert [set(o.announce_to) for o in new] == [members] * 4  # each to be announced once
    repeats = [outcomes[7], outcomes[8]]
    assert all(isinstance(o, Sent) and o.announce_to == [] for o in repeats)
    assert [o.message.seq for o in repeats if isinstance(o, Sent)] == [2, 1]
    conflict = outcomes[9]
    assert isinstance(conflict, HubError) and conflict.as_data()["client_id"] == "elsewhere"

    @sync_to_async
    def stored() -> dict[str, list[tuple[int, int, str | None]]]:
        rows = Message.objects.order_by("conversation_id", "seq").values_list(
            "conversation_id", "seq", "version", "client_id"
        )
        found: dict[str, list[tuple[int, int, str | None]]] = {}
        for conversation_id, seq, version, client_id in rows:
            found.setdefault(str(conversation_id), []).append((seq, version, client_id))
        return found

    assert await stored() == {
        str(w.home.id): [(1, 1, "old"), (2, 2, "a"), (3, 3, "p"), (4, 4, "b"), (5, 5, "z")],
        str(w.second.id): [(1, 1, "elsewhere")],
    }
    home = await sync_to_async(Conversation.objects.get)(id=w.home.id)
    assert (home.last_seq, home.last_version) == (5, 5)


async def test_pipelined_photo_then_texts_keep_queue_order(path: str) -> None:
    w = await world()
    requests = [
        SendRequest(w.member, w.home.id, "p", "", (w.photo.id,)),
        SendRequest(w.member, w.home.id, "t1", "one"),
        SendRequest(w.member, w.home.id, "t2", "two"),
    ]
    outcomes = await store_batch(requests)
    assert [o.message.seq for o in outcomes if isinstance(o, Sent)] == [2, 3, 4]


async def test_the_orm_path_alone_gives_the_same_outcomes(settings: Any) -> None:
    """messages_send (HTTP, and SQLite's group commit) is the same rules without the queue."""
    settings.HUB_SEND_RATE_BURST = 1000
    w = await world()
    requests, expected = scenario(w)
    outcomes = await sync_to_async(messages_send)(requests)
    assert codes(outcomes) == expected
    assert [o.message.seq for o in outcomes if isinstance(o, Sent) and o.created] == [2, 3, 4, 5]


async def test_a_failing_orm_part_fails_only_its_own_senders_and_stored_ones_are_announced(
    path: str, monkeypatch: Any
) -> None:
    w = await world()
    other_photo = await sync_to_async(Attachment.objects.create)(
        uploader=w.member, file="attachments/x/y/q.png", name="q.png", content_type="image/png", size=3
    )

    def broken(requests: Any, **kwargs: Any) -> Any:
        if any(r.attachment_ids for r in requests):
            raise RuntimeError("the ORM part failed")
        return messages_send(requests, **kwargs)

    monkeypatch.setattr(send_queue, "messages_send", broken)
    announced: list[tuple[str, int]] = []

    async def record(frames: Any) -> bool:
        for text, _to, _exclude in frames:
            frame = orjson.loads(text)
            announced.append((frame["type"], frame["data"]["message"]["seq"]))
        return True

    monkeypatch.setattr(realtime, "publish_frames", record)
    requests = [
        SendRequest(w.member, w.home.id, "t1", "text"),
        SendRequest(w.member, w.second.id, "p1", "", (other_photo.id,)),
        SendRequest(w.member, w.home.id, "t2", "text"),
    ]
    outcomes = await asyncio.gather(*(message_send_queued(r) for r in requests), return_exceptions=True)
    await asyncio.gather(*send_queue._queues[asyncio.get_running_loop()].tasks)  # the announcements
    assert [o.message.seq if isinstance(o, Sent) else o.code for o in outcomes] == [2, "internal", 3]
    assert announced == [("message.created", 2), ("message.created", 3)]
    assert not await sync_to_async(Message.objects.filter(client_id="p1").exists)()


async def test_a_value_the_statement_cannot_store_fails_only_its_request(path: str, monkeypatch: Any) -> None:
    """Defence in depth: were a NUL to pass every check, the statement fails, and each send is then
    stored or refused on its own."""
    w = await world()
    monkeypatch.setattr(send_queue, "admission_refusals", lambda requests: [None] * len(requests))
    stranger = await sync_to_async(CustomerFactory)()
    outcomes = await store_batch(
        [
            SendRequest(w.member, w.home.id, "ok1", "fine"),
            SendRequest(w.member, w.home.id, "bad", "NUL \x00"),
            SendRequest(stranger, w.home.id, "s", "not a member"),
            SendRequest(w.member, w.home.id, "ok2", "fine"),
        ]
    )
    assert codes(outcomes) == ["new", "bad_request", "forbidden", "new"]
    assert [o.message.seq for o in outcomes if isinstance(o, Sent)] == [2, 3]
