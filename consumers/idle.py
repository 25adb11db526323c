"""Closing silent connections (4408, PROTOCOL §2) and connections whose credential lapsed (4401, §2.1)
with one timer per process instead of a task each (ADRs 0035, 0041).

Connections are kept in order of their last received frame: a frame moves its connection to the
end, so the first one is always the next to fall silent for `HUB_WS_IDLE_TIMEOUT_S`. Credentials
that lapse (a token's `exp`) are kept in a heap by that moment. A single timer, set for the sooner
of the two, is all the process needs. A per-connection watchdog task cost about 1 KiB and an
event-loop timer per connection."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
import weakref
from typing import Protocol

from django.conf import settings

log = logging.getLogger(__name__)


class Silent(Protocol):
    async def close_idle(self) -> None: ...

    async def close_expired(self) -> None: ...


class IdleSweeper:
    """The connections of one event loop by time of their last frame, and the one timer over them."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._last: dict[Silent, float] = {}  # insertion order == order of last activity
        self._timer: asyncio.TimerHandle | None = None
        self._due: float = 0.0
        self._closing: set[asyncio.Task[None]] = set()
        # (loop time it lapses, tie-breaker, connection) for every connection with a lapsing credential;
        # entries of connections gone since are skipped when they come up (the weak reference is dead, or
        # `_lapses` no longer holds that time for it).
        self._lapses: weakref.WeakKeyDictionary[Silent, float] = weakref.WeakKeyDictionary()
        self._heap: list[tuple[float, int, weakref.ref[Silent]]] = []
        self._order = itertools.count()

    def touch(self, conn: Silent) -> None:
        """`conn` was just heard from (or opened)."""
        last = self._last
        last.pop(conn, None)
        last[conn] = self._loop.time()
        if self._timer is None or len(last) == 1:
            self._arm()

    def lapses_at(self, conn: Silent, valid_until: float) -> None:
        """Close `conn` 4401 when its credential lapses (`valid_until`, Unix seconds)."""
        when = self._loop.time() + (valid_until - time.time())
        self._lapses[conn] = when
        heapq.heappush(self._heap, (when, next(self._order), weakref.ref(conn)))
        if len(self._heap) > 2 * len(self._lapses) + 64:  # mostly gone connections: drop them
            self._heap = [entry for entry in self._heap if self._current(entry)]
            heapq.heapify(self._heap)
        self._arm()

    def remove(self, conn: Silent) -> None:
        self._last.pop(conn, None)
        self._lapses.pop(conn, None)

    def __len__(self) -> int:
        return len(self._last)

    def _current(self, entry: tuple[float, int, weakref.ref[Silent]]) -> Silent | None:
        conn = entry[2]()
        return conn if conn is not None and self._lapses.get(conn) == entry[0] else None

    def _next_lapse(self) -> float | None:
        while self._heap and self._current(self._heap[0]) is None:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def _arm(self) -> None:
        dues = [] if not self._last else [next(iter(self._last.values())) + settings.HUB_WS_IDLE_TIMEOUT_S]
        if (lapse := self._next_lapse()) is not None:
            dues.append(lapse)
        if not dues:
            return
        due = min(dues)
        if self._timer is not None:
            if self._due <= due:
                return
            self._timer.cancel()
        self._due = due
        self._timer = self._loop.call_at(due, self._fire)

    def _fire(self) -> None:
        self._timer = None
        now = self._loop.time()
        deadline = now - settings.HUB_WS_IDLE_TIMEOUT_S
        silent = []
        for conn, at in self._last.items():
            if at > deadline:
                break
            silent.append(conn)
        for conn in silent:
            del self._last[conn]
        lapsed = []
        while self._heap and self._heap[0][0] <= now:
            entry = heapq.heappop(self._heap)
            if (current := self._current(entry)) is not None:
                del self._lapses[current]
                lapsed.append(current)
        if silent or lapsed:
            task = self._loop.create_task(self._close(silent, lapsed))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        self._arm()

    async def _close(self, silent: list[Silent], lapsed: list[Silent]) -> None:
        for conn, close in [*((c, c.close_idle) for c in silent), *((c, c.close_expired) for c in lapsed)]:
            try:
                await close()
            except Exception:  # one failing close must not keep the others open
                log.exception("closing connection %r failed", conn)


_sweepers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, IdleSweeper] = weakref.WeakKeyDictionary()


def idle_sweeper() -> IdleSweeper:
    """This event loop's sweeper (daphne runs one loop; tests make one per test)."""
    loop = asyncio.get_running_loop()
    sweeper = _sweepers.get(loop)
    if sweeper is None:
        sweeper = _sweepers[loop] = IdleSweeper(loop)
    return sweeper
