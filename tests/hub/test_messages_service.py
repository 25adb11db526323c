"""message_send and friends at the service level: query counts, idempotency under a race, sync cost."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.db import connection

from hub.models import Message
from hub.services.conversations import unread_total
from hub.services.messages import message_post_system, message_send, sync
from tests.factories import booking_with_conversation


@pytest.mark.django_db
def test_send_hot_path_query_count(django_assert_num_queries: Any) -> None:
    booking, conversation = booking_with_conversation()
    customer = booking.customer
    message_send(sender=customer, conversation_id=conversation.id, client_id="warm-up", body="x")
    # members+blocks, seq UPDATE … RETURNING, INSERT; plus the savepoint pair the test's own
    # transaction forces around the inner atomic block (none in production, where it is the outer one).
    with django_assert_num_queries(5):
        sent = message_send(sender=customer, conversation_id=conversation.id, client_id=str(uuid.uuid4()), body="hi")
    assert sent.created and sent.message.seq == 2
    # A repeated client_id (rare): the same checks, the rolled-back attempt, then the first message
    # and its attachments.
    with django_assert_num_queries(8):
        again = message_send(sender=customer, conversation_id=conversation.id, client_id="warm-up", body="y")
    assert not again.created and again.message.seq == 1 and again.message.body == "x"


@pytest.mark.django_db(transaction=True)
def test_concurrent_repeats_of_one_client_id_create_one_message(settings: Any) -> None:
    settings.HUB_SEND_RATE_BURST = 100
    booking, conversation = booking_with_conversation()
    barrier = threading.Barrier(8)

    def attempt(_: int) -> tuple[str, bool]:
        try:
            barrier.wait()
            sent = message_send(sender=booking.customer, conversation_id=conversation.id, client_id="dup", body="x")
            return str(sent.message.id), sent.created
        finally:
            connection.close()

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(attempt, range(8)))
    assert len({message_id for message_id, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert list(Message.objects.values_list("seq", flat=True)) == [1]
    conversation.refresh_from_db()
    assert conversation.last_seq == 1


@pytest.mark.django_db
def test_sync_costs_the_same_for_many_conversations(django_assert_max_num_queries: Any) -> None:
    booking, _ = booking_with_conversation()
    customer = booking.customer
    cursors = {}
    for _ in range(12):
        _, conversation = booking_with_conversation(customer=customer)
        for i in range(3):
            message_post_system(conversation=conversation, body=f"s{i}")
        cursors[conversation.id] = 1
    with django_assert_max_num_queries(5):
        result = sync(user=customer, cursors=cursors, limit=1)
    assert all([m["seq"] for m in entry["messages"]] == [2] and entry["has_more"] for entry in result)
    assert all(entry["unread_count"] == 3 for entry in result)
    assert unread_total(user=customer) == 36
