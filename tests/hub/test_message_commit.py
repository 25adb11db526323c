"""The group commit's one-statement PostgreSQL path: the same outcomes as the ORM path, gap-free seqs
under concurrent batches of several processes (event loops), and a failed statement stores nothing."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from channels.db import database_sync_to_async as sync_to_async
from django.db import connection

from hub.models import Attachment, Message
from hub.services import message_commit
from hub.services.messages import SendRequest, Sent
from hub.services.send_queue import store_batch
from tests.factories import booking_with_conversation, outcome_codes, send_scenario

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.mark.asyncio
async def test_outcomes_match_the_rules(settings: Any) -> None:
    settings.HUB_SEND_RATE_BURST = 1000
    scenario = await sync_to_async(send_scenario)()
    outcomes = await store_batch(scenario.requests)
    assert tuple(outcome_codes(outcomes)) == scenario.expected
    first, inner_repeat, stored_repeat, last = outcomes[0], outcomes[5], outcomes[6], outcomes[7]
    assert isinstance(first, Sent) and isinstance(inner_repeat, Sent) and isinstance(stored_repeat, Sent)
    assert inner_repeat.message.id == first.message.id
    assert stored_repeat.message.seq == 1 and stored_repeat.message.client_id == "old"
    assert isinstance(last, Sent) and (first.message.seq, last.message.seq) == (2, 3)
    conversation = scenario.open_conversation
    members = await sync_to_async(lambda: set(conversation.memberships.values_list("user_id", flat=True)))()
    assert set(first.announce_to) == members and scenario.member.id in members
    stored = await sync_to_async(
        lambda: list(Message.objects.filter(conversation=conversation).order_by("seq").values_list("seq", "body"))
    )()
    assert stored == [(1, ""), (2, "first"), (3, "last")]
    refused = scenario.refused_conversations
    assert await sync_to_async(lambda: Message.objects.filter(conversation__in=refused).count())() == 0
    # What the statement stored reads back as the ORM path would have returned it.
    row = await sync_to_async(Message.objects.get)(id=first.message.id)
    assert (row.kind, row.data, row.created_at, row.sender_id) == (
        "text",
        {},
        first.message.created_at,
        scenario.member.id,
    )


def test_concurrent_batches_of_several_processes_stay_gap_free(settings: Any, caplog: Any) -> None:
    """Two event loops (as two web processes) commit interleaved batches into the same conversations."""
    settings.HUB_SEND_RATE_BURST = 10_000
    pairs = [booking_with_conversation() for _ in range(4)]
    errors: list[BaseException] = []

    def process(tag: str) -> None:
        async def run() -> None:
            for round_ in range(10):
                batch = [
                    SendRequest(booking.customer, conversation.id, f"{tag}-{round_}-{k}-{n}", "x")
                    for k, (booking, conversation) in enumerate(pairs)
                    for n in range(3)
                ]
                outcomes = await store_batch(batch)
                assert all(isinstance(o, Sent) and o.created for o in outcomes), outcomes
            await message_commit.close_connection()

        try:
            asyncio.run(run())
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=process, args=(tag,)) for tag in ("p1", "p2", "p3")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert not [r for r in caplog.records if "one-statement" in r.getMessage()]  # no deadlock, no fallback
    for _, conversation in pairs:
        seqs = sorted(Message.objects.filter(conversation=conversation).values_list("seq", flat=True))
        assert seqs == list(range(1, 3 * 10 * 3 + 1))
        conversation.refresh_from_db()
        assert conversation.last_seq == 90


@pytest.mark.asyncio
async def test_a_failed_statement_stores_nothing_and_the_orm_path_answers(settings: Any, monkeypatch: Any) -> None:
    settings.HUB_SEND_RATE_BURST = 1000
    booking, conversation = await sync_to_async(booking_with_conversation)()

    async def broken(requests: Any) -> Any:
        raise message_commit.psycopg.errors.UniqueViolation("simulated")

    monkeypatch.setattr(message_commit, "messages_commit", broken)
    outcomes = await store_batch([SendRequest(booking.customer, conversation.id, f"k{n}", "x") for n in range(3)])
    assert [o.message.seq for o in outcomes if isinstance(o, Sent)] == [1, 2, 3]


@pytest.mark.asyncio
async def test_sends_with_attachments_take_the_orm_path_in_the_same_batch(settings: Any) -> None:
    settings.HUB_SEND_RATE_BURST = 1000
    booking, conversation = await sync_to_async(booking_with_conversation)()
    upload = await sync_to_async(Attachment.objects.create)(
        uploader=booking.customer, file="attachments/x/y/z.png", name="z.png", content_type="image/png", size=3
    )
    outcomes = await store_batch(
        [
            SendRequest(booking.customer, conversation.id, "t1", "text"),
            SendRequest(booking.customer, conversation.id, "p1", "", (upload.id,)),
            SendRequest(booking.customer, conversation.id, "t2", "text"),
        ]
    )
    assert all(isinstance(o, Sent) for o in outcomes)
    by_client = {o.message.client_id: o for o in outcomes if isinstance(o, Sent)}
    assert by_client["p1"].message.kind == "image" and [a.id for a in by_client["p1"].attachments] == [upload.id]
    # Exactly the queue order, though the photo went through the ORM and the texts through the statement.
    assert [(o.message.client_id, o.message.seq) for o in outcomes if isinstance(o, Sent)] == [
        ("t1", 1),
        ("p1", 2),
        ("t2", 3),
    ]


@pytest.mark.asyncio
async def test_a_connection_whose_statement_failed_is_not_reused(settings: Any) -> None:
    settings.HUB_SEND_RATE_BURST = 1000
    booking, conversation = await sync_to_async(booking_with_conversation)()
    first = await message_commit.messages_commit([SendRequest(booking.customer, conversation.id, "u1", "x")])
    assert isinstance(first[0], Sent)
    conn = await message_commit._connections.acquire()
    message_commit._connections.release(conn)
    pid = conn.info.backend_pid

    def terminate() -> None:  # the server side goes away (a restart, a failover)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])

    await sync_to_async(terminate)()
    with pytest.raises(message_commit.psycopg.OperationalError):
        await message_commit.messages_commit([SendRequest(booking.customer, conversation.id, "u2", "x")])
    again = await message_commit.messages_commit([SendRequest(booking.customer, conversation.id, "u2", "x")])
    assert isinstance(again[0], Sent) and again[0].message.seq == 2
