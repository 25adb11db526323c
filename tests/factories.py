"""factory_boy factories for the shared schema."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import factory
from django.utils import timezone

from hub import models
from hub.services.conversations import conversation_for_booking


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
