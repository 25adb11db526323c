"""Group commit of message.send: concurrent sends share transactions, stay gap-free, and past the
queue bound are answered `busy` without being stored."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from channels.db import database_sync_to_async as sync_to_async

from hub import metrics
from hub.errors import Busy
from hub.models import Message
from hub.services.messages import SendRequest, Sent
from hub.services.send_queue import message_send_queued
from tests.factories import booking_with_conversation

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


def _batches_observed() -> tuple[float, float]:
    """(batches, messages) stored through the group commit so far in this process."""
    samples = {s.name: s.value for s in metrics.SEND_BATCH_SIZE.collect()[0].samples}
    return samples["hub_send_batch_size_count"], samples["hub_send_batch_size_sum"]


async def test_concurrent_sends_share_commits_and_stay_gap_free(settings: Any) -> None:
    settings.HUB_SEND_RATE_BURST = 1000
    pairs = await sync_to_async(lambda: [booking_with_conversation() for _ in range(3)])()
    requests = [
        SendRequest(booking.customer, conversation.id, f"{k}-{n}", f"m{n}")
        for k, (booking, conversation) in enumerate(pairs)
        for n in range(40)
    ]
    batches0, messages0 = _batches_observed()
    sent = await asyncio.gather(*(message_send_queued(r) for r in requests))
    batches, messages = _batches_observed()
    assert messages - messages0 == 120
    assert batches - batches0 < 120 / 2  # shared transactions, not one per message
    assert all(isinstance(s, Sent) and s.created for s in sent)
    for k, (_, conversation) in enumerate(pairs):
        mine = [s.message for s in sent if s.message.conversation_id == conversation.id]
        assert sorted(m.seq for m in mine) == list(range(1, 41))
        assert [m.body for m in sorted(mine, key=lambda m: m.seq)] == [f"m{n}" for n in range(40)]
        assert set(sent[k * 40].announce_to) == {pairs[k][0].customer_id, pairs[k][0].provider_id}


async def test_past_the_queue_bound_sends_are_refused_busy_and_not_stored(settings: Any) -> None:
    settings.HUB_SEND_RATE_BURST = 1000
    settings.HUB_SEND_QUEUE_MAX = 2
    booking, conversation = await sync_to_async(booking_with_conversation)()
    requests = [SendRequest(booking.customer, conversation.id, f"q{n}", f"m{n}") for n in range(5)]
    outcomes = await asyncio.gather(*(message_send_queued(r) for r in requests), return_exceptions=True)
    stored = [o for o in outcomes if isinstance(o, Sent)]
    refused = [o for o in outcomes if isinstance(o, Busy)]
    assert len(stored) == 2 and len(refused) == 3
    assert all(o.as_data()["retry_after_s"] > 0 for o in refused)
    assert await sync_to_async(lambda: sorted(Message.objects.values_list("client_id", flat=True)))() == ["q0", "q1"]
    # Once the queue has drained, the refused sends go through with the same client_ids.
    again = await asyncio.gather(*(message_send_queued(r) for r in requests[2:4]))
    assert [s.message.seq for s in again] == [3, 4]


async def test_a_process_running_behind_answers_busy_until_it_catches_up(settings: Any) -> None:
    settings.HUB_SEND_RATE_BURST = 1000
    settings.HUB_SEND_MAX_LAG_MS = 100
    booking, conversation = await sync_to_async(booking_with_conversation)()
    first = await message_send_queued(SendRequest(booking.customer, conversation.id, "l0", "before"))
    assert first.created
    time.sleep(0.3)  # noqa: ASYNC251  (on purpose: the loop is blocked, its timers fire late, as under a backlog)
    await asyncio.sleep(0.1)
    with pytest.raises(Busy) as refused:
        await message_send_queued(SendRequest(booking.customer, conversation.id, "l1", "behind"))
    assert refused.value.as_data()["retry_after_s"] >= 0.05
    assert not await sync_to_async(Message.objects.filter(client_id="l1").exists)()
    await asyncio.sleep(1.0)  # nothing blocks it any more: the lag decays
    again = await message_send_queued(SendRequest(booking.customer, conversation.id, "l1", "caught up"))
    assert again.created and again.message.seq == 2
