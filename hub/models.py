"""The shared marketplace schema (users, providers, catalogue, bookings, reviews) and the hub's own
conversation tables. Table names follow the seed schema so the main app and the hub share them."""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models
from django.db.models import Q


class Role(models.TextChoices):
    CUSTOMER = "customer"
    PROVIDER = "provider"
    ADMIN = "admin"
    SUPER_ADMIN = "super_admin"


ADMIN_ROLES = frozenset({Role.ADMIN, Role.SUPER_ADMIN})


class UserManager(BaseUserManager["User"]):
    def create_user(self, email: str, password: str | None = None, **fields: Any) -> User:
        user = self.model(email=self.normalize_email(email).lower(), **fields)
        if password:
            user.set_password(password)
        else:
            user.set_unusable_password()
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **fields: Any) -> User:
        fields.setdefault("role", Role.SUPER_ADMIN)
        fields.setdefault("is_staff", True)
        fields.setdefault("is_superuser", True)
        return self.create_user(email, password, **fields)


class User(AbstractBaseUser, PermissionsMixin):
    """A marketplace user; `id` is the JWT `sub` issued by the main app."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    email = models.EmailField(unique=True)
    display_name = models.CharField(max_length=120, blank=True)
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.CUSTOMER, db_index=True)
    phone = models.CharField(max_length=20, blank=True, help_text="E.164, e.g. +14155550100")
    timezone = models.CharField(max_length=64, default="UTC")
    locale = models.CharField(max_length=16, default="en")
    avatar_url = models.URLField(blank=True)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS = []  # type: ignore[misc]

    class Meta:
        db_table = "users"
        indexes = [models.Index(fields=["created_at"], name="users_created_idx")]

    def __str__(self) -> str:
        return f"{self.display_name or self.email} ({self.role})"

    @property
    def is_admin(self) -> bool:
        return self.role in ADMIN_ROLES


class Provider(models.Model):
    """A user's provider profile; it shares the user's id, so `provider_id` is also a user id."""

    user = models.OneToOneField(User, primary_key=True, on_delete=models.CASCADE, related_name="provider")
    business_name = models.CharField(max_length=200)
    bio = models.TextField(blank=True)
    is_verified = models.BooleanField(default=False)
    rating = models.DecimalField(max_digits=3, decimal_places=2, default=0)
    review_count = models.PositiveIntegerField(default=0)
    service_area = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "providers"
        indexes = [models.Index(fields=["is_verified", "rating"], name="providers_verified_rating_idx")]

    def __str__(self) -> str:
        return self.business_name


class Category(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=100, unique=True)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "categories"
        verbose_name_plural = "categories"

    def __str__(self) -> str:
        return self.name


class Service(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="services")
    category = models.ForeignKey(Category, on_delete=models.PROTECT, related_name="services")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    price = models.DecimalField(max_digits=10, decimal_places=2)
    currency = models.CharField(max_length=3, default="USD")
    duration_minutes = models.PositiveIntegerField(default=60)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "services"
        indexes = [
            models.Index(fields=["provider", "is_active"], name="services_provider_active_idx"),
            models.Index(fields=["category", "is_active"], name="services_category_active_idx"),
        ]
        constraints = [models.CheckConstraint(condition=Q(price__gte=0), name="services_price_nonnegative")]

    def __str__(self) -> str:
        return self.name


class BookingStatus(models.TextChoices):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    DECLINED = "declined"
    CANCELLED = "cancelled"
    EN_ROUTE = "en_route"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"


class Booking(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    customer = models.ForeignKey(User, on_delete=models.PROTECT, related_name="bookings_as_customer")
    provider = models.ForeignKey(Provider, on_delete=models.PROTECT, related_name="bookings")
    service = models.ForeignKey(Service, null=True, blank=True, on_delete=models.SET_NULL, related_name="bookings")
    status = models.CharField(max_length=16, choices=BookingStatus.choices, default=BookingStatus.PENDING)
    scheduled_at = models.DateTimeField()
    duration_minutes = models.PositiveIntegerField(default=60)
    location = models.JSONField(default=dict, blank=True)
    notes = models.TextField(blank=True)
    pricing = models.JSONField(default=dict, blank=True)
    # The provider's last live fix while en route; cleared when the booking leaves `en_route`.
    live_location = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "bookings"
        indexes = [
            models.Index(fields=["customer", "status"], name="bookings_customer_status_idx"),
            models.Index(fields=["provider", "status"], name="bookings_provider_status_idx"),
            models.Index(fields=["scheduled_at"], name="bookings_scheduled_idx"),
        ]

    def __str__(self) -> str:
        return f"Booking {self.id} ({self.status})"


class Review(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    booking = models.OneToOneField(Booking, on_delete=models.CASCADE, related_name="review")
    customer = models.ForeignKey(User, on_delete=models.CASCADE, related_name="reviews_written")
    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="reviews")
    rating = models.PositiveSmallIntegerField()
    title = models.CharField(max_length=200, blank=True)
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "reviews"
        indexes = [models.Index(fields=["provider", "created_at"], name="reviews_provider_created_idx")]
        constraints = [models.CheckConstraint(condition=Q(rating__gte=1) & Q(rating__lte=5), name="reviews_rating_1_5")]


class ConversationKind(models.TextChoices):
    DIRECT = "direct"
    BOOKING = "booking"


class Conversation(models.Model):
    """A conversation; `last_seq` is the seq of its newest message, `last_version` the version of its
    latest change (create, edit or delete): the two per-conversation counters (PROTOCOL §2.1)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=16, choices=ConversationKind.choices, default=ConversationKind.DIRECT)
    booking = models.OneToOneField(
        Booking, null=True, blank=True, on_delete=models.CASCADE, related_name="conversation"
    )
    # For direct conversations: "<smaller user id>:<larger user id>", so a pair has exactly one.
    pair_key = models.CharField(max_length=80, null=True, blank=True, unique=True)
    last_seq = models.PositiveBigIntegerField(default=0)
    # Not indexed: every send updates it (HOT updates, ADR 0036).
    last_version = models.PositiveBigIntegerField(default=0)
    last_message_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    members: models.ManyToManyField[User, ConversationMember] = models.ManyToManyField(
        User, through="ConversationMember", related_name="conversations"
    )

    class Meta:
        db_table = "conversations"
        # No index on last_message_at: every send updates it, and an indexed column would make each
        # of those updates write every index of the table (no HOT update; ADR 0036). Conversation
        # lists are per member and sorted after the member index found them.
        constraints = [
            models.CheckConstraint(
                condition=Q(kind="booking", booking__isnull=False, pair_key__isnull=True)
                | Q(kind="direct", booking__isnull=True, pair_key__isnull=False),
                name="conversations_kind_key",
            )
        ]


