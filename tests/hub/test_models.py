"""Database constraints of the shared schema, enforced by PostgreSQL itself."""

from __future__ import annotations

import uuid

import pytest
from django.db import IntegrityError, transaction

from hub.models import Block, Conversation, ConversationKind, Message, Review
from tests.factories import BookingFactory, CustomerFactory, ServiceFactory, booking_with_conversation

pytestmark = pytest.mark.django_db


def test_message_seq_unique_per_conversation() -> None:
    booking, conversation = booking_with_conversation()
    Message.objects.create(conversation=conversation, seq=1, sender=booking.customer, body="a")
    with pytest.raises(IntegrityError), transaction.atomic():
        Message.objects.create(conversation=conversation, seq=1, sender=booking.customer, body="b")


def test_message_seq_starts_at_one() -> None:
    booking, conversation = booking_with_conversation()
    with pytest.raises(IntegrityError), transaction.atomic():
        Message.objects.create(conversation=conversation, seq=0, sender=booking.customer, body="a")


def test_client_id_unique_per_sender_only() -> None:
    booking, conversation = booking_with_conversation()
    client_id = uuid.uuid4()
    Message.objects.create(conversation=conversation, seq=1, sender=booking.customer, client_id=client_id)
    Message.objects.create(conversation=conversation, seq=2, sender=booking.provider.user, client_id=client_id)
    with pytest.raises(IntegrityError), transaction.atomic():
        Message.objects.create(conversation=conversation, seq=3, sender=booking.customer, client_id=client_id)


def test_block_not_self_and_unique() -> None:
    a, b = CustomerFactory(), CustomerFactory()
    Block.objects.create(blocker=a, blocked=b)
    with pytest.raises(IntegrityError), transaction.atomic():
        Block.objects.create(blocker=a, blocked=b)
    with pytest.raises(IntegrityError), transaction.atomic():
        Block.objects.create(blocker=a, blocked=a)


def test_review_rating_range() -> None:
    booking = BookingFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        Review.objects.create(booking=booking, customer=booking.customer, provider=booking.provider, rating=6)
    Review.objects.create(booking=booking, customer=booking.customer, provider=booking.provider, rating=5)


def test_service_price_not_negative() -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        ServiceFactory(price=-1)


def test_conversation_kind_matches_its_key() -> None:
    booking = BookingFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        Conversation.objects.create(kind=ConversationKind.DIRECT, booking=booking)
    with pytest.raises(IntegrityError), transaction.atomic():
        Conversation.objects.create(kind=ConversationKind.BOOKING, pair_key="a:b")
    Conversation.objects.create(kind=ConversationKind.DIRECT, pair_key="a:b")
    with pytest.raises(IntegrityError), transaction.atomic():
        Conversation.objects.create(kind=ConversationKind.DIRECT, pair_key="a:b")


def test_one_conversation_per_booking() -> None:
    booking, conversation = booking_with_conversation()
    assert set(conversation.members.values_list("id", flat=True)) == {booking.customer_id, booking.provider_id}
    with pytest.raises(IntegrityError), transaction.atomic():
        Conversation.objects.create(kind=ConversationKind.BOOKING, booking=booking)


def test_provider_shares_its_user_id() -> None:
    booking = BookingFactory()
    assert booking.provider_id == booking.provider.user.id
