"""Group commit of `message.send` (ADR 0036): each process stores what is waiting, together.

Every connection's `message.send` joins this process's queue; the writer takes everything queued
(up to HUB_SEND_BATCH_MAX) and stores it together — on PostgreSQL text messages in one
statement on the event loop (hub/services/message_commit.py), anything else with `messages_send`
in one worker-thread hop — while the next batch gathers.
Under light load a batch is one message and nothing waits; under heavy load the per-message cost
falls as batches grow, instead of every send paying its own round trips and commit.

Admission is bounded: past HUB_SEND_QUEUE_MAX waiting sends, or while the event loop runs more
than HUB_SEND_MAX_LAG_MS behind (work waiting that no queue of ours shows: frames in socket
buffers, events to deliver), the hub answers `busy` with `retry_after_s` at once (the client
resends the same client_id later) rather than letting the backlog, and everyone's latency, grow
without limit. Nothing is dropped: a send is either refused
before anything is stored, or stored and answered."""

from __future__ import annotations

import asyncio
import logging
import random
import time
import weakref
from collections.abc import Awaitable
from dataclasses import dataclass, field

from channels.db import database_sync_to_async
from django.conf import settings

from hub import metrics, realtime
from hub.errors import Busy, HubError
from hub.services import message_commit, ratelimit
from hub.services.messages import SendRequest, Sent, body_refusals, messages_send, with_limits

log = logging.getLogger(__name__)


@dataclass
class _Waiting:
    request: SendRequest
    done: asyncio.Future[Sent]


class LoopLag:
    """How late this event loop runs what is due, in seconds: the process's backlog of work.

    Frames wait in socket buffers and the loop's ready queue before any handler sees them, so the
    queue of sends alone does not show an overloaded process. A timer due every INTERVAL_S
    measures how late it fires; the figure jumps up at once and decays over a few ticks."""

    INTERVAL_S = 0.05

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.seconds = 0.0
        self._loop = loop
        loop.call_later(self.INTERVAL_S, self._tick, loop.time() + self.INTERVAL_S)

    def _tick(self, due: float) -> None:
        now = self._loop.time()
        late = max(0.0, now - due)
        self.seconds = max(late, 0.7 * self.seconds + 0.3 * late)
        self._loop.call_later(self.INTERVAL_S, self._tick, now + self.INTERVAL_S)


@dataclass
class SendQueue:
    """This event loop's queue of sends and its writer."""

    pending: list[_Waiting] = field(default_factory=list)
    writer: asyncio.Task[None] | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)  # announcements being published
    # Seconds of writer time per message, smoothed: the basis of `retry_after_s`.
    cost_per_message: float = 0.001
    lag: LoopLag | None = None

    def submit(self, request: SendRequest) -> asyncio.Future[Sent]:
        loop = asyncio.get_running_loop()
        if self.lag is None:
            self.lag = LoopLag(loop)
        behind = self.lag.seconds
        if len(self.pending) >= settings.HUB_SEND_QUEUE_MAX or behind > settings.HUB_SEND_MAX_LAG_MS / 1000:
            # Past capacity: refuse at once (cheaply: no query, no event) rather than queue, so the
            # latency of what is accepted stays bounded; the client resends the same client_id.
            metrics.SEND_REFUSED_BUSY.inc()
            wait = max(len(self.pending) * self.cost_per_message, 2 * behind)
            raise Busy(
                "The hub is at capacity; resend the same client_id shortly.",
                retry_after_s=round(max(0.05, wait) * random.uniform(1.0, 1.5), 3),  # spread the retries
            )
        waiting = _Waiting(request, loop.create_future())
        self.pending.append(waiting)
        if self.writer is None or self.writer.done():
            self.writer = loop.create_task(self._write())
        return waiting.done

    async def _write(self) -> None:
        """The writer: takes what is waiting, stores it, again until nothing waits. One per process, so
        batches commit in the order their sends were queued (a connection's pipelined sends keep
        their order)."""
        while self.pending:
            limit = settings.HUB_SEND_BATCH_MAX
            batch, self.pending = self.pending[:limit], self.pending[limit:]
            await self._store(batch)

    async def _store(self, batch: list[_Waiting]) -> None:
        started = time.monotonic()
        try:
            outcomes = await store_batch([w.request for w in batch])
        except Exception as exc:  # the batch stored nothing (rolled back): every sender hears why
            log.exception("a batch of %d sends failed", len(batch))
            for w in batch:
                if not w.done.done():
                    w.done.set_exception(exc)
            return
        elapsed = time.monotonic() - started
        self.cost_per_message = 0.8 * self.cost_per_message + 0.2 * (elapsed / len(batch))
        metrics.SEND_BATCH_SIZE.observe(len(batch))
        self._announce([o for o in outcomes if isinstance(o, Sent) and o.announce_to])
        for w, outcome in zip(batch, outcomes, strict=True):
            if w.done.done():  # the sender went away; its message is stored all the same
                continue
            if isinstance(outcome, HubError):
                w.done.set_exception(outcome)
            else:
                w.done.set_result(outcome)

    def _announce(self, created: list[Sent]) -> None:
        """`message.created` of a committed batch, in one pipeline, without holding up the replies: the
        senders' answers go out while it is published (the reply carries the same message)."""
        if created:
            task = asyncio.get_running_loop().create_task(_publish_created(created))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)


