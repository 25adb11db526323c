"""The frame envelope under odd input (PROTOCOL §2): every bad frame gets one error, the connection
stays open, and however a connection ends its disconnect hooks run (presence, open-connection gauge)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from channels.db import database_sync_to_async as sync_to_async
from channels.testing import WebsocketCommunicator
from prometheus_client import REGISTRY
from pydantic import BaseModel, field_validator

from config.asgi import application
from consumers.registry import ROUTES, Route
from hub.services import presence
from tests.conftest import token_for, ws_connect
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db(transaction=True)

create_user = sync_to_async(CustomerFactory)


def open_connections() -> float:
    value = REGISTRY.get_sample_value("hub_ws_connections_open")
    assert value is not None
    return value


async def online(user_id: Any) -> bool:
    return user_id in await sync_to_async(presence.online_user_ids)(user_ids=[user_id])


async def wait_offline(user_id: Any) -> None:
    for _ in range(100):
        if not await online(user_id):
            return
        await asyncio.sleep(0.02)
    pytest.fail("still online after the connection closed")


@pytest.mark.parametrize(
    "text, ref, message",
    [
        ('{"type": [], "ref": "a"}', "a", "`type` must be a string."),
        ('{"type": {}, "ref": "a"}', "a", "`type` must be a string."),
        ('{"type": [1, [2]], "ref": "a"}', "a", "`type` must be a string."),
        ('{"type": null, "ref": "a"}', "a", "`type` must be a string."),
        ('{"type": true, "ref": "a"}', "a", "`type` must be a string."),
        ('{"type": 1e400, "ref": "a"}', None, "Frame is not valid JSON."),
        ('{"type": "ping", "ref": "a", "data": {"x": ' + "[" * 40 + "]" * 40 + "}}", None,
         "Frame is nested deeper than 32 levels."),
        ('{"type": "ping", "ref": "a", "data": {"x": ' + "[" * 1000 + "]" * 1000 + "}}", None,
         "Frame is nested deeper than 32 levels."),
        ('{"type": "ping\\u0000", "ref": "a"}', "a", "`type` must not contain U+0000."),
        ('{"type": "ping", "ref": "a\\u0000"}', None, "`ref` must be a string without U+0000."),
        ('{"type": "ping", "ref": []}', None, "`ref` must be a string without U+0000."),
        ('{"type": "ping", "ref": {"x": 1}}', None, "`ref` must be a string without U+0000."),
        ('{"type": "ping", "ref": "a", "data": []}', "a", "`data` must be an object."),
        ('{"type": "ping", "ref": "a", "data": null}', "a", "`data` must be an object."),
        ('{"type": "ping", "ref": "a", "data": "x"}', "a", "`data` must be an object."),
        ('"just a string"', None, "A frame is a JSON object."),
        ("null", None, "A frame is a JSON object."),
        ("[" * 2000 + "]" * 2000, None, "Frame is not valid JSON."),
        ('{"type": "ping", "ref": "a", "data": ' + '{"a": ' * 2000 + "1" + "}" * 2000 + "}", None,
         "Frame is not valid JSON."),
        ('{"type": "\\ud800", "ref": "a"}', None, "Frame is not valid JSON."),
    ],
)
async def test_odd_envelopes_get_bad_request_and_leave_nothing_behind(text: str, ref: str | None, message: str) -> None:
    user = await create_user()
    before = open_connections()
    async with ws_connect(user) as client:
        assert open_connections() == before + 1
        await client.send_text(text)
        frame = await client.recv_frame()
        expected: dict[str, Any] = {"type": "error", "data": {"code": "bad_request", "message": message}}
        if ref is not None:
            expected["ref"] = ref
        assert frame == expected
        assert "pong" in await client.request("ping")  # the connection is still usable
        assert await online(user.id)
    await wait_offline(user.id)
    assert open_connections() == before


class Exploding(BaseModel):
    """A schema whose validation raises something that is not a ValidationError."""

    x: int = 0

    @field_validator("x")
    @classmethod
    def explode(cls, value: int) -> int:
        raise TypeError("boom")


async def test_an_unexpected_failure_while_handling_a_frame_is_internal_and_keeps_the_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def never(conn: Any, data: Any) -> dict[str, Any]:
        return {}

    monkeypatch.setitem(ROUTES, "test.explode", Route("test.explode", Exploding, never))
    user = await create_user()
    before = open_connections()
    async with ws_connect(user) as client:
        await client.send_frame({"type": "test.explode", "ref": "x", "data": {"x": 1}})
        assert await client.recv_frame() == {
            "type": "error", "ref": "x", "data": {"code": "internal", "message": "Internal error."}
        }
        assert "pong" in await client.request("ping")
    await wait_offline(user.id)
    assert open_connections() == before


async def test_disconnect_hooks_run_when_the_consumer_is_cancelled() -> None:
    user = await create_user()
    before = open_connections()
    auth = (b"authorization", f"Bearer {token_for(user)}".encode())
    communicator = WebsocketCommunicator(application, "/ws/", headers=[auth])
    connected, _ = await communicator.connect(timeout=10)
    assert connected
    assert json.loads((await communicator.receive_output(5))["text"])["type"] == "hello"
    await communicator.send_to(text_data='{"type": "ping", "ref": "p"}')
    assert json.loads((await communicator.receive_output(5))["text"])["ref"] == "p"  # the connect hooks ran
    assert await online(user.id) and open_connections() == before + 1
    communicator.future.cancel()  # e.g. the server shutting down, or a crash outside any frame
    with pytest.raises(asyncio.CancelledError):
        await communicator.future
    await wait_offline(user.id)
    assert open_connections() == before
