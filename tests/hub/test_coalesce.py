"""hub.coalesce: the one batching helper, for awaited calls and for fire-and-forget submissions."""

from __future__ import annotations

import asyncio

from hub.coalesce import Coalescer, loop_coalescer


async def test_submitted_items_join_the_batches_of_awaited_ones_in_order() -> None:
    batches: list[list[int]] = []
    started = asyncio.Event()

    async def run(items: list[int]) -> list[int]:
        batches.append(items)
        started.set()
        await asyncio.sleep(0.01)
        return [i * 10 for i in items]

    coalescer: Coalescer[int, int] = Coalescer(run, max_batch=3)
    first = asyncio.ensure_future(coalescer(1))
    await started.wait()  # the first batch is in flight
    coalescer.submit(2)
    coalescer.submit(3)
    assert await asyncio.gather(first, coalescer(4), coalescer(5)) == [10, 40, 50]
    assert batches == [[1], [2, 3, 4], [5]]  # what came meanwhile, at most max_batch at a time


async def test_a_failing_batch_of_submissions_does_not_stop_the_next() -> None:
    async def run(items: list[int]) -> list[int]:
        if -1 in items:
            raise ValueError("bad batch")
        return items

    coalescer = loop_coalescer("test.submit", run, max_batch=10)
    coalescer.submit(-1)
    await asyncio.sleep(0.01)  # nobody waits for that batch's error
    assert await coalescer(7) == 7
    assert loop_coalescer("test.submit", run) is coalescer


async def test_an_exception_result_is_raised_to_its_caller_alone_and_enqueue_keeps_order() -> None:
    batches: list[list[int]] = []

    async def run(items: list[int]) -> list[object]:
        batches.append(items)
        await asyncio.sleep(0)
        return [ValueError(f"odd {i}") if i % 2 else i * 10 for i in items]

    coalescer: Coalescer[int, object] = Coalescer(run)
    futures = [coalescer.enqueue(i) for i in range(4)]  # no task per item: queued in call order
    results = await asyncio.gather(*futures, return_exceptions=True)
    assert [r if isinstance(r, int) else str(r) for r in results] == [0, "odd 1", 20, "odd 3"]
    assert batches == [[0, 1, 2, 3]]
