"""Group commit of `message.send` (ADR 0036): each process stores what is waiting, together.

Every connection's `message.send` joins this process's queue; the writer (hub.coalesce.Coalescer)
takes everything queued (up to HUB_SEND_BATCH_MAX) and stores it together — on PostgreSQL text messages in one
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
import uuid
import weakref
from collections.abc import Awaitable

from channels.db import database_sync_to_async
from django.conf import settings

from hub import events, metrics
from hub.coalesce import Coalescer
from hub.errors import Busy, HubError
from hub.services import message_commit, ratelimit
from hub.services.messages import (
    SendRequest,
    Sent,
    admission_refusals,
    answer_repeats,
    batch_repeats,
    messages_send,
    with_limits,
)

log = logging.getLogger(__name__)


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


class SendQueue:
    """This event loop's group commit: admission, then one writer (hub.coalesce.Coalescer) that stores
    what was queued while the previous batch was in flight, in queue order."""

    def __init__(self) -> None:
        self.batches: Coalescer[SendRequest, Sent | HubError] = Coalescer(self._store, settings.HUB_SEND_BATCH_MAX)
        self.waiting = 0  # queued, not yet taken into a batch
        self.tasks: set[asyncio.Task[None]] = set()  # announcements being published
        # Seconds of writer time per message, smoothed: the basis of `retry_after_s`.
        self.cost_per_message = 0.001
        self.lag: LoopLag | None = None

    def submit(self, request: SendRequest) -> asyncio.Future[Sent]:
        """Queue one send now (its place in line is taken before the caller's next await); `busy` at once
        past capacity."""
        loop = asyncio.get_running_loop()
        if self.lag is None:
            self.lag = LoopLag(loop)
        behind = self.lag.seconds
        if self.waiting >= settings.HUB_SEND_QUEUE_MAX or behind > settings.HUB_SEND_MAX_LAG_MS / 1000:
            # Past capacity: refuse at once (cheaply: no query, no event) rather than queue, so the
            # latency of what is accepted stays bounded; the client resends the same client_id.
            metrics.SEND_REFUSED_BUSY.inc()
            wait = max(self.waiting * self.cost_per_message, 2 * behind)
            raise Busy(
                "The hub is at capacity; resend the same client_id shortly.",
                retry_after_s=round(max(0.05, wait) * random.uniform(1.0, 1.5), 3),  # spread the retries
            )
        self.waiting += 1
        # Joins the coalescer now, so sends are stored in the order they were submitted; a refused one's
        # HubError is raised to its sender alone (the coalescer raises exception results).
        return self.batches.enqueue(request)  # type: ignore[return-value]

    async def _store(self, batch: list[SendRequest]) -> list[Sent | HubError]:
        """One batch: stored, announced once, each outcome to its own sender. Raises only when nothing
        of it was stored (then every sender of the batch hears why)."""
        self.waiting -= len(batch)
        started = time.monotonic()
        try:
            outcomes = await store_batch(batch)
        except Exception:
            log.exception("a batch of %d sends failed before anything was stored", len(batch))
            raise
        elapsed = time.monotonic() - started
        self.cost_per_message = 0.8 * self.cost_per_message + 0.2 * (elapsed / len(batch))
        metrics.SEND_BATCH_SIZE.observe(len(batch))
        self._announce([o for o in outcomes if isinstance(o, Sent) and o.announce_to])
        return outcomes

    def _announce(self, created: list[Sent]) -> None:
        """`message.created` of a committed batch, in one pipeline, without holding up the replies: the
        senders' answers go out while it is published (the reply carries the same message)."""
        if created:
            task = asyncio.get_running_loop().create_task(_publish_created(created))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)


async def store_batch(requests: list[SendRequest]) -> list[Sent | HubError]:
    """Admission (requests, rate limits) on the event loop, then storage in queue order: text sends
    through the one-statement PostgreSQL path, the rest (attachments, repeats, SQLite, a failed
    statement) through the ORM path in one worker-thread hop.

    Seqs follow the order of `requests` in each conversation whatever path each send takes: the
    batch is stored in phases (`_phases`), each of which gives a conversation one path only. After
    admission nothing raises: a failure reaches only the requests it concerns."""
    outcomes: list[Sent | HubError | None] = list(admission_refusals(requests))
    limits = await ratelimit.message_send_allowances_async(
        user_ids=[r.sender.id for r, exc in zip(requests, outcomes, strict=True) if exc is None]
    )
    outcomes = list(with_limits(outcomes, limits))  # type: ignore[arg-type]
    echoes = batch_repeats(requests, outcomes)
    todo = [i for i in range(len(requests)) if outcomes[i] is None and i not in echoes]
    fast_path = message_commit.available()
    for phase in _phases(requests, todo, fast_path=fast_path):
        fast = [i for i in phase if fast_path and not requests[i].attachment_ids]
        if fast:
            try:
                stored = await message_commit.messages_commit([requests[i] for i in fast])
            except Exception:  # nothing of it was stored; the ORM path sends them
                log.warning("the one-statement batch failed; %d sends go through the ORM", len(fast), exc_info=True)
            else:
                for i, outcome in zip(fast, stored, strict=True):
                    outcomes[i] = outcome
        rest = [i for i in phase if outcomes[i] is None]
        if rest:
            for i, outcome in zip(rest, await _send_through_orm([requests[i] for i in rest]), strict=True):
                outcomes[i] = outcome
    answer_repeats(echoes, outcomes)
    assert all(outcome is not None for outcome in outcomes)
    return outcomes  # type: ignore[return-value]


def _phases(requests: list[SendRequest], todo: list[int], *, fast_path: bool) -> list[list[int]]:
    """`todo` cut into phases stored one after another, in which each conversation takes one path only.

    A conversation's sends move to the next phase where their path changes (text ↔ attachments), so
    [photo, text, text] is stored as the photo, then the two texts: seqs in queue order. Usually
    there is one phase."""
    at: dict[uuid.UUID, tuple[int, bool]] = {}
    phases: list[list[int]] = []
    for i in todo:
        r = requests[i]
        fast = fast_path and not r.attachment_ids
        phase, path = at.get(r.conversation_id, (0, fast))
        if path != fast:
            phase += 1
        at[r.conversation_id] = (phase, fast)
        if phase == len(phases):
            phases.append([])
        phases[phase].append(i)
    return phases


def _send_isolated(requests: list[SendRequest]) -> list[Sent | HubError]:
    """`messages_send` for the group commit: a batch that fails is retried request by request, so a
    failure reaches only its own sender (`internal`: a bug, logged)."""
    try:
        return messages_send(requests, defer_announce=True, checked=True)
    except Exception:
        if len(requests) == 1:
            log.exception("a send failed")
            return [HubError()]
        log.warning("a batch of %d sends failed; each is sent alone", len(requests), exc_info=True)
        return [_send_isolated([r])[0] for r in requests]


_send_through_orm = database_sync_to_async(_send_isolated, thread_sensitive=False)


async def _publish_created(created: list[Sent]) -> None:
    try:
        await events.publish_async((events.MessageCreated.trusted({"message": s.data}), s.announce_to) for s in created)
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
    # shield: a sender that disconnects mid-batch must not cancel its queued send (stored all the same).
    return asyncio.shield(queue.submit(request))


async def message_send_queued(request: SendRequest) -> Sent:
    """Store one send through this process's group commit (queue it, then wait for it)."""
    return await message_send_submit(request)
