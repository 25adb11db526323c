"""WebSocket protocol options daphne does not expose on its command line.

Daphne enforces `--websocket-max-message-size` through autobahn, which then fails the connection
with close code 1009 (PROTOCOL §2). Autobahn's default `failByDrop=True` drops the TCP connection
instead of sending that close frame, so clients would see 1006; and an application cannot send 1009
itself (autobahn only lets applications use 1000 and 3000-4999). See docs/adr/0003."""

from __future__ import annotations

from typing import Any

from daphne.ws_protocol import WebSocketFactory

_original = WebSocketFactory.setProtocolOptions


def _set_protocol_options(self: WebSocketFactory, *args: Any, **kwargs: Any) -> None:
    kwargs.setdefault("failByDrop", False)
    _original(self, *args, **kwargs)


def install() -> None:
    if WebSocketFactory.setProtocolOptions is not _set_protocol_options:
        WebSocketFactory.setProtocolOptions = _set_protocol_options  # type: ignore[method-assign]
