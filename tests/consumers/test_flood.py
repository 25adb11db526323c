"""The 4429 flood close at the default settings (PROTOCOL §2, ADR 0042): a client that keeps sending
after `rate_limited` is closed; one that waits `retry_after_s`, or flushes a pipelined outbox, never is."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from channels.db import database_sync_to_async as sync_to_async
from django.conf import settings

from hub.models import Message
from tests.conftest import ws_connect
from tests.factories import booking_with_conversation

pytestmark = pytest.mark.django_db(transaction=True)


@sync_to_async
def chat() -> tuple[Any, Any]:
    booking, conversation = booking_with_conversation()
    return booking.customer, conversation


def send_frame(conversation: Any, client_id: str) -> dict[str, Any]:
    data = {"conversation_id": str(conversation.id), "client_id": client_id, "body": client_id}
    return {"type": "message.send", "ref": client_id, "data": data}


def test_the_defaults_are_the_documented_ones() -> None:
    assert (settings.HUB_SEND_RATE_BURST, settings.HUB_SEND_RATE_PER_S, settings.HUB_SEND_FLOOD_CLOSE_AFTER) == (
        20, 10.0, 10
    )


async def test_a_client_that_keeps_sending_after_rate_limited_is_closed_4429() -> None:
    customer, conversation = await chat()
    answers: dict[str, str] = {}
    closed: str | None = None
    async with ws_connect(customer) as client:
        started = time.monotonic()
        sent = 0
        while time.monotonic() - started < 6 and closed is None:
            for _ in range(5):  # bursts, never waiting: hundreds a second
                await client.send_frame(send_frame(conversation, f"f{sent}"))
                sent += 1
            try:
                while True:
                    frame = await client.recv_frame(0.01)
                    if "ref" in frame:
                        answers[frame["ref"]] = "ok" if frame["type"] == "reply" else frame["data"]["code"]
            except TimeoutError:
                pass
            except ConnectionError as exc:
                closed = str(exc)
        took = time.monotonic() - started
    assert closed == "closed 4429"
    assert took < 4, took  # 524 sends in 6 s were once never closed
    assert "rate_limited" in answers.values()
    stored = await sync_to_async(Message.objects.count)()
    # Every send answered `ok` is stored; sends still in flight at the close may be too (a resend of the
    # same client_id would get them), nothing else is.
    assert list(answers.values()).count("ok") <= stored <= sent - list(answers.values()).count("rate_limited")


async def test_a_client_that_waits_retry_after_s_is_never_closed() -> None:
    customer, conversation = await chat()
    refused = 0
    async with ws_connect(customer) as client:
        for n in range(45):
            while True:
                await client.send_frame(send_frame(conversation, f"w{n}"))
                frame = await client.recv_frame(10)
                while "ref" not in frame:  # our own message.created events
                    frame = await client.recv_frame(10)
                assert frame["ref"] == f"w{n}", frame
                if frame["type"] == "reply":
                    break
                assert frame["data"]["code"] == "rate_limited", frame
                refused += 1
                await asyncio.sleep(frame["data"]["retry_after_s"])  # as told, the same client_id again
        assert "pong" in await client.request("ping")
    assert refused > 0  # it did hit the limit, many times
    bodies = await sync_to_async(lambda: list(Message.objects.order_by("seq").values_list("body", flat=True)))()
    assert bodies == [f"w{n}" for n in range(45)]


async def test_a_pipelined_outbox_flushed_again_after_each_wait_is_never_closed() -> None:
    customer, conversation = await chat()
    outbox = [f"o{n}" for n in range(50)]
    flushes = 0
    async with ws_connect(customer) as client:
        while outbox:
            flushes += 1
            for client_id in outbox:  # the whole outbox at once, before any answer
                await client.send_frame(send_frame(conversation, client_id))
            waits: list[float] = []
            answered: dict[str, dict[str, Any]] = {}
            while len(answered) < len(outbox):
                frame = await client.recv_frame(10)
                if "ref" in frame:
                    answered[frame["ref"]] = frame
            for client_id in list(outbox):
                frame = answered[client_id]
                if frame["type"] == "reply":
                    outbox.remove(client_id)
                else:
                    assert frame["data"]["code"] == "rate_limited", frame
                    waits.append(frame["data"]["retry_after_s"])
            if waits:
                await asyncio.sleep(max(waits))
        assert "pong" in await client.request("ping")
    assert flushes > 2
    bodies = await sync_to_async(lambda: sorted(Message.objects.values_list("body", flat=True)))()
    assert bodies == sorted(f"o{n}" for n in range(50))  # a set: refused sends took no place in line


async def test_a_successful_send_after_flooding_does_not_forgive_it(settings: Any) -> None:
    """A flooder is let through whenever the bucket refills; those successes must not reset the count."""
    settings.HUB_SEND_FLOOD_CLOSE_AFTER = 3
    customer, conversation = await chat()
    async with ws_connect(customer) as client:
        closed: str | None = None
        n = 0
        codes: list[str] = []
        while closed is None and n < 2000:
            for _ in range(5):
                await client.send_frame(send_frame(conversation, f"s{uuid.uuid4().hex[:8]}"))
                n += 1
            try:
                while True:
                    frame = await client.recv_frame(0.02)
                    if "ref" in frame:
                        codes.append("ok" if frame["type"] == "reply" else frame["data"]["code"])
            except TimeoutError:
                pass
            except ConnectionError as exc:
                closed = str(exc)
    assert closed == "closed 4429"
    after_first_refusal = codes[codes.index("rate_limited"):]
    assert "ok" in after_first_refusal  # the refill let some through, and it was still closed
