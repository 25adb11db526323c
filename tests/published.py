"""Capturing the events the hub publishes, as devices would get them (Zulip's capture_send_event_calls)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any
from unittest import mock

import orjson
from django.db import transaction
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


def _sent(text: str, to: Iterable[Any]) -> Sent:
    frame = orjson.loads(text)
    return Sent(frame["type"], frame["data"], [str(u) for u in to])


@contextmanager
def capture_published() -> Iterator[list[Sent]]:
    """Every event sent inside the block, in order; on-commit sends run when the block ends (as at commit),
    so what a rolled-back transaction published is never seen."""
    sent: list[Sent] = []

    async def frames(items: Iterable[tuple[str, Iterable[Any], Any]]) -> bool:
        sent.extend(_sent(text, to) for text, to, _ in items)
        return True

    def on_commit(items: Iterable[tuple[str, Iterable[Any], Any]]) -> None:
        mine = [(text, list(to)) for text, to, _ in items]
        transaction.on_commit(lambda: sent.extend(_sent(text, to) for text, to in mine), robust=True)

    with ExitStack() as stack:
        stack.enter_context(mock.patch.object(realtime, "publish_frames", frames))
        stack.enter_context(mock.patch.object(realtime, "publish_frames_on_commit", on_commit))
        stack.enter_context(TestCase.captureOnCommitCallbacks(execute=True))
        yield sent


async def emit_raw(
    frame_type: str, data: dict[str, Any], *, to: Iterable[Any], exclude_channel: str | None = None
) -> bool:
    """A frame of any type straight through the transport (tests of the pipe itself, not of the catalogue)."""
    return await realtime.publish_frames([(realtime.encode_frame(frame_type, data), list(to), exclude_channel)])


async def send_raw(channel_name: str, frame_type: str, data: dict[str, Any]) -> bool:
    """A frame of any type to exactly one connection, straight through the transport."""
    return await realtime.publish_to_connection(channel_name, realtime.encode_frame(frame_type, data))
