"""The group commit's PostgreSQL fast path (ADR 0036): a batch of text sends in one round trip, on the event loop.

`messages_send` (hub/services/messages.py) stores a batch through the ORM in a worker thread: about
seven round trips, each of which the thread must win the GIL back from a busy event loop to read.
Under load those hand-overs, not PostgreSQL, set the pace. Here the same rules run as one SQL
statement — its own transaction, one round trip — on a connection owned by this process's event
loop:

- the caller has checked bodies and taken rate-limit tokens (hub/services/send_queue.py);
- the statement gathers the facts of the send rules (membership, blocks, unknown conversations,
  earlier client_ids and their conversations) and stores what they admit; the rules themselves
  (`access_refusal`, `idempotency` in hub/services/messages.py) decide every outcome in Python,
  the same functions the ORM path calls;
- each conversation's seqs are taken with one `UPDATE … RETURNING` over rows locked in id order
  (`locked`: a sort under the row locks, so batches of several processes never wait on each
  other in a cycle), and the messages inserted with them.

Outcomes the statement cannot answer alone (a repeated client_id, whose first message and
attachments are loaded by the ORM) are left to the caller as `None`. If the statement fails (a
client_id stored concurrently by another process trips the unique constraint) nothing of the
batch is stored and the caller sends the requests through the ORM path."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Sequence
from typing import Any

import psycopg
from django.db import connections
from django.utils import timezone

from hub.errors import HubError
from hub.models import Message, MessageKind
from hub.services.conversations import as_uuid, block_between_sql
from hub.services.messages import SendRequest, Sent, access_refusal, idempotency

_BATCH_SQL = f"""
WITH req AS (
    SELECT * FROM unnest(%(idx)s::int[], %(conv)s::uuid[], %(sender)s::uuid[], %(client_id)s::text[], %(body)s::text[])
        AS r(idx, conv, sender, client_id, body)
),
chk AS (
    -- The facts the send rules need (hub.services.messages decides from them). Scalar sub-selects
    -- with LIMIT, not EXISTS: PostgreSQL may turn an EXISTS into a hashed scan of the whole table;
    -- these stay one index probe per request.
    SELECT r.*,
        (SELECT true FROM conversation_members m WHERE m.conversation_id = r.conv AND m.user_id = r.sender LIMIT 1)
            IS NOT NULL AS is_member,
        (SELECT true FROM conversations c WHERE c.id = r.conv LIMIT 1) IS NOT NULL AS conv_exists,
        CASE WHEN (SELECT true FROM blocks b WHERE b.blocker_id = r.sender OR b.blocked_id = r.sender LIMIT 1) IS NULL
            THEN false  -- the usual case: the sender has no block at all
            ELSE EXISTS (
                SELECT 1 FROM conversation_members m JOIN blocks b ON {block_between_sql("m.user_id", "r.sender")}
                WHERE m.conversation_id = r.conv
            )
        END AS blocked,
        (SELECT e.conversation_id FROM messages e WHERE e.sender_id = r.sender AND e.client_id = r.client_id LIMIT 1)
            AS earlier_conv
    FROM req r
),
fresh AS (
    -- Stored: exactly the requests `access_refusal` admits whose client_id the sender has not used.
    SELECT chk.*, row_number() OVER (PARTITION BY conv ORDER BY idx) AS rn
    FROM chk WHERE is_member AND NOT blocked AND earlier_conv IS NULL
),
counts AS (SELECT conv, count(*) AS n FROM fresh GROUP BY conv),
locked AS (
    SELECT c.id FROM conversations c WHERE c.id IN (SELECT conv FROM counts) ORDER BY c.id FOR NO KEY UPDATE
),
seqs AS (
    UPDATE conversations c
    SET last_seq = c.last_seq + v.n, last_version = c.last_version + v.n, last_message_at = %(now)s
    FROM (SELECT locked.id, counts.n FROM locked JOIN counts ON counts.conv = locked.id) v
    WHERE c.id = v.id
    RETURNING c.id, c.last_seq - v.n AS base, c.last_version - v.n AS vbase
),
ins AS (
    INSERT INTO messages (id, conversation_id, seq, version, sender_id, client_id, kind, body, data, created_at)
    SELECT gen_random_uuid(), f.conv, s.base + f.rn, s.vbase + f.rn, f.sender, f.client_id, %(kind)s, f.body,
        '{{}}'::jsonb, %(now)s
    FROM fresh f JOIN seqs s ON s.id = f.conv
    RETURNING id, seq, version, sender_id, client_id
)
SELECT ch.idx, ch.conv_exists, ch.is_member, ch.blocked, ch.earlier_conv, i.id, i.seq, i.version,
    (SELECT array_agg(m.user_id) FROM conversation_members m WHERE m.conversation_id = ch.conv) AS members
