"""message_send and friends at the service level: query counts, idempotency under a race, sync cost."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.db import connection

from hub.errors import HubError
from hub.models import Message
from hub.services.conversations import unread_total
from hub.services.messages import SendRequest, Sent, message_post_system, message_send, messages_send, sync
from tests.factories import booking_with_conversation, outcome_codes, send_scenario


@pytest.mark.django_db
def test_send_hot_path_query_count(django_assert_num_queries: Any) -> None:
    booking, conversation = booking_with_conversation()
    customer = booking.customer
    message_send(sender=customer, conversation_id=conversation.id, client_id="warm-up", body="x")
    # members+blocks, earlier client_ids, seq UPDATE … RETURNING, INSERT; plus the savepoint pair
    # the test's own transaction forces around the inner atomic block (none in production).
    with django_assert_num_queries(6):
        sent = message_send(sender=customer, conversation_id=conversation.id, client_id=str(uuid.uuid4()), body="hi")
    assert sent.created and sent.message.seq == 2
    # A repeated client_id: the same checks find the first message (and its attachments); no seq taken.
    with django_assert_num_queries(5):
        again = message_send(sender=customer, conversation_id=conversation.id, client_id="warm-up", body="y")
    assert not again.created and again.message.seq == 1 and again.message.body == "x"
    conversation.refresh_from_db()
    assert conversation.last_seq == 2


@pytest.mark.django_db
def test_a_batch_costs_the_same_queries_for_any_number_of_messages(
    django_assert_num_queries: Any, settings: Any
) -> None:
    settings.HUB_SEND_RATE_BURST = 1000
    pairs = [booking_with_conversation() for _ in range(5)]
    requests = [
        SendRequest(booking.customer if n % 2 else booking.provider.user, conversation.id, f"c{k}-{n}", f"m{n}")
        for k, (booking, conversation) in enumerate(pairs)
        for n in range(8)
    ]
    # audiences, conversation row locks, earlier client_ids, one seq UPDATE, one INSERT (+ savepoints)
    with django_assert_num_queries(7):
        outcomes = messages_send(requests)
    assert all(isinstance(o, Sent) and o.created for o in outcomes)
    for _, conversation in pairs:
        seqs = list(Message.objects.filter(conversation=conversation).order_by("seq").values_list("seq", "body"))
        assert seqs == [(n + 1, f"m{n}") for n in range(8)]  # gap-free, in request order


@pytest.mark.django_db
def test_one_refused_send_does_not_fail_its_batch(settings: Any) -> None:
    settings.HUB_SEND_RATE_BURST = 1000
    scenario = send_scenario()
    outcomes = messages_send(scenario.requests)
    assert tuple(outcome_codes(outcomes)) == scenario.expected
    first, inner_repeat, stored_repeat, last = outcomes[0], outcomes[5], outcomes[6], outcomes[7]
    assert isinstance(first, Sent) and isinstance(inner_repeat, Sent) and isinstance(stored_repeat, Sent)
    assert inner_repeat.message.id == first.message.id and inner_repeat.message.body == "first"
    assert stored_repeat.message.seq == 1 and isinstance(last, Sent)
    stored = list(
        Message.objects.filter(conversation=scenario.open_conversation).order_by("seq").values_list("seq", "body")
    )
    assert stored == [(1, ""), (2, "first"), (3, "last")]
    assert not Message.objects.filter(conversation__in=scenario.refused_conversations).exists()


@pytest.mark.django_db
def test_rate_limit_applies_per_message_within_a_batch(settings: Any) -> None:
    settings.HUB_SEND_RATE_BURST = 3
    settings.HUB_SEND_RATE_PER_S = 0.001
    booking, conversation = booking_with_conversation()
    requests = [SendRequest(booking.customer, conversation.id, f"r{n}", "x") for n in range(5)]
    outcomes = messages_send(requests)
    assert [isinstance(o, Sent) for o in outcomes] == [True, True, True, False, False]
    refused = outcomes[3]
    assert isinstance(refused, HubError) and refused.code == "rate_limited"
    assert refused.as_data()["retry_after_s"] > 0
    assert Message.objects.filter(conversation=conversation).count() == 3


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
