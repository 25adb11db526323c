"""Capturing the events the hub publishes, as devices would get them (Zulip's capture_send_event_calls)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any
from unittest import mock

import orjson
from django.test import TestCase

from hub import realtime


@dataclass(frozen=True)
class Sent:
    """One event handed to the transport: its frame type, its data after a JSON round trip, its recipients."""

    type: str
    data: dict[str, Any]
    to: list[str]

    @property
    def frame(self) -> dict[str, Any]:
        return {"type": self.type, "data": self.data}


def _sent(frame_type: str, data: dict[str, Any], to: Iterable[Any]) -> Sent:
    return Sent(frame_type, orjson.loads(realtime.encode_frame(frame_type, data))["data"], [str(u) for u in to])


@contextmanager
def capture_published() -> Iterator[list[Sent]]:
    """Every event sent inside the block, in order; on-commit sends run when the block ends (as at commit),
    so what a rolled-back transaction published is never seen."""
    sent: list[Sent] = []

    async def many(items: Iterable[tuple[str, dict[str, Any], Iterable[Any]]]) -> None:
        sent.extend(_sent(frame_type, data, to) for frame_type, data, to in items)

    async def one(frame_type: str, data: dict[str, Any], *, to: Iterable[Any], exclude_channel: Any = None) -> None:
        sent.append(_sent(frame_type, data, to))

    with ExitStack() as stack:
        stack.enter_context(mock.patch.object(realtime, "emit_many_async", many))
        if hasattr(realtime, "emit_async"):  # services not yet on hub.events.publish (hub/services/messages.py)
            stack.enter_context(mock.patch.object(realtime, "emit_async", one))
        stack.enter_context(TestCase.captureOnCommitCallbacks(execute=True))
        yield sent
