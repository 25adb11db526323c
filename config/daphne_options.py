"""WebSocket protocol options daphne does not expose on its command line, and one autobahn cost.

Daphne enforces `--websocket-max-message-size` through autobahn, which then fails the connection
with close code 1009 (PROTOCOL §2). Autobahn's default `failByDrop=True` drops the TCP connection
instead of sending that close frame, so clients would see 1006; and an application cannot send 1009
itself (autobahn only lets applications use 1000 and 3000-4999). See docs/adr/0003.

Autobahn also pretty-prints its ~40 protocol options on every new connection for a debug log line
that is discarded unless txaio logs at debug level: 15 % of the web process's CPU in a connect
storm. `pformat` in its protocol module is replaced by one that does the work only when the line
would be shown. See docs/adr/0030."""

from __future__ import annotations

import pprint
from typing import Any

import autobahn.websocket.protocol
import txaio
from daphne.ws_protocol import WebSocketFactory

_original = WebSocketFactory.setProtocolOptions


def _set_protocol_options(self: WebSocketFactory, *args: Any, **kwargs: Any) -> None:
    kwargs.setdefault("failByDrop", False)
    _original(self, *args, **kwargs)


def _pformat_when_shown(obj: Any) -> str:
    """`pprint.pformat` when txaio would print debug lines; otherwise a placeholder, at no cost."""
    if txaio.get_global_log_level() in ("debug", "trace"):  # type: ignore[attr-defined]
        return pprint.pformat(obj)
    return "(not formatted below txaio's debug level)"


def install() -> None:
    if WebSocketFactory.setProtocolOptions is not _set_protocol_options:
        WebSocketFactory.setProtocolOptions = _set_protocol_options  # type: ignore[method-assign]
    autobahn.websocket.protocol.pformat = _pformat_when_shown  # type: ignore[assignment]