FROM chk ch LEFT JOIN ins i ON i.sender_id = ch.sender AND i.client_id = ch.client_id
"""


class Connections:
    """Each event loop's idle autocommit connections: one per batch in flight, opened when first needed."""

    def __init__(self) -> None:
        self._idle: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, list[psycopg.AsyncConnection[Any]]] = (
            weakref.WeakKeyDictionary()
        )

    async def acquire(self) -> psycopg.AsyncConnection[Any]:
        idle = self._idle.setdefault(asyncio.get_running_loop(), [])
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
        params = connections["default"].get_connection_params()
        for sync_only in ("cursor_factory", "context"):
            params.pop(sync_only, None)
        return await psycopg.AsyncConnection.connect(**params, autocommit=True)

    def release(self, conn: psycopg.AsyncConnection[Any]) -> None:
        if not conn.closed:
            self._idle.setdefault(asyncio.get_running_loop(), []).append(conn)

    def close_all(self) -> None:
        """Close every loop's connections at once, from sync code (tests end their loops with it)."""
        for idle in list(self._idle.values()):
            for conn in idle:
                conn.pgconn.finish()
        self._idle.clear()

    async def close_loop(self) -> None:
        """Close this loop's connections."""
        for conn in self._idle.pop(asyncio.get_running_loop(), []):
            await conn.close()


_connections = Connections()
close_connections = _connections.close_all
close_connection = _connections.close_loop


def available() -> bool:
    """The fast path needs PostgreSQL (the ORM path serves SQLite, e.g. `make run`)."""
    return connections["default"].vendor == "postgresql"


async def messages_commit(requests: Sequence[SendRequest]) -> list[Sent | HubError | None]:
    """Store a batch of text sends (no attachments, no two with one sender and client_id; checked by
    `request_refusal`); `None` where the ORM path must answer (a repeat, whose first message it loads)."""
    if not requests:
        return []
    now = timezone.now()
    params = {
        "idx": list(range(len(requests))),
        "conv": [r.conversation_id for r in requests],
        "sender": [r.sender.id for r in requests],
        "client_id": [r.client_id for r in requests],
        "body": [r.body for r in requests],
        "now": now,
        "kind": MessageKind.TEXT.value,
    }
    conn = await _connections.acquire()
    try:
        async with conn.cursor() as cur:  # autocommit: the statement is its own transaction
            # Prepared: planning the statement cost about as much as running it for 100 messages.
            await cur.execute(_BATCH_SQL, params, prepare=True)
            rows = await cur.fetchall()
    except Exception:
        # Not reused: it may be broken, or hold a prepared plan that no longer fits the schema
        # (after a migration); the next batch connects and prepares afresh.
        await conn.close()
        raise
    finally:
        _connections.release(conn)
    outcomes: list[Sent | HubError | None] = [None] * len(requests)
    for idx, conv_exists, is_member, blocked, earlier_conv, message_id, seq, version, members in rows:
        r = requests[idx]
        refusal = access_refusal(r, conversation_exists=conv_exists, is_member=is_member, blocked=blocked)
        verdict = refusal or idempotency(r, as_uuid(earlier_conv) if earlier_conv is not None else None)
        if isinstance(verdict, HubError):
            outcomes[idx] = verdict
        elif verdict == "new" and message_id is not None:
            message = Message(
                id=as_uuid(message_id),
                conversation_id=r.conversation_id,
                seq=seq,
                version=version,
                sender=r.sender,
                client_id=r.client_id,
                kind=MessageKind.TEXT,
                body=r.body,
                data={},
                created_at=now,
            )
            outcomes[idx] = Sent(message=message, attachments=[], announce_to=list(members or []))
        # else a repeat: answered with the first message, by the ORM path
    return outcomes
