"""The library internals config/daphne_options.py patches are still there and still do what is patched (ADR 0052).

If an upgrade of daphne or autobahn changes one of them, these fail loudly, naming it; the patch is
then re-examined (and pyproject.toml's upper bounds moved) instead of silently doing nothing."""

from __future__ import annotations

import inspect
import re
from importlib.metadata import version
from pathlib import Path

import autobahn.twisted.websocket
import autobahn.websocket.protocol
from autobahn.twisted.websocket import WebSocketServerFactory
from daphne import server as daphne_server
from daphne.ws_protocol import WebSocketFactory

from config import daphne_options

ROOT = Path(__file__).resolve().parents[2]


def _bound(package: str) -> str:
    """The upper bound pyproject.toml pins for a patched package."""
    text = (ROOT / "pyproject.toml").read_text()
    match = re.search(rf'"{package}>=[^,"]+,<([^"]+)"', text)
    assert match, f"pyproject.toml must bound {package} from above: config/daphne_options.py patches it"
    return match.group(1)


def _below(installed: str, bound: str) -> bool:
    def parts(v: str) -> tuple[int, ...]:
        return tuple(int(p) for p in re.findall(r"\d+", v)[:3])

    return parts(installed) < parts(bound)


def test_patched_libraries_are_pinned_below_the_next_unchecked_release() -> None:
    for package in ("daphne", "autobahn"):
        assert _below(version(package), _bound(package)), f"{package} {version(package)} is past its checked bound"


def test_daphne_still_sets_websocket_options_through_the_patched_method_without_fail_by_drop() -> None:
    # daphne.server.Server.run builds its factory and calls setProtocolOptions (the wrapped method).
    assert "self.ws_factory.setProtocolOptions(" in inspect.getsource(daphne_server.Server.run)
    assert "failByDrop" not in inspect.getsource(daphne_server.Server.run)  # else our default is moot
    assert issubclass(WebSocketFactory, WebSocketServerFactory)
    assert "failByDrop" in inspect.signature(WebSocketServerFactory.setProtocolOptions).parameters
    daphne_options.install()
    factory = WebSocketFactory.__new__(WebSocketFactory)
    WebSocketServerFactory.resetProtocolOptions(factory)
    assert factory.failByDrop is True  # autobahn's default: drop TCP instead of a 1009 close frame
    factory.setProtocolOptions(maxMessagePayloadSize=10)
    assert factory.failByDrop is False  # the patch: a real close frame (ADR 0003)


def test_autobahn_still_formats_its_debug_lines_through_the_patched_names() -> None:
    source = inspect.getsource(autobahn.websocket.protocol)
    assert "from pprint import pformat" in source and "pformat(configAttrLog)" in source
    for module in (autobahn.websocket.protocol, autobahn.twisted.websocket):
        text = inspect.getsource(module)
        for name in ("hltype", "hlval"):
            assert f"{name}(" in text, f"{module.__name__} no longer calls {name}: drop that patch"
    daphne_options.install()
    assert autobahn.websocket.protocol.pformat is daphne_options._pformat_when_shown
    for module in (autobahn.websocket.protocol, autobahn.twisted.websocket):
        assert module.hltype.__name__ == "highlighted" and module.hlval.__name__ == "highlighted"
        assert module.hltype(test_autobahn_still_formats_its_debug_lines_through_the_patched_names) == ""
