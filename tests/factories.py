"""factory_boy factories for the shared schema."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import factory
from django.utils import timezone

from hub import models
from hub.errors import HubError
from hub.services.conversations import conversation_for_booking
from hub.services.messages import SendRequest


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.User

    email = factory.Sequence(lambda n: f"user{n}@test.loconomy.test")
    display_name = factory.Sequence(lambda n: f"User {n}")
    role = models.Role.CUSTOMER
    phone = factory.Sequence(lambda n: f"+1555{n:07d}")
    password = "!"


class CustomerFactory(UserFactory):
    role = models.Role.CUSTOMER


class AdminFactory(UserFactory):
    role = models.Role.ADMIN


class ProviderFactory(factory.django.DjangoModelFactory):
    """A provider profile with its user (role `provider`)."""

    class Meta:
        model = models.Provider

    user = factory.SubFactory(UserFactory, role=models.Role.PROVIDER)
    business_name = factory.Sequence(lambda n: f"Business {n}")
    is_verified = True


class CategoryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Category
        django_get_or_create = ("slug",)

    name = "Cleaning"
    slug = "cleaning"


class ServiceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Service

    provider = factory.SubFactory(ProviderFactory)
    category = factory.SubFactory(CategoryFactory)
    name = "Deep clean"
    price = Decimal("100.00")


class BookingFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Booking

    customer = factory.SubFactory(CustomerFactory)
    provider = factory.SubFactory(ProviderFactory)
    service = factory.SubFactory(ServiceFactory, provider=factory.SelfAttribute("..provider"))
    status = models.BookingStatus.PENDING
    scheduled_at = factory.LazyFunction(lambda: timezone.now() + timedelta(days=2))
    location = factory.LazyFunction(lambda: {"address": "1 Test Street"})
    pricing = factory.LazyFunction(lambda: {"amount": "100.00", "currency": "USD"})


def booking_with_conversation(**kwargs: object) -> tuple[models.Booking, models.Conversation]:
    booking = BookingFactory(**kwargs)
    return booking, conversation_for_booking(booking=booking)


@dataclass
class SendScenario:
    """One batch of sends covering every outcome rule of `message.send` (both storage paths use it)."""

    requests: list[Any]
    open_conversation: Any  # where the accepted sends go; holds one earlier message ("old", seq 1)
    refused_conversations: list[Any]  # where nothing may be stored
    member: Any
    # One per request: "new", "repeat" or the error code.
    expected: tuple[str, ...] = ("new", "forbidden", "not_found", "forbidden", "bad_request", "repeat", "repeat", "new")


def send_scenario() -> SendScenario:
    booking, blocked_conversation = booking_with_conversation()
    _, other = booking_with_conversation()
    models.Block.objects.create(blocker=booking.provider.user, blocked=booking.customer)
    open_booking, open_conversation = booking_with_conversation()
    member = open_booking.customer
    models.Message.objects.create(conversation=open_conversation, seq=1, sender=member, client_id="old")
    models.Conversation.objects.filter(id=open_conversation.id).update(last_seq=1)
    requests = [
        SendRequest(member, open_conversation.id, "a", "first"),
        SendRequest(CustomerFactory(), other.id, "b", "not a member"),
        SendRequest(member, uuid.uuid4(), "c", "no such conversation"),
        SendRequest(booking.customer, blocked_conversation.id, "d", "blocked"),
        SendRequest(member, open_conversation.id, "e", "   "),
        SendRequest(member, open_conversation.id, "a", "a repeat inside the batch"),
        SendRequest(member, open_conversation.id, "old", "a repeat of a stored message"),
        SendRequest(member, open_conversation.id, "f", "last"),
    ]
    return SendScenario(requests, open_conversation, [blocked_conversation, other], member)


def outcome_codes(outcomes: list[Any]) -> list[str]:
    return [o.code if isinstance(o, HubError) else ("new" if o.created else "repeat") for o in outcomes]
