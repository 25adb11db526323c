"""Conversations: who talks to whom (PROTOCOL §2.1)."""

from __future__ import annotations

from django.db import IntegrityError, transaction

from hub.models import Booking, Conversation, ConversationKind, ConversationMember


def conversation_for_booking(*, booking: Booking) -> Conversation:
    """The booking's conversation between its customer and its provider, created when missing."""
    existing = Conversation.objects.filter(booking=booking).first()
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            conversation = Conversation.objects.create(kind=ConversationKind.BOOKING, booking=booking)
            ConversationMember.objects.bulk_create(
                [
                    ConversationMember(conversation=conversation, user_id=booking.customer_id),
                    ConversationMember(conversation=conversation, user_id=booking.provider_id),
                ]
            )
            return conversation
    except IntegrityError:  # created concurrently by another request
        return Conversation.objects.get(booking=booking)
