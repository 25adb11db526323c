"""Print a JWT for a user (by id or email), signed as the main app would sign it."""

from __future__ import annotations

import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from hub.models import User
from hub.services.identity import jwt_mint


class Command(BaseCommand):
    help = "Print a JWT for USER_ID_OR_EMAIL."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("user")
        parser.add_argument("--ttl", type=int, default=3600, help="seconds (default 3600)")

    def handle(self, *args: Any, user: str, ttl: int, **options: Any) -> None:
        try:
            lookup: dict[str, Any] = {"id": uuid.UUID(user)}
        except ValueError:
            lookup = {"email__iexact": user}
        found = User.objects.filter(**lookup).first()
        if found is None:
            raise CommandError(f"no user {user!r}")
        if ttl <= 0:
            raise CommandError("--ttl must be positive")
        self.stdout.write(jwt_mint(user=found, ttl_s=ttl))
