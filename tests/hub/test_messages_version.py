"""`version` and the `{seq, version}` cursor (PROTOCOL §2.1): every create, edit and delete takes the
conversation's next version, on both storage paths, and `sync` hands back what changed while away."""

from __future__ import annotations

from typing import Any

import pytest
from channels.db import database_sync_to_async as sync_to_async

from hub.errors import BadRequest
from hub.models import Conversation
from hub.services import message_commit
from hub.services.messages import (
    Cursor,
    SendRequest,
    Sent,
    message_delete,
    message_edit,
    message_post_system,
    sync,
)
from hub.services.send_queue import store_batch
from tests.factories import booking_with_conversation

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.mark.asyncio
@pytest.mark.parametrize("path", ["sql", "orm"])
async def test_creates_edits_and_deletes_take_the_next_version_and_sync_returns_the_changes(
    path: str, settings: Any, monkeypatch: Any
) -> None:
    settings.HUB_SEND_RATE_BURST = 1000
    if path == "orm":
        monkeypatch.setattr(message_commit, "available", lambda: False)
    booking, conversation = await sync_to_async(booking_with_conversation)()
    me = booking.customer
    sent = await store_batch([SendRequest(me, conversation.id, f"m{n}", f"body {n}") for n in range(4)])
    assert [(s.message.seq, s.message.version) for s in sent if isinstance(s, Sent)] == [(1, 1), (2, 2), (3, 3), (4, 4)]
    assert [s.data["version"] for s in sent if isinstance(s, Sent)] == [1, 2, 3, 4]
    first, second, third = (s.message for s in sent[:3] if isinstance(s, Sent))
    # The device holds seq 4 / version 4 and goes away; meanwhile: an edit, a delete, a system message, an edit.
    edited = await sync_to_async(message_edit)(user=me, message_id=second.id, body="fixed")
    deleted = await sync_to_async(message_delete)(user=me, message_id=first.id)
    system = await sync_to_async(message_post_system)(conversation=conversation, body="Booking confirmed")
    again = await sync_to_async(message_edit)(user=me, message_id=third.id, body="fixed too")
    assert (edited.message.version, deleted.message.version, system.version, again.message.version) == (5, 6, 7, 8)
    assert system.seq == 5
    more = await store_batch([SendRequest(me, conversation.id, "m5", "after")])
    assert isinstance(more[0], Sent) and (more[0].message.seq, more[0].message.version) == (6, 9)
    refreshed = await sync_to_async(Conversation.objects.get)(id=conversation.id)
    assert (refreshed.last_seq, refreshed.last_version) == (6, 9)

    [entry] = await sync_to_async(sync)(user=me, cursors={conversation.id: Cursor(seq=4, version=4)})
    assert entry["version"] == 9
    assert [(m["seq"], m["version"]) for m in entry["messages"]] == [(5, 7), (6, 9)]
    # The changes to messages the device held, oldest change first; a deleted one without its content.
    assert [(m["seq"], m["version"], m["deleted"], m["body"]) for m in entry["changed"]] == [
        (2, 5, False, "fixed"),
        (1, 6, True, ""),
        (3, 8, False, "fixed too"),
    ]
    assert entry["changed"][1]["attachments"] == []

    # From a later version only the later change; a plain number gives no `changed`, and still the version.
    [later] = await sync_to_async(sync)(user=me, cursors={conversation.id: Cursor(seq=6, version=7)})
    assert [m["seq"] for m in later["changed"]] == [3] and later["messages"] == []
    [plain] = await sync_to_async(sync)(user=me, cursors={conversation.id: 4})
    assert "changed" not in plain and plain["version"] == 9


@pytest.mark.django_db
def test_sync_with_versions_costs_one_query_more_for_any_number_of_conversations(
    django_assert_max_num_queries: Any,
) -> None:
    booking, _ = booking_with_conversation()
    customer = booking.customer
    cursors: dict[Any, Any] = {}
    for _ in range(6):
        _, conversation = booking_with_conversation(customer=customer)
        for i in range(3):
            message_post_system(conversation=conversation, body=f"s{i}")
        cursors[conversation.id] = Cursor(seq=3, version=3)
    with django_assert_max_num_queries(6):
        result = sync(user=customer, cursors=cursors)
    assert all(entry["changed"] == [] and entry["version"] == 3 for entry in result)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "cursor", [Cursor(seq=0, version=-1), Cursor(seq=-1), Cursor(seq=2**63), Cursor(seq=0, version=2**63), 2**70]
)
def test_cursors_out_of_range_are_bad_request_not_a_failed_query(cursor: Any) -> None:
    booking, conversation = booking_with_conversation()
    with pytest.raises(BadRequest):
        sync(user=booking.customer, cursors={conversation.id: cursor})
