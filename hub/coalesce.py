"""Coalescing of concurrent calls into batches: the hub's one "batch what arrives while the last batch is in flight".

A reconnect storm makes thousands of identical small calls (a presence script, a peers query) at
once; made one by one they queue behind each other in Redis round trips or in channels' single
sync thread. A `Coalescer` runs the first call at once and gathers every call that arrives while
that batch is in flight into the next batch, so a lone call costs what it did and a storm costs
one round trip per batch. The same helper batches the hub's PUBLISHes (hub.realtime) and the
router's SUBSCRIBEs (consumers.router)."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Coalescer(Generic[T, R]):
    """Calls `run(items)` with the items submitted while the previous batch ran; each caller gets its own result.

    `run` returns one result per item, in order; a result that is an exception is raised to that item's
    caller alone. If `run` raises, every caller of that batch gets the exception and the next batch
    runs as usual."""

    def __init__(self, run: Callable[[list[T]], Awaitable[Sequence[R]]], max_batch: int = 2000) -> None:
        self._run = run
        self._max = max_batch
        self._waiting: list[tuple[T, asyncio.Future[R] | None]] = []
        self._draining = False
        self._task: asyncio.Task[None] | None = None

    async def __call__(self, item: T) -> R:
        return await self.enqueue(item)

    def enqueue(self, item: T) -> asyncio.Future[R]:
        """Queue `item` for the next batch now (its place in line is taken before the caller's next
        await) and return the future of its result: no task per item, for hot paths (the send queue)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._waiting.append((item, future))
        self._start(loop)
        return future

    def submit(self, item: T) -> None:
        """Queue `item` for the next batch without waiting for it (its result and errors are dropped)."""
        self._waiting.append((item, None))
        self._start(asyncio.get_running_loop())

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._draining:
            self._draining = True
            self._task = loop.create_task(self._drain())

    async def _drain(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[: self._max], self._waiting[self._max :]
                try:
                    results = await self._run([item for item, _ in batch])
                except Exception as exc:  # each caller of the batch learns it failed
                    for _, future in batch:
                        if future is not None and not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if future is None or future.done():  # a cancelled caller just misses its result
                        continue
                    if isinstance(result, BaseException):  # that item's own failure, raised to its caller
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self._draining = False


_per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Any]] = weakref.WeakKeyDictionary()


def loop_coalescer(
    name: str, run: Callable[[list[T]], Awaitable[Sequence[R]]], *, max_batch: int = 2000
) -> Coalescer[T, R]:
    """The running loop's coalescer of this name (futures belong to one loop; tests run one loop per test)."""
    loop = asyncio.get_running_loop()
    mine = _per_loop.setdefault(loop, {})
    coalescer: Coalescer[T, R] | None = mine.get(name)
    if coalescer is None:
        coalescer = mine[name] = Coalescer(run, max_batch=max_batch)
    return coalescer
