"""The seq primitive: gap-free and unique under concurrent writers, rolled back with its transaction."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection, transaction

from hub.models import Message, MessageKind
from hub.services.messages import message_append, message_post_system
from tests.factories import booking_with_conversation


@pytest.mark.django_db(transaction=True)
def test_concurrent_appends_are_gap_free() -> None:
    booking, conversation = booking_with_conversation()

    def append(i: int) -> int:
        try:
            with transaction.atomic():
                return message_append(
                    conversation_id=conversation.id, sender=booking.customer, kind=MessageKind.TEXT, body=str(i)
                ).seq
        finally:
            connection.close()

    with ThreadPoolExecutor(8) as pool:
        seqs = list(pool.map(append, range(80)))
    assert sorted(seqs) == list(range(1, 81))
    conversation.refresh_from_db()
    assert conversation.last_seq == 80


@pytest.mark.django_db
def test_rolled_back_append_leaves_no_gap() -> None:
    _, conversation = booking_with_conversation()
    with pytest.raises(RuntimeError), transaction.atomic():
        message_append(conversation_id=conversation.id, sender=None, kind=MessageKind.SYSTEM, body="x")
        raise RuntimeError
    message = message_post_system(conversation=conversation, body="Booking confirmed")
    assert message.seq == 1 and message.sender is None
    assert list(Message.objects.values_list("seq", flat=True)) == [1]
