"""Demo data (idempotent): a small marketplace, plus N customer–provider pairs with `--pairs N`.

The demo admin gets a known password (DEMO_ADMIN_PASSWORD, for /admin/) only while DEBUG is on; with
DEBUG off its password is made unusable, so a known password never stands on a production database.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from django.utils import timezone

from hub.models import (
    Booking,
    BookingStatus,
    Category,
    Conversation,
    ConversationKind,
    ConversationMember,
    Provider,
    Role,
    Service,
    User,
)
from hub.services.conversations import conversation_for_booking
from hub.services.identity import jwt_mint

NAMESPACE = uuid.UUID("6f1c1c52-2d0a-4c8e-9a4e-3c5d8f0b7a11")
TOKEN_TTL_S = 24 * 3600

CATEGORIES = [("Cleaning", "cleaning"), ("Plumbing", "plumbing"), ("Tutoring", "tutoring")]
PROVIDERS = [
    ("paula@demo.loconomy.test", "Paula Plumber", "Paula's Pipes", "plumbing", "Leak repair", "95.00"),
    ("carl@demo.loconomy.test", "Carl Cleaner", "Sparkle Cleaning", "cleaning", "Deep clean", "120.00"),
    ("tina@demo.loconomy.test", "Tina Tutor", "Tina Tutors", "tutoring", "Math lesson", "45.00"),
]
CUSTOMERS = [
    ("alice@demo.loconomy.test", "Alice Customer"),
    ("bob@demo.loconomy.test", "Bob Customer"),
]
ADMIN = ("admin@demo.loconomy.test", "Ada Admin")
DEMO_ADMIN_PASSWORD = "demo-admin-dev-only"  # set only with DEBUG on (see the module docstring)


def stable_id(*parts: object) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, ":".join(str(p) for p in parts))


def phone_for(n: int) -> str:
    return f"+1555{n:07d}"


class Command(BaseCommand):
    help = "Load demo data (idempotent); --pairs N adds N customer–provider pairs with a pending booking."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--pairs", type=int, default=0)
        parser.add_argument("--json", dest="json_path", default=None)
        parser.add_argument("--banner", action="store_true", help="print the URL and demo log-in tokens")

    def handle(self, *args: Any, pairs: int, json_path: str | None, banner: bool, **options: Any) -> None:
        with transaction.atomic():
            users, bookings = self._marketplace()
        pair_rows = self._pairs(pairs)
        out = {
            "bookings": bookings,
            "users": [
                {
                    "id": str(u.id),
                    "email": u.email,
                    "role": u.role,
                    "token": jwt_mint(user=u, ttl_s=TOKEN_TTL_S),
                }
                for u in users
            ],
            "pairs": pair_rows,
        }
        if json_path:
            Path(json_path).parent.mkdir(parents=True, exist_ok=True)
            Path(json_path).write_text(json.dumps(out, indent=1))
        self.stdout.write(f"demo data: {len(users)} users, {len(pair_rows)} pairs")
        if banner:
            self._banner(out)

    def _user(self, email: str, name: str, role: str, n: int) -> User:
        user, _ = User.objects.get_or_create(
            id=stable_id("user", email),
            defaults={"email": email, "display_name": name, "role": role, "phone": phone_for(n)},
        )
        return user

    def _admin(self) -> User:
        """The demo admin: staff and superuser; the dev password with DEBUG on, none usable with it off."""
        admin = self._user(ADMIN[0], ADMIN[1], Role.ADMIN, 900)
        admin.is_staff = admin.is_superuser = True
        if settings.DEBUG:
            if not admin.check_password(DEMO_ADMIN_PASSWORD):
                admin.set_password(DEMO_ADMIN_PASSWORD)
        elif admin.has_usable_password():
            admin.set_unusable_password()
        admin.save(update_fields=["is_staff", "is_superuser", "password"])
        return admin

    def _marketplace(self) -> tuple[list[User], list[dict[str, str]]]:
        categories = {
            slug: Category.objects.get_or_create(id=stable_id("cat", slug), defaults={"name": name, "slug": slug})[0]
            for name, slug in CATEGORIES
        }
        users: list[User] = []
        services: list[Service] = []
        for n, (email, name, business, cat, service_name, price) in enumerate(PROVIDERS, start=1):
            user = self._user(email, name, Role.PROVIDER, n)
            provider, _ = Provider.objects.get_or_create(
                user=user, defaults={"business_name": business, "is_verified": True}
            )
            service, _ = Service.objects.get_or_create(
                id=stable_id("service", email),
                defaults={
                    "provider": provider,
                    "category": categories[cat],
                    "name": service_name,
                    "price": Decimal(price),
                    "duration_minutes": 90,
                },
            )
            users.append(user)
            services.append(service)
        customers = [self._user(e, nm, Role.CUSTOMER, 100 + i) for i, (e, nm) in enumerate(CUSTOMERS)]
        users.extend(customers)
        users.append(self._admin())
        now = timezone.now().replace(minute=0, second=0, microsecond=0)
        bookings: list[dict[str, str]] = []
        for i, (customer, service) in enumerate(zip(customers * 2, services, strict=False)):
            booking, _ = Booking.objects.get_or_create(
                id=stable_id("booking", customer.id, service.id),
                defaults={
                    "customer": customer,
                    "provider": service.provider,
                    "service": service,
                    "status": BookingStatus.CONFIRMED if i % 2 else BookingStatus.PENDING,
                    "scheduled_at": now + timedelta(days=i + 1, hours=10),
                    "duration_minutes": service.duration_minutes,
                    "location": {
                        "address": f"{10 + i} Demo Street, Springfield",
                        "lat": 39.78,
                        "lng": -89.65,
                    },
                    "pricing": {"amount": str(service.price), "currency": service.currency},
                },
            )
            conversation = conversation_for_booking(booking=booking)
            bookings.append(
                {
                    "id": str(booking.id),
                    "status": booking.status,
                    "conversation_id": str(conversation.id),
                    "customer_id": str(booking.customer_id),
                    "provider_id": str(booking.provider_id),
                }
            )
        return users, bookings

    def _pairs(self, count: int) -> list[dict[str, Any]]:
        """N pairs in a few bulk statements, so 1,000 load in seconds; existing ones are kept."""
        if count <= 0:
            return []
        category = Category.objects.get(slug="cleaning")
        wanted = range(1, count + 1)
        ids = {i: (stable_id("pair-c", i), stable_id("pair-p", i)) for i in wanted}
        now = timezone.now().replace(second=0, microsecond=0)
        with transaction.atomic():
            users = [
                User(
                    id=cid,
                    email=f"pair{i}-customer@demo.loconomy.test",
                    display_name=f"Customer {i}",
                    role=Role.CUSTOMER,
                    phone=phone_for(10_000 + i),
                    password="!",
                )
                for i, (cid, _) in ids.items()
            ] + [
                User(
                    id=pid,
                    email=f"pair{i}-provider@demo.loconomy.test",
                    display_name=f"Provider {i}",
                    role=Role.PROVIDER,
                    phone=phone_for(20_000 + i),
                    password="!",
                )
                for i, (_, pid) in ids.items()
            ]
            User.objects.bulk_create(users, ignore_conflicts=True)
            Provider.objects.bulk_create(
                [
                    Provider(user_id=pid, business_name=f"Provider {i} Services", is_verified=True)
                    for i, (_, pid) in ids.items()
                ],
                ignore_conflicts=True,
            )
            Service.objects.bulk_create(
                [
                    Service(
                        id=stable_id("pair-s", i),
                        provider_id=pid,
                        category=category,
                        name="Home cleaning",
                        price=Decimal("80.00"),
                        duration_minutes=120,
                    )
                    for i, (_, pid) in ids.items()
                ],
                ignore_conflicts=True,
            )
            Booking.objects.bulk_create(
                [
                    Booking(
                        id=stable_id("pair-b", i),
                        customer_id=cid,
                        provider_id=pid,
                        service_id=stable_id("pair-s", i),
                        status=BookingStatus.PENDING,
                        scheduled_at=now + timedelta(days=1 + i % 7, hours=i % 9),
                        duration_minutes=120,
                        location={"address": f"{i} Pair Avenue"},
                        pricing={"amount": "80.00", "currency": "USD"},
                    )
                    for i, (cid, pid) in ids.items()
                ],
                ignore_conflicts=True,
            )
            Conversation.objects.bulk_create(
                [
                    Conversation(
                        id=stable_id("pair-conv", i),
                        kind=ConversationKind.BOOKING,
                        booking_id=stable_id("pair-b", i),
                    )
                    for i in wanted
                ],
                ignore_conflicts=True,
            )
            ConversationMember.objects.bulk_create(
                [
                    ConversationMember(conversation_id=stable_id("pair-conv", i), user_id=uid)
                    for i, pair in ids.items()
                    for uid in pair
                ],
                ignore_conflicts=True,
            )
        conv_by_booking = dict(
            Conversation.objects.filter(booking_id__in=[stable_id("pair-b", i) for i in wanted]).values_list(
                "booking_id", "id"
            )
        )
        by_id = {u.id: u for u in User.objects.filter(id__in=[x for pair in ids.values() for x in pair])}
        rows = []
        for i, (cid, pid) in ids.items():
            customer, provider = by_id[cid], by_id[pid]
            rows.append(
                {
                    "conversation_id": str(conv_by_booking[stable_id("pair-b", i)]),
                    "booking_id": str(stable_id("pair-b", i)),
                    "customer": {
                        "id": str(cid),
                        "email": customer.email,
                        "token": jwt_mint(user=customer, ttl_s=TOKEN_TTL_S),
                    },
                    "provider": {
                        "id": str(pid),
                        "email": provider.email,
                        "token": jwt_mint(user=provider, ttl_s=TOKEN_TTL_S),
                    },
                }
            )
        return rows

    def _banner(self, out: dict[str, Any]) -> None:
        for line in banner_lines(out, public_url=settings.HUB_PUBLIC_URL, debug=settings.DEBUG):
            self.stdout.write(line)


def banner_lines(out: dict[str, Any], *, public_url: str, debug: bool) -> list[str]:
    """What `make run` prints: where the hub is, demo tokens, ids to try them on, a WebSocket one-liner."""
    url = public_url.rstrip("/")
    ws_url = url.replace("http", "ws", 1) + "/ws/"
    users = {u["id"]: u for u in out["users"]}
    booking = out["bookings"][0]
    customer, provider = users[booking["customer_id"]], users[booking["provider_id"]]
    send = {
        "type": "message.send",
        "ref": "1",
        "data": {"conversation_id": booking["conversation_id"], "client_id": "CLIENT_ID", "body": "Hello!"},
    }
    frame = json.dumps(send).replace('"CLIENT_ID"', "str(uuid.uuid4())")
    one_liner = (  # `with` first: a one-line program cannot put a compound statement after an import
        '.venv/bin/python -c \'with __import__("websockets.sync.client").sync.client.connect('
        f'"{ws_url}", additional_headers={{"Authorization": "Bearer {customer["token"]}"}}) as ws: '
        f"import json, uuid; print(ws.recv()); ws.send(json.dumps({frame})); print(ws.recv()); print(ws.recv())'"
    )
    lines = [
        "",
        f"Loconomy Hub: {url}   (WebSocket {ws_url}, API docs {url}/api/docs/)",
        "Demo log-in tokens (valid 24 h; all of them, with every booking and conversation id, in .run/demo.json):",
        *(f"  {u['role']:<9} {u['email']:<28} {u['token']}" for u in out["users"]),
        "",
        f"Try them: {customer['email']} (customer) and {provider['email']} (provider) share booking",
        f"  {booking['id']} ({booking['status']}) and its conversation {booking['conversation_id']}.",
        "  The booking, as the customer:",
        f"  curl -s -H 'Authorization: Bearer {customer['token']}' {url}/api/bookings/{booking['id']}",
        "  A message from the customer (prints hello, then the reply and the message.created event):",
        f"  {one_liner}",
    ]
    if debug:
        lines += [
            "",
            f"DEBUG is on: HUB_JWT_SECRET = {settings.HUB_JWT_SECRET}",
            f"  /admin/ sign-in: {url}/admin/  email {ADMIN[0]}  password {DEMO_ADMIN_PASSWORD}",
        ]
    return [*lines, ""]
