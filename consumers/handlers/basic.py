"""Connection-level requests."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from consumers.connection import Connection
from consumers.registry import Empty, handles
from hub.serialize import iso


@handles("ping", Empty)
async def ping(conn: Connection, data: Empty) -> dict[str, Any]:
    return {"pong": iso(timezone.now())}
