"""What a handler knows about the connection that sent a request."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hub.models import User

if TYPE_CHECKING:
    from consumers.hub import HubConsumer

CLOSE_AFTER_ANSWER = "close_after_answer"


@dataclass
class Connection:
    user: User
    connection_id: str
    channel_name: str
    consumer: HubConsumer
    # Per-connection state owned by features (e.g. the calls this connection is bound to).
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def user_id(self) -> uuid.UUID:
        return self.user.id

    def close_after_answer(self, code: int, reason: str = "") -> None:
        """Close the connection with `code` right after the current request's reply or error."""
        self.state[CLOSE_AFTER_ANSWER] = (code, reason)
