"""Users' account state as the hub enforces it: a deactivated user is signed out of every device at once."""

from __future__ import annotations

import uuid

from django.db import transaction

from hub import realtime
from hub.errors import NotFound
from hub.models import User

# PROTOCOL §2: 4401, authentication failed or no longer valid.
CLOSE_UNAUTHORIZED = 4401


def user_deactivate(*, user_id: uuid.UUID) -> None:
    """Mark the user inactive; once committed, every open socket of theirs (in every web process) closes
    4401 and new handshakes are refused 4401. Deactivating an inactive user closes again (idempotent)."""
    with transaction.atomic():
        if not User.objects.filter(id=user_id).update(is_active=False):
            raise NotFound("No such user.")
        realtime.disconnect_users([user_id], CLOSE_UNAUTHORIZED, "user deactivated")
