"""Conversation requests over /ws/ (PROTOCOL §2.1), in process through the full ASGI stack."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from channels.db import database_sync_to_async as sync_to_async
from django.core.files.uploadedfile import SimpleUploadedFile

from hub import metrics
from hub.models import Attachment, Block, ConversationMember, Message
from hub.services.attachments import attachment_upload
from hub.services.presence import online_user_ids
from tests.conftest import ws_connect
from tests.factories import AdminFactory, CustomerFactory, booking_with_conversation
from tests.wsclient import FrameError

pytestmark = pytest.mark.django_db(transaction=True)


@sync_to_async
def chat() -> tuple[Any, Any, Any]:
    """(customer, provider user, conversation) of a booking."""
    booking, conversation = booking_with_conversation()
    return booking.customer, booking.provider.user, conversation


def cid() -> str:
    return str(uuid.uuid4())


async def send(client: Any, conversation: Any, body: str = "hi", **extra: Any) -> dict[str, Any]:
    data = {"conversation_id": str(conversation.id), "client_id": extra.pop("client_id", cid()), "body": body}
    data.update(extra)
    return (await client.request("message.send", data))["message"]


async def expect_error(code: str, client: Any, frame_type: str, data: dict[str, Any]) -> dict[str, Any]:
    with pytest.raises(FrameError) as err:
        await client.request(frame_type, data)
    assert err.value.code == code, err.value.data
    return err.value.data


# --- message.send --------------------------------------------------------------------------------


async def test_send_reaches_every_device_of_every_member_and_is_persisted_first() -> None:
    customer, provider, conversation = await chat()
    async with ws_connect(customer) as c1, ws_connect(customer) as c2, ws_connect(provider) as p:
        message = await send(c1, conversation, "  Hello <b>there</b>  ", client_id="c-1")
        assert message["seq"] == 1 and message["client_id"] == "c-1"
        assert message["body"] == "  Hello <b>there</b>  "  # stored as given
        assert message["sender_id"] == str(customer.id) and message["kind"] == "text"
        assert message["conversation_id"] == str(conversation.id)
        assert message["attachments"] == [] and message["deleted"] is False and message["edited_at"] is None
        stored = await sync_to_async(Message.objects.get)(id=message["id"])
        assert stored.seq == 1 and stored.body == message["body"]
        for client in (c1, c2, p):
            assert (await client.event("message.created"))["message"] == message
        second = await send(p, conversation, "Hi!")
        assert second["seq"] == 2
        assert (await c2.event("message.created"))["message"]["seq"] == 2


async def test_repeated_client_id_returns_first_message_and_creates_nothing() -> None:
    customer, provider, conversation = await chat()
    async with ws_connect(customer) as c, ws_connect(provider) as p:
        first = await send(c, conversation, "once", client_id="same")
        await p.event("message.created")
        again = await send(c, conversation, "twice?", client_id="same")
        assert again == first
        await p.no_event("message.created", within=0.3)
        # The same client_id from another sender is another message.
        other = await send(p, conversation, "mine", client_id="same")
        assert other["seq"] == 2
    assert await sync_to_async(Message.objects.count)() == 2


async def test_body_limits() -> None:
    customer, _, conversation = await chat()
    async with ws_connect(customer) as c:
        for body in ["", "   \n\t "]:
            await expect_error(
                "bad_request",
                c,
                "message.send",
                {"conversation_id": str(conversation.id), "client_id": cid(), "body": body},
            )
        await expect_error(
            "bad_request",
            c,
            "message.send",
            {"conversation_id": str(conversation.id), "client_id": cid(), "body": "x" * 4001},
        )
        padded = "  " + "x" * 4000 + "  "
        assert (await send(c, conversation, padded))["body"] == padded
        await expect_error(
            "bad_request",
            c,
            "message.send",
            {"conversation_id": str(conversation.id), "body": "no client id"},
        )
        await expect_error(
            "bad_request", c, "message.send", {"conversation_id": "nope", "client_id": cid(), "body": "x"}
        )
    assert await sync_to_async(Message.objects.count)() == 1


async def test_send_to_unknown_or_foreign_conversation() -> None:
    _, _, conversation = await chat()
    stranger = await sync_to_async(CustomerFactory)()
    async with ws_connect(stranger) as s:
        await expect_error(
            "forbidden",
            s,
            "message.send",
            {"conversation_id": str(conversation.id), "client_id": cid(), "body": "x"},
        )
        await expect_error(
            "not_found",
            s,
            "message.send",
            {"conversation_id": str(uuid.uuid4()), "client_id": cid(), "body": "x"},
        )
    assert await sync_to_async(Message.objects.count)() == 0


async def test_attachments_are_claimed_and_set_the_kind(settings: Any, tmp_path: Any) -> None:
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path)},
        },
    }
    customer, provider, conversation = await chat()

    @sync_to_async
    def upload(user: Any, name: str, content_type: str) -> str:
        return str(attachment_upload(user=user, file=SimpleUploadedFile(name, b"data" * 10, content_type)).id)

    image = await upload(customer, "a.png", "image/png")
    pdf = await upload(customer, "b.pdf", "application/pdf")
    foreign = await upload(provider, "c.png", "image/png")
    async with ws_connect(customer) as c, ws_connect(provider) as p:
        message = await send(c, conversation, "", attachment_ids=[image])
        assert message["kind"] == "image"
        assert message["attachments"] == [
            {
                "id": image,
                "url": f"/api/attachments/{image}",
                "name": "a.png",
                "content_type": "image/png",
                "size": 40,
            }
        ]
        assert (await p.event("message.created"))["message"]["attachments"][0]["id"] == image
        # Already used, someone else's, unknown: refused, nothing created.
        for ids in ([image], [foreign], [str(uuid.uuid4())]):
            await expect_error(
                "bad_request",
                c,
                "message.send",
                {
                    "conversation_id": str(conversation.id),
                    "client_id": cid(),
                    "body": "x",
                    "attachment_ids": ids,
                },
            )
        message = await send(c, conversation, "see file", attachment_ids=[pdf])
        assert message["kind"] == "file" and message["seq"] == 2


# --- message.edit / message.delete -----------------------------------------------------------------


async def test_edit_and_delete_by_sender_only(settings: Any, tmp_path: Any) -> None:
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path)},
        },
    }
    customer, provider, conversation = await chat()
    attachment = await sync_to_async(attachment_upload)(
        user=customer, file=SimpleUploadedFile("x.png", b"png!", "image/png")
    )
    path = tmp_path / attachment.file.name
    assert path.exists()
    async with ws_connect(customer) as c, ws_connect(provider) as p:
        message = await send(c, conversation, "typo", attachment_ids=[str(attachment.id)])
        await expect_error("forbidden", p, "message.edit", {"message_id": message["id"], "body": "hacked"})
        await expect_error("forbidden", p, "message.delete", {"message_id": message["id"]})
        await expect_error("not_found", c, "message.edit", {"message_id": str(uuid.uuid4()), "body": "x"})
        await expect_error("bad_request", c, "message.edit", {"message_id": message["id"], "body": "x" * 4001})

        edited = (await c.request("message.edit", {"message_id": message["id"], "body": "fixed"}))["message"]
        assert edited["body"] == "fixed" and edited["edited_at"] and edited["seq"] == message["seq"]
        assert (message["version"], edited["version"]) == (1, 2)  # every change takes the next version
        assert (await p.event("message.updated"))["message"] == edited

        deleted = (await c.request("message.delete", {"message_id": message["id"]}))["message"]
        assert deleted["deleted"] is True and deleted["body"] == "" and deleted["attachments"] == []
        event = await p.event("message.deleted")
        assert event == {
            "conversation_id": str(conversation.id),
            "message_id": message["id"],
            "seq": message["seq"],
            "version": 3,
        }
        await expect_error("conflict", c, "message.edit", {"message_id": message["id"], "body": "again"})
        # Deleting twice answers the same and announces nothing.
        assert (await c.request("message.delete", {"message_id": message["id"]}))["message"]["deleted"] is True
        await p.no_event("message.deleted", within=0.3)
    stored = await sync_to_async(Message.objects.get)(id=message["id"])
    assert stored.body == "" and stored.deleted_at is not None
    assert not await sync_to_async(Attachment.objects.filter(id=attachment.id).exists)()
    assert not path.exists()


# --- receipts ----------------------------------------------------------------------------------------


async def test_read_and_delivered_receipts() -> None:
    customer, provider, conversation = await chat()
    async with ws_connect(customer) as c, ws_connect(provider) as p, ws_connect(provider) as p2:
        for i in range(3):
            await send(c, conversation, f"m{i}")
        reply = await p.request("conversation.delivered", {"conversation_id": str(conversation.id), "seq": 1})
        assert reply == {"conversation_id": str(conversation.id), "delivered_seq": 1}
        event = await c.event("receipt.delivered")
        assert event["user_id"] == str(provider.id) and event["seq"] == 1 and event["at"].endswith("Z")

        reply = await p.request("conversation.read", {"conversation_id": str(conversation.id), "seq": 2})
        assert reply == {"conversation_id": str(conversation.id), "read_seq": 2, "unread_count": 1}
        event = await c.event("receipt.read")
        assert event["conversation_id"] == str(conversation.id) and event["user_id"] == str(provider.id)
        assert event["seq"] == 2
        assert (await p2.event("receipt.read"))["seq"] == 2  # the reader's other devices learn it too

        # Never backwards; clamped to the last message.
        reply = await p.request("conversation.read", {"conversation_id": str(conversation.id), "seq": 1})
        assert reply["read_seq"] == 2 and reply["unread_count"] == 1
        await c.no_event("receipt.read", within=0.3)
        reply = await p.request("conversation.read", {"conversation_id": str(conversation.id), "seq": 99})
        assert reply["read_seq"] == 3 and reply["unread_count"] == 0
        assert (await c.event("receipt.read"))["seq"] == 3
        await expect_error("bad_request", p, "conversation.read", {"conversation_id": str(conversation.id), "seq": -1})

    member = await sync_to_async(ConversationMember.objects.get)(conversation=conversation, user=provider)
    assert (member.read_seq, member.delivered_seq) == (3, 3)  # reading implies delivered


async def test_receipts_refused_to_non_members() -> None:
    _, _, conversation = await chat()
    stranger = await sync_to_async(CustomerFactory)()
    async with ws_connect(stranger) as s:
        for frame_type in ("conversation.read", "conversation.delivered"):
            await expect_error("forbidden", s, frame_type, {"conversation_id": str(conversation.id), "seq": 1})
            await expect_error("not_found", s, frame_type, {"conversation_id": str(uuid.uuid4()), "seq": 1})


# --- typing ------------------------------------------------------------------------------------------


async def test_typing_goes_to_the_other_members_only() -> None:
    customer, provider, conversation = await chat()
    stranger = await sync_to_async(CustomerFactory)()
    async with ws_connect(customer) as c1, ws_connect(customer) as c2, ws_connect(provider) as p:
        assert await c1.request("typing", {"conversation_id": str(conversation.id), "state": "start"}) == {}
        event = await p.event("typing")
        assert event == {
            "conversation_id": str(conversation.id),
            "user_id": str(customer.id),
            "state": "start",
            "expires_in_s": event["expires_in_s"],
        }
        assert event["expires_in_s"] > 0
        await c2.no_event("typing", within=0.3)
        await c1.request("typing", {"conversation_id": str(conversation.id), "state": "stop"})
        assert (await p.event("typing"))["state"] == "stop"
        await expect_error("bad_request", c1, "typing", {"conversation_id": str(conversation.id), "state": "maybe"})
    async with ws_connect(stranger) as s:
        await expect_error("forbidden", s, "typing", {"conversation_id": str(conversation.id), "state": "start"})


# --- sync --------------------------------------------------------------------------------------------


async def test_sync_catches_up_with_has_more() -> None:
    customer, provider, conversation = await chat()
    _, _, other = await chat()
    async with ws_connect(customer) as c:
        sent = [await send(c, conversation, f"m{i}") for i in range(5)]
    async with ws_connect(provider) as p:
        await p.request("conversation.read", {"conversation_id": str(conversation.id), "seq": 1})
        reply = await p.request("sync", {"cursors": {str(conversation.id): 1}, "limit": 2})
        [entry] = reply["conversations"]
        assert entry["id"] == str(conversation.id)
        assert [m["seq"] for m in entry["messages"]] == [2, 3] and entry["has_more"] is True
        assert entry["messages"][0] == sent[1]
        assert entry["read"] == {str(customer.id): 0, str(provider.id): 1}
        assert entry["delivered"] == {str(customer.id): 0, str(provider.id): 1}
        assert entry["unread_count"] == 4
        reply = await p.request("sync", {"cursors": {str(conversation.id): 3}})
        [entry] = reply["conversations"]
        assert [m["seq"] for m in entry["messages"]] == [4, 5] and entry["has_more"] is False

        assert (await p.request("sync", {"cursors": {}}))["conversations"] == []
        data = await expect_error("forbidden", p, "sync", {"cursors": {str(other.id): 0}})
        assert data["conversation_ids"] == [str(other.id)]
        await expect_error("not_found", p, "sync", {"cursors": {str(uuid.uuid4()): 0}})
        await expect_error("bad_request", p, "sync", {"cursors": {str(conversation.id): -1}})
        await expect_error("bad_request", p, "sync", {"cursors": {str(conversation.id): 0}, "limit": 0})
        # Over the maximum is capped, not refused.
        reply = await p.request("sync", {"cursors": {str(conversation.id): 0}, "limit": 10_000})
        assert len(reply["conversations"][0]["messages"]) == 5


async def test_sync_shows_deleted_messages_as_tombstones() -> None:
    customer, provider, conversation = await chat()
    async with ws_connect(customer) as c:
        first = await send(c, conversation, "oops")
        await send(c, conversation, "ok")
        await c.request("message.delete", {"message_id": first["id"]})
    async with ws_connect(provider) as p:
        [entry] = (await p.request("sync", {"cursors": {str(conversation.id): 0}}))["conversations"]
        assert [(m["seq"], m["deleted"], m["body"]) for m in entry["messages"]] == [
            (1, True, ""),
            (2, False, "ok"),
        ]
        assert entry["unread_count"] == 1  # deleted messages are not unread


# --- presence ----------------------------------------------------------------------------------------


async def test_an_edit_and_a_delete_made_while_away_reach_the_device_through_sync() -> None:
    customer, provider, conversation = await chat()
    async with ws_connect(provider) as away:
        held = [await send(away, conversation, f"m{n}") for n in range(3)]
    cursor = {"seq": held[-1]["seq"], "version": max(m["version"] for m in held)}
    assert cursor == {"seq": 3, "version": 3}
    async with ws_connect(provider) as other_device:  # the same user, on another device, meanwhile
        await other_device.request("message.edit", {"message_id": held[0]["id"], "body": "edited"})
        await other_device.request("message.delete", {"message_id": held[1]["id"]})
        await send(other_device, conversation, "new")
    async with ws_connect(provider) as back:
        reply = await back.request("sync", {"cursors": {str(conversation.id): cursor}})
    [entry] = reply["conversations"]
    assert entry["version"] == 6
    assert [(m["seq"], m["body"]) for m in entry["messages"]] == [(4, "new")]
    assert [(m["id"], m["version"], m["deleted"], m["body"]) for m in entry["changed"]] == [
        (held[0]["id"], 4, False, "edited"),
        (held[1]["id"], 5, True, ""),
    ]
    async with ws_connect(customer) as c:
        bad = {"cursors": {str(conversation.id): {"seq": 1}}}
        assert (await expect_error("bad_request", c, "sync", bad))["code"] == "bad_request"


async def test_presence_online_at_first_device_offline_after_last() -> None:
    customer, provider, _ = await chat()
    async with ws_connect(provider) as watcher:
        d1 = ws_connect(customer)
        await d1.__aenter__()
        event = await watcher.event("presence")
        assert event["user_id"] == str(customer.id) and event["status"] == "online"
        d2 = ws_connect(customer)
        c2 = await d2.__aenter__()
        await watcher.no_event("presence", within=0.3)
        assert await sync_to_async(online_user_ids)(user_ids=[customer.id, provider.id, uuid.uuid4()]) == {
            customer.id,
            provider.id,
        }
        reply = await c2.request("presence.query", {"user_ids": [str(provider.id), str(customer.id)]})
        assert reply["presence"][str(provider.id)]["status"] == "online"
        assert reply["presence"][str(customer.id)]["status"] == "online"
        await d1.__aexit__(None, None, None)
        await watcher.no_event("presence", within=0.3)
        await d2.__aexit__(None, None, None)
        event = await watcher.event("presence")
        assert event["user_id"] == str(customer.id) and event["status"] == "offline"
        assert event["last_seen_at"].endswith("Z")
        reply = await watcher.request("presence.query", {"user_ids": [str(customer.id)]})
        assert reply["presence"][str(customer.id)] == {
            "status": "offline",
            "last_seen_at": event["last_seen_at"],
        }
    refreshed = await sync_to_async(type(customer).objects.get)(id=customer.id)
    assert refreshed.last_seen_at is not None


async def test_presence_query_hides_strangers() -> None:
    customer, provider, _ = await chat()
    stranger = await sync_to_async(CustomerFactory)()
    admin = await sync_to_async(AdminFactory)()
    async with ws_connect(customer), ws_connect(stranger) as s, ws_connect(admin) as a:
        reply = await s.request("presence.query", {"user_ids": [str(customer.id)]})
        assert reply["presence"] == {str(customer.id): {"status": "offline", "last_seen_at": None}}
        reply = await a.request("presence.query", {"user_ids": [str(customer.id), str(provider.id)]})
        assert reply["presence"][str(customer.id)]["status"] == "online"
        assert reply["presence"][str(provider.id)]["status"] == "offline"
        await expect_error("bad_request", s, "presence.query", {"user_ids": ["x"]})


# --- blocks ------------------------------------------------------------------------------------------


async def test_blocks_refuse_sends_both_ways_and_silence_the_blocked() -> None:
    customer, provider, conversation = await chat()
    async with ws_connect(customer) as c:
        first = await send(c, conversation, "before the block")
    await sync_to_async(Block.objects.create)(blocker=provider, blocked=customer)
    async with ws_connect(provider) as p:
        async with ws_connect(customer) as c:
            await p.no_event("presence", within=0.3)  # the blocked user's presence is not shown
            await expect_error(
                "forbidden",
                c,
                "message.send",
                {"conversation_id": str(conversation.id), "client_id": cid(), "body": "x"},
            )
            await expect_error(
                "forbidden",
                p,
                "message.send",
                {"conversation_id": str(conversation.id), "client_id": cid(), "body": "x"},
            )
            await c.request("typing", {"conversation_id": str(conversation.id), "state": "start"})
            await c.request("message.edit", {"message_id": first["id"], "body": "edited"})
            await c.request("conversation.read", {"conversation_id": str(conversation.id), "seq": 1})
            await p.no_event("typing", within=0.3)
            assert not [e for e in p.events if e["type"] in {"message.updated", "receipt.read", "typing"}]
            reply = await p.request("presence.query", {"user_ids": [str(customer.id)]})
            assert reply["presence"][str(customer.id)]["status"] == "offline"
    assert await sync_to_async(Message.objects.count)() == 1


# --- rate limits -------------------------------------------------------------------------------------


async def test_send_rate_limit_then_close_4429(settings: Any) -> None:
    settings.HUB_SEND_RATE_BURST = 3
    settings.HUB_SEND_RATE_PER_S = 0.01
    settings.HUB_SEND_FLOOD_CLOSE_AFTER = 2
    customer, _, conversation = await chat()
    async with ws_connect(customer) as c:
        for _ in range(3):
            await send(c, conversation)
        data = await expect_error(
            "rate_limited",
            c,
            "message.send",
            {"conversation_id": str(conversation.id), "client_id": cid(), "body": "x"},
        )
        assert data["retry_after_s"] > 0
        # Another device of the same user shares the allowance (it lives in Redis).
        async with ws_connect(customer) as other:
            await expect_error(
                "rate_limited",
                other,
                "message.send",
                {"conversation_id": str(conversation.id), "client_id": cid(), "body": "x"},
            )
        # Sending again while told to wait is flooding: two strikes are allowed, the third closes.
        for _ in range(2):
            await asyncio.sleep(0.25)  # past the grace for frames already on their way
            await expect_error(
                "rate_limited",
                c,
                "message.send",
                {"conversation_id": str(conversation.id), "client_id": cid(), "body": "x"},
            )
        await asyncio.sleep(0.25)
        with pytest.raises(FrameError):
            await c.request("message.send", {"conversation_id": str(conversation.id), "client_id": cid(), "body": "x"})
        with pytest.raises(ConnectionError) as closed:
            await c.recv_frame(5)
        assert "4429" in str(closed.value)
    assert await sync_to_async(Message.objects.count)() == 3


# --- the authorisation matrix ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("actor", "send", "read", "typing", "sync"),
    [
        ("member", "ok", "ok", "ok", "ok"),
        ("blocked member", "forbidden", "ok", "ok", "ok"),
        ("blocking member", "forbidden", "ok", "ok", "ok"),
        ("non-member", "forbidden", "forbidden", "forbidden", "forbidden"),
        ("admin non-member", "forbidden", "forbidden", "forbidden", "forbidden"),
    ],
)
async def test_authorisation_matrix(actor: str, send: str, read: str, typing: str, sync: str) -> None:
    customer, provider, conversation = await chat()
    user = customer
    if actor == "blocked member":
        await sync_to_async(Block.objects.create)(blocker=provider, blocked=customer)
    elif actor == "blocking member":
        await sync_to_async(Block.objects.create)(blocker=customer, blocked=provider)
    elif actor == "non-member":
        user = await sync_to_async(CustomerFactory)()
    elif actor == "admin non-member":
        user = await sync_to_async(AdminFactory)()
    conv = str(conversation.id)
    requests = {
        "send": ("message.send", {"conversation_id": conv, "client_id": cid(), "body": "x"}),
        "read": ("conversation.read", {"conversation_id": conv, "seq": 0}),
        "typing": ("typing", {"conversation_id": conv, "state": "start"}),
        "sync": ("sync", {"cursors": {conv: 0}}),
    }
    expected = {"send": send, "read": read, "typing": typing, "sync": sync}
    async with ws_connect(user) as client:
        for name, (frame_type, data) in requests.items():
            try:
                await client.request(frame_type, data)
                outcome = "ok"
            except FrameError as err:
                outcome = str(err.code)
            assert outcome == expected[name], (actor, name)


async def test_unknown_and_malformed_message_ids() -> None:
    customer, _, _ = await chat()
    async with ws_connect(customer) as c:
        await expect_error("not_found", c, "message.delete", {"message_id": str(uuid.uuid4())})
        await expect_error("bad_request", c, "message.delete", {"message_id": "42"})
        await expect_error("bad_request", c, "message.edit", {"message_id": str(uuid.uuid4())})


async def test_a_crashed_owner_does_not_keep_its_user_online() -> None:
    import gc

    from hub.services import presence

    customer, provider, _ = await chat()

    class Owner:
        pass

    owner = Owner()
    async with ws_connect(provider) as watcher:
        await presence.presence_connect(user_id=customer.id, connection_id="ghost", owner=owner)
        assert (await watcher.event("presence"))["status"] == "online"
        del owner
        gc.collect()
        await presence._tracker.refresh()
        event = await watcher.event("presence")
        assert (event["user_id"], event["status"]) == (str(customer.id), "offline")
        assert "ghost" not in presence._tracker.local


async def test_a_frame_for_a_connection_that_just_closed_is_dropped() -> None:
    from autobahn.exception import Disconnected

    from consumers.hub import HubConsumer

    consumer = HubConsumer()

    async def closed(message: dict[str, Any]) -> None:
        raise Disconnected("Attempt to send on a closed protocol")

    consumer.base_send = closed
    await consumer.send_frame({"type": "reply", "ref": "r", "data": {}})  # no exception: disconnect still runs


async def test_sends_are_pipelined_in_order_and_a_later_request_sees_them_all(settings: Any) -> None:
    """An outbox flushed after a reconnect: 30 sends without waiting for replies, then a sync."""
    settings.HUB_SEND_RATE_BURST = 100
    customer, _, conversation = await chat()
    batches = metrics.SEND_BATCH_SIZE.collect()[0].samples
    stored_before = next(s.value for s in batches if s.name == "hub_send_batch_size_count")
    async with ws_connect(customer) as client:
        refs = [f"p{n}" for n in range(30)]
        for n, ref in enumerate(refs):
            data = {"conversation_id": str(conversation.id), "client_id": f"outbox-{n}", "body": f"m{n}"}
            await client.send_frame({"type": "message.send", "ref": ref, "data": data})
        await client.send_frame(
            {"type": "sync", "ref": "after", "data": {"cursors": {str(conversation.id): 0}, "limit": 100}}
        )
        replies: dict[str, Any] = {}
        while "after" not in replies:
            frame = await client.recv_frame()
            if frame.get("ref") is not None:
                assert frame["type"] == "reply", frame
                replies[frame["ref"]] = frame["data"]
        # Every send answered before the later request, each with the seq of its place in line.
        assert [replies[ref]["message"]["seq"] for ref in refs] == list(range(1, 31))
        synced = replies["after"]["conversations"][0]["messages"]
        assert [m["body"] for m in synced] == [f"m{n}" for n in range(30)]
    batches = metrics.SEND_BATCH_SIZE.collect()[0].samples
    stored = next(s.value for s in batches if s.name == "hub_send_batch_size_count") - stored_before
    assert stored < 30  # not one commit per send: later sends were read while earlier ones were stored


async def test_an_outbox_larger_than_the_allowance_is_refused_in_part_not_closed(settings: Any) -> None:
    settings.HUB_SEND_RATE_BURST = 5
    settings.HUB_SEND_RATE_PER_S = 0.01
    settings.HUB_SEND_FLOOD_CLOSE_AFTER = 2
    customer, _, conversation = await chat()
    async with ws_connect(customer) as client:
        for n in range(12):  # all sent before any answer: nobody was told to wait yet
            data = {"conversation_id": str(conversation.id), "client_id": f"o{n}", "body": f"m{n}"}
            await client.send_frame({"type": "message.send", "ref": f"o{n}", "data": data})
        answers = [await client.recv_frame() for _ in range(12)]
        codes = sorted("ok" if a["type"] == "reply" else a["data"]["code"] for a in answers)
        assert codes == ["ok"] * 5 + ["rate_limited"] * 7
        assert "pong" in await client.request("ping")  # still open: the refusals were not ignored waits


async def test_a_send_past_capacity_is_answered_busy_and_stores_nothing(settings: Any) -> None:
    settings.HUB_SEND_QUEUE_MAX = 0  # as if this process's queue were full
    customer, _, conversation = await chat()
    async with ws_connect(customer) as client:
        data = await expect_error(
            "busy", client, "message.send", {"conversation_id": str(conversation.id), "client_id": "b1", "body": "x"}
        )
        assert data["retry_after_s"] >= 0.05
        assert "pong" in await client.request("ping")
    assert not await sync_to_async(Message.objects.exists)()