async def store_batch(requests: list[SendRequest]) -> list[Sent | HubError]:
    """Admission (bodies, rate limits) on the event loop, then text sends through the one-statement
    PostgreSQL path and whatever it leaves (attachments, repeats, SQLite, a failed statement)
    through the ORM path in one worker-thread hop."""
    refused = body_refusals(requests)
    limits = await ratelimit.message_send_allowances_async(
        user_ids=[r.sender.id for r, exc in zip(requests, refused, strict=True) if exc is None]
    )
    outcomes: list[Sent | HubError | None] = list(with_limits(refused, limits))
    fast = [i for i, r in enumerate(requests) if outcomes[i] is None and not r.attachment_ids]
    if fast and message_commit.available():
        try:
            stored = await message_commit.messages_commit([requests[i] for i in fast])
        except Exception:  # nothing of it was stored; the ORM path sends each alone
            log.warning("the one-statement batch failed; %d sends go through the ORM", len(fast), exc_info=True)
        else:
            for i, outcome in zip(fast, stored, strict=True):
                outcomes[i] = outcome
    rest = [i for i, outcome in enumerate(outcomes) if outcome is None]
    if rest:
        slow = database_sync_to_async(messages_send, thread_sensitive=False)
        for i, outcome in zip(
            rest, await slow([requests[i] for i in rest], defer_announce=True, checked=True), strict=True
        ):
            outcomes[i] = outcome
    return [outcome for outcome in outcomes if outcome is not None]


async def _publish_created(created: list[Sent]) -> None:
    try:
        await realtime.emit_many_async(("message.created", {"message": s.data}, s.announce_to) for s in created)
    except Exception:  # like on_commit(robust=True): the messages are stored; devices recover via sync
        log.exception("message.created of %d messages not announced", len(created))


_queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SendQueue] = weakref.WeakKeyDictionary()


def message_send_submit(request: SendRequest) -> Awaitable[Sent]:
    """Queue one send in this process's group commit now (`busy` at once past capacity); await the
    result for the stored message or the request's own error."""
    loop = asyncio.get_running_loop()
    queue = _queues.get(loop)
    if queue is None:
        queue = _queues[loop] = SendQueue()
    # shield: a sender that disconnects mid-batch must not cancel the others' shared future chain.
    return asyncio.shield(queue.submit(request))


async def message_send_queued(request: SendRequest) -> Sent:
    """Store one send through this process's group commit (queue it, then wait for it)."""
    return await message_send_submit(request)
