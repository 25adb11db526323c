"""Parsing untrusted JSON (HTTP bodies, WebSocket frames): strict, and never deeper than MAX_DEPTH.

orjson refuses NaN, infinities and lone surrogates and stops at 1,024 levels, but a value nested a
thousand levels deep still breaks whatever recurses over it later (DRF's fields call `str()` on
their input: RecursionError, an HTML 500). No request of the protocol nests more than a few levels."""

from __future__ import annotations

from typing import Any

import orjson

MAX_DEPTH = 32


class InvalidJSON(ValueError):
    """Not JSON, or nested deeper than MAX_DEPTH: the message says which, `detail` where."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


def loads(data: bytes | str) -> Any:
    """The value of a JSON document, or InvalidJSON."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidJSON("not valid JSON", str(exc)) from None
    # Fewer brackets in the whole text than MAX_DEPTH cannot nest deeper (a C-speed count spares
    # every ordinary frame the walk); brackets inside strings only make the walk run.
    if isinstance(value, dict | list) and _may_be_deep(data) and not _shallow(value):
        raise InvalidJSON(f"nested deeper than {MAX_DEPTH} levels")
    return value


def _may_be_deep(data: bytes | str) -> bool:
    if isinstance(data, str):
        return data.count("{") + data.count("[") > MAX_DEPTH
    return data.count(b"{") + data.count(b"[") > MAX_DEPTH


def _shallow(value: dict[str, Any] | list[Any]) -> bool:
    """Whether no array or object inside `value` is nested past MAX_DEPTH (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            return False
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return True
