"""hub.metrics.FrameCounts: per-frame counts reach their counters once per flush, none lost or doubled."""

from __future__ import annotations

import asyncio

import pytest

from hub import metrics


def value(child: object) -> float:
    return child._value.get()  # type: ignore[attr-defined]


async def test_counts_are_added_once_per_flush(monkeypatch: pytest.MonkeyPatch) -> None:
    counts = metrics.FrameCounts()
    monkeypatch.setattr(counts, "FLUSH_S", 0.05)
    pings = metrics.labelled(metrics.WS_FRAMES_IN, "ping")
    events = metrics.labelled(metrics.WS_FRAMES_OUT, "event")
    before = value(pings), value(events)
    for _ in range(3):
        counts.add(pings)
    counts.add(events)
    assert (value(pings), value(events)) == before  # buffered, one timer for all
    await asyncio.sleep(0.2)
    assert (value(pings) - before[0], value(events) - before[1]) == (3, 1)
    counts.add(pings)  # a new round gets a new timer
    await asyncio.sleep(0.2)
    assert value(pings) - before[0] == 4


def test_without_a_loop_a_count_is_added_at_once() -> None:
    counts = metrics.FrameCounts()
    closes = metrics.labelled(metrics.WS_FRAMES_OUT, "reply")
    before = value(closes)
    counts.add(closes)
    assert value(closes) - before == 1
