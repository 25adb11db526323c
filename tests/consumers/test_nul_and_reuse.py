"""Text never holds U+0000 (PROTOCOL §2.1), on every request over WebSocket and HTTP: `bad_request`,
nothing stored, the connection and everyone else's sends unaffected. And a client_id is per sender
and conversation: reused in another conversation it is `conflict`, never the other message."""

from __future__ import annotations

from typing import Any

import pytest
from channels.db import database_sync_to_async as sync_to_async
from django.test import Client

from hub.models import Booking, Message
from tests.conftest import auth_headers, ws_connect
from tests.factories import booking_with_conversation
from tests.wsclient import FrameError

pytestmark = pytest.mark.django_db(transaction=True)

NUL = "\x00"


@sync_to_async
def chat(**kwargs: Any) -> tuple[Any, Any, Any, Any]:
    booking, conversation = booking_with_conversation(**kwargs)
    return booking.customer, booking.provider.user, conversation, booking


async def code_of(client: Any, frame_type: str, data: dict[str, Any]) -> str:
    with pytest.raises(FrameError) as err:
        await client.request(frame_type, data)
    return str(err.value.code)


@pytest.mark.asyncio
async def test_nul_in_any_text_field_is_bad_request_over_websocket_and_harms_no_one(settings: Any) -> None:
    settings.HUB_SEND_RATE_BURST = 1000
    customer, provider, conversation, booking = await chat()
    conv = str(conversation.id)
    async with ws_connect(customer) as c, ws_connect(provider) as p:
        mine = await c.request("message.send", {"conversation_id": conv, "client_id": "ok0", "body": "fine"})
        bad = [
            ("message.send", {"conversation_id": conv, "client_id": "n1", "body": f"a{NUL}b"}),
            ("message.send", {"conversation_id": conv, "client_id": f"n{NUL}2", "body": "x"}),
            ("message.edit", {"message_id": mine["message"]["id"], "body": f"e{NUL}"}),
            ("booking.status", {"booking_id": str(booking.id), "status": "confirmed", "reason": f"r{NUL}"}),
        ]
        for frame_type, data in bad:
            assert await code_of(p if frame_type == "booking.status" else c, frame_type, data) == "bad_request"
        # Pipelined with other users' sends in the same batch: only the NUL one is refused.
        frames = [
            (c, "c1", {"conversation_id": conv, "client_id": "c1", "body": "one"}),
            (p, "p1", {"conversation_id": conv, "client_id": "p1", "body": f"nul{NUL}"}),
            (p, "p2", {"conversation_id": conv, "client_id": "p2", "body": "two"}),
        ]
        for client, ref, data in frames:
            await client.send_frame({"type": "message.send", "ref": ref, "data": data})

        async def answer(client: Any, ref: str) -> dict[str, Any]:
            while True:
                frame = await client.recv_frame()
                if frame.get("ref") == ref:
                    return frame

        answers = [await answer(c, "c1"), await answer(p, "p1"), await answer(p, "p2")]
        assert [a["type"] for a in answers] == ["reply", "error", "reply"]
        assert answers[1]["data"]["code"] == "bad_request"
        assert [answers[0]["data"]["message"]["seq"], answers[2]["data"]["message"]["seq"]] == [2, 3]
        assert "pong" in await c.request("ping")
    stored = await sync_to_async(lambda: list(Message.objects.order_by("seq").values_list("client_id", "body")))()
    assert stored == [("ok0", "fine"), ("c1", "one"), ("p2", "two")]
    assert (await sync_to_async(Booking.objects.get)(id=booking.id)).status == "pending"


def test_nul_in_any_text_field_is_bad_request_over_http() -> None:
    booking, conversation = booking_with_conversation()
    customer, provider = booking.customer, booking.provider.user
    client = Client()

    def call(method: str, user: Any, path: str, body: dict[str, Any]) -> Any:
        return getattr(client, method)(path, body, content_type="application/json", **auth_headers(user))

    ok = call("post", customer, f"/api/conversations/{conversation.id}/messages", {"client_id": "h0", "body": "x"})
    assert ok.status_code == 201
    attempts = [
        ("post", customer, f"/api/conversations/{conversation.id}/messages", {"client_id": "h1", "body": f"a{NUL}"}),
        ("post", customer, f"/api/conversations/{conversation.id}/messages", {"client_id": f"h{NUL}", "body": "a"}),
        ("patch", customer, f"/api/messages/{ok.json()['id']}", {"body": f"e{NUL}"}),
        ("post", provider, f"/api/bookings/{booking.id}/status", {"status": "confirmed", "reason": f"r{NUL}"}),
    ]
    for method, user, path, body in attempts:
        response = call(method, user, path, body)
        assert (response.status_code, response.json()["code"]) == (400, "bad_request"), (path, response.json())
    assert list(Message.objects.values_list("client_id", "body")) == [("h0", "x")]
    assert Booking.objects.get(id=booking.id).status == "pending"


@pytest.mark.asyncio
async def test_a_client_id_used_in_another_conversation_is_conflict(settings: Any) -> None:
    settings.HUB_SEND_RATE_BURST = 1000
    customer, _, first, _ = await chat()
    _, _, second, _ = await chat(customer=customer)
    async with ws_connect(customer) as c:
        await c.request("message.send", {"conversation_id": str(first.id), "client_id": "k", "body": "here"})
        assert await code_of(c, "message.send", {"conversation_id": str(second.id), "client_id": "k", "body": "x"}) == (
            "conflict"
        )
        # Inside one pipelined batch: the second use, in another conversation, is refused too.
        for ref, conversation in (("a", first), ("b", second)):
            data = {"conversation_id": str(conversation.id), "client_id": "twice", "body": ref}
            await c.send_frame({"type": "message.send", "ref": ref, "data": data})
        answers = {}
        while len(answers) < 2:
            frame = await c.recv_frame()
            if frame.get("ref") in ("a", "b"):
                answers[frame["ref"]] = frame
        assert answers["a"]["type"] == "reply" and answers["b"]["data"]["code"] == "conflict"
    rows = await sync_to_async(
        lambda: list(Message.objects.order_by("seq").values_list("conversation_id", "client_id"))
    )()
    assert rows == [(first.id, "k"), (first.id, "twice")]