class ConversationMember(models.Model):
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    read_seq = models.PositiveBigIntegerField(default=0)
    delivered_seq = models.PositiveBigIntegerField(default=0)
    joined_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "conversation_members"
        constraints = [
            models.UniqueConstraint(fields=["conversation", "user"], name="conversation_members_unique"),
        ]
        indexes = [models.Index(fields=["user", "conversation"], name="conv_members_user_idx")]


class MessageKind(models.TextChoices):
    TEXT = "text"
    IMAGE = "image"
    FILE = "file"
    SYSTEM = "system"
    CALL = "call"


class Message(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Its own index would repeat the (conversation, seq) unique index's leading column: one index
    # write more per message for nothing.
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages", db_index=False)
    seq = models.PositiveBigIntegerField()
    # The conversation's version at this message's latest change (create, edit, delete); ADR 0045.
    version = models.PositiveBigIntegerField(default=0)
    sender = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="messages")
    # The sender's idempotency key: any string of up to 64 characters (a UUID is typical). See ADR 0010.
    client_id = models.CharField(max_length=64, null=True, blank=True)
    kind = models.CharField(max_length=16, choices=MessageKind.choices, default=MessageKind.TEXT)
    body = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    edited_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "messages"
        constraints = [
            models.UniqueConstraint(fields=["conversation", "seq"], name="messages_conversation_seq_unique"),
            models.UniqueConstraint(
                fields=["sender", "client_id"],
                condition=Q(client_id__isnull=False),
                name="messages_sender_client_id_unique",
            ),
            models.CheckConstraint(condition=Q(seq__gte=1), name="messages_seq_positive"),
        ]
        indexes = [
            # `sync`'s `changed`: a range scan over the edited or deleted messages of a conversation
            # after a version. Partial, so a send (neither edited nor deleted) writes no entry in it.
            models.Index(
                fields=["conversation", "version"],
                condition=Q(edited_at__isnull=False) | Q(deleted_at__isnull=False),
                name="messages_changed_idx",
            ),
        ]

    @property
    def deleted(self) -> bool:
        return self.deleted_at is not None


def attachment_path(instance: Attachment, filename: str) -> str:
    return f"attachments/{instance.uploader_id}/{instance.id}/{filename}"


class Attachment(models.Model):
    """An uploaded file; it belongs to its uploader until a message claims it."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    uploader = models.ForeignKey(User, on_delete=models.CASCADE, related_name="attachments")
    message = models.ForeignKey(Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="attachments")
    file = models.FileField(upload_to=attachment_path, max_length=300)
    name = models.CharField(max_length=255)
    content_type = models.CharField(max_length=100)
    size = models.PositiveBigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "attachments"


class Block(models.Model):
    blocker = models.ForeignKey(User, on_delete=models.CASCADE, related_name="blocks_made")
    blocked = models.ForeignKey(User, on_delete=models.CASCADE, related_name="blocks_received")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "blocks"
        constraints = [
            models.UniqueConstraint(fields=["blocker", "blocked"], name="blocks_unique"),
            models.CheckConstraint(condition=~Q(blocker=models.F("blocked")), name="blocks_not_self"),
        ]


class WsTicket(models.Model):
    """A single-use WebSocket ticket (PROTOCOL §1); only its SHA-256 is stored."""

    digest = models.CharField(max_length=64, primary_key=True)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="+")
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        db_table = "ws_tickets"
