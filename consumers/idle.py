"""Closing silent connections (4408, PROTOCOL §2) with one timer per process instead of a task each (ADR 0035).

Connections are kept in order of their last received frame: a frame moves its connection to the
end, so the first one is always the next to fall silent for `HUB_WS_IDLE_TIMEOUT_S`, and a single
timer, set for that moment, is all the process needs. A per-connection watchdog task cost about
1 KiB and an event-loop timer per connection."""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Protocol

from django.conf import settings

log = logging.getLogger(__name__)


class Silent(Protocol):
    async def close_idle(self) -> None: ...


class IdleSweeper:
    """The connections of one event loop by time of their last frame, and the one timer over them."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._last: dict[Silent, float] = {}  # insertion order == order of last activity
        self._timer: asyncio.TimerHandle | None = None
        self._due: float = 0.0
        self._closing: set[asyncio.Task[None]] = set()

    def touch(self, conn: Silent) -> None:
        """`conn` was just heard from (or opened)."""
        last = self._last
        last.pop(conn, None)
        last[conn] = self._loop.time()
        if self._timer is None or len(last) == 1:
            self._arm()

    def remove(self, conn: Silent) -> None:
        self._last.pop(conn, None)

    def __len__(self) -> int:
        return len(self._last)

    def _arm(self) -> None:
        if not self._last:
            return
        due = next(iter(self._last.values())) + settings.HUB_WS_IDLE_TIMEOUT_S
        if self._timer is not None:
            if self._due <= due:
                return
            self._timer.cancel()
        self._due = due
        self._timer = self._loop.call_at(due, self._fire)

    def _fire(self) -> None:
        self._timer = None
        deadline = self._loop.time() - settings.HUB_WS_IDLE_TIMEOUT_S
        silent = []
        for conn, at in self._last.items():
            if at > deadline:
                break
            silent.append(conn)
        for conn in silent:
            del self._last[conn]
        if silent:
            task = self._loop.create_task(self._close(silent))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        self._arm()

    async def _close(self, silent: list[Silent]) -> None:
        for conn in silent:
            try:
                await conn.close_idle()
            except Exception:  # one failing close must not keep the others open
                log.exception("closing an idle connection failed")


_sweepers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, IdleSweeper] = weakref.WeakKeyDictionary()


def idle_sweeper() -> IdleSweeper:
    """This event loop's sweeper (daphne runs one loop; tests make one per test)."""
    loop = asyncio.get_running_loop()
    sweeper = _sweepers.get(loop)
    if sweeper is None:
        sweeper = _sweepers[loop] = IdleSweeper(loop)
    return sweeper
