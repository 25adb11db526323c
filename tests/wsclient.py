"""Test clients for /ws/: one over channels' in-process communicator, one over a real socket."""

from __future__ import annotations

import abc
import asyncio
import itertools
import json
from typing import Any

from channels.testing import WebsocketCommunicator

_refs = itertools.count(1)


class FrameError(Exception):
    """An `error` frame answered a request."""

    def __init__(self, data: dict[str, Any]) -> None:
        super().__init__(data.get("code"), data.get("message"))
        self.data = data
        self.code = data.get("code")


class HubClient(abc.ABC):
    """Request/reply and event matching over any transport with send_text / recv_text."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.hello: dict[str, Any] | None = None

    @abc.abstractmethod
    async def send_text(self, text: str) -> None: ...

    @abc.abstractmethod
    async def recv_text(self, timeout: float) -> str: ...

    async def send_frame(self, frame: dict[str, Any]) -> None:
        await self.send_text(json.dumps(frame))

    async def recv_frame(self, timeout: float = 5.0) -> dict[str, Any]:
        return json.loads(await self.recv_text(timeout))

    async def request(
        self, frame_type: str, data: dict[str, Any] | None = None, timeout: float = 10.0
    ) -> dict[str, Any]:
        """Send a request; return the reply's data (events seen meanwhile are kept), raise FrameError."""
        ref = f"r{next(_refs)}"
        frame: dict[str, Any] = {"type": frame_type, "ref": ref}
        if data is not None:
            frame["data"] = data
        await self.send_frame(frame)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            got = await self.recv_frame(max(0.01, deadline - loop.time()))
            if got.get("ref") == ref:
                if got["type"] == "error":
                    raise FrameError(got["data"])
                assert got["type"] == "reply", got
                return got["data"]
            self.events.append(got)

    async def event(self, frame_type: str, timeout: float = 5.0, **match: Any) -> dict[str, Any]:
        """The next event of this type (and matching data fields), from the backlog or the wire."""
        for i, ev in enumerate(self.events):
            if ev["type"] == frame_type and all(ev["data"].get(k) == v for k, v in match.items()):
                return self.events.pop(i)["data"]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            got = await self.recv_frame(max(0.01, deadline - loop.time()))
            if got["type"] == frame_type and all(got["data"].get(k) == v for k, v in match.items()):
                return got["data"]
            self.events.append(got)

    async def no_event(self, frame_type: str, within: float = 0.5) -> None:
        """Assert no event of this type arrives within the given time."""
        assert all(ev["type"] != frame_type for ev in self.events), self.events
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while (left := deadline - loop.time()) > 0:
            try:
                got = await self.recv_frame(left)
            except TimeoutError:
                return
            assert got["type"] != frame_type, got
            self.events.append(got)


class CommunicatorClient(HubClient):
    def __init__(self, communicator: WebsocketCommunicator) -> None:
        super().__init__()
        self.communicator = communicator

    async def send_text(self, text: str) -> None:
        await self.communicator.send_to(text_data=text)

    async def recv_text(self, timeout: float) -> str:
        # receive_output's own timeout cancels the application: poll without it.
        if await self.communicator.receive_nothing(timeout, interval=0.005):
            raise TimeoutError("no frame")
        message = await self.communicator.receive_output()
        if message["type"] == "websocket.close":
            raise ConnectionError(f"closed {message.get('code')}")
        return str(message["text"])


class SocketClient(HubClient):
    """A real WebSocket client (the `websockets` library) against a running server."""

    def __init__(self, ws: Any) -> None:
        super().__init__()
        self.ws = ws

    async def send_text(self, text: str) -> None:
        await self.ws.send(text)

    async def recv_text(self, timeout: float) -> str:
        return str(await asyncio.wait_for(self.ws.recv(), timeout))
