"""WebSocket protocol options daphne does not expose on its command line, and one autobahn cost.

Daphne enforces `--websocket-max-message-size` through autobahn, which then fails the connection
with close code 1009 (PROTOCOL §2). Autobahn's default `failByDrop=True` drops the TCP connection
instead of sending that close frame, so clients would see 1006; and an application cannot send 1009
itself (autobahn only lets applications use 1000 and 3000-4999). See docs/adr/0003.

Autobahn also pretty-prints its ~40 protocol options on every new connection for a debug log line
that is discarded unless txaio logs at debug level: 15 % of the web process's CPU in a connect
storm. `pformat` in its protocol module is replaced by one that does the work only when the line
would be shown (docs/adr/0030); likewise its `hltype`/`hlval` highlighters, which colour the
arguments of debug lines for every frame sent and received (docs/adr/0036).

Each of these reaches into autobahn/daphne, so pyproject.toml bounds both from above and
tests/consumers/test_library_patches.py fails when a patched name or behaviour changes (ADR 0052).
Twisted's write path is no longer patched (ADR 0052: no measurable gain)."""

from __future__ import annotations

import gc
import pprint
from typing import Any

import autobahn.twisted.websocket
import autobahn.websocket.protocol
import txaio
from daphne.ws_protocol import WebSocketFactory

_original = WebSocketFactory.setProtocolOptions


def _set_protocol_options(self: WebSocketFactory, *args: Any, **kwargs: Any) -> None:
    kwargs.setdefault("failByDrop", False)
    _original(self, *args, **kwargs)


def _pformat_when_shown(obj: Any) -> str:
    """`pprint.pformat` when txaio would print debug lines; otherwise a placeholder, at no cost."""
    if _debug_shown():
        return pprint.pformat(obj)
    return "(not formatted below txaio's debug level)"


def _debug_shown() -> bool:
    return txaio.get_global_log_level() in ("debug", "trace")  # type: ignore[attr-defined,no-any-return]


def _quiet(highlight: Any) -> Any:
    """Autobahn's `hltype`/`hlval` colour their argument with click for a debug line (evaluated even when
    the line is discarded, on every frame sent and received); below debug level they return ""."""

    def highlighted(*args: Any, **kwargs: Any) -> Any:
        return highlight(*args, **kwargs) if _debug_shown() else ""

    return highlighted


def tune_gc() -> None:
    """Keep the cyclic garbage collector from rescanning every open connection over and over (ADR 0035).

    Each connection holds a few hundred objects for its lifetime; with thousands open, a collection
    of the older generations walks all of them, and the default thresholds (700 allocations per
    young collection) run one every few connects: a fifth of the web process's CPU in a storm.
    What was loaded at start-up (Django, the apps) is frozen out of collection altogether, and young
    collections run every 50,000 allocations instead of 700."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def install() -> None:
    if WebSocketFactory.setProtocolOptions is not _set_protocol_options:
        WebSocketFactory.setProtocolOptions = _set_protocol_options  # type: ignore[method-assign]
    autobahn.websocket.protocol.pformat = _pformat_when_shown  # type: ignore[assignment]
    for module in (autobahn.websocket.protocol, autobahn.twisted.websocket):
        for name in ("hltype", "hlval"):
            original = getattr(module, name)
            if getattr(original, "__name__", "") != "highlighted":
                setattr(module, name, _quiet(original))
