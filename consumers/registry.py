"""Request handlers by frame type, and connection lifecycle hooks.

A feature adds a request type with `@handles("thing.do", ThingDoIn)` in a module under
`consumers/handlers/`; the consumer looks handlers up here, validates `data` with the schema
and passes the model in. No if-chains."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ConfigDict

from hub.validation import NulFree

if TYPE_CHECKING:
    from consumers.connection import Connection


class Payload(NulFree):
    """Base of request schemas: unknown fields are refused, so typos surface as `bad_request`; no string
    anywhere in `data` may hold U+0000 (PROTOCOL §2.1)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Empty(Payload):
    pass


P = TypeVar("P", bound=BaseModel)
HandlerFunc = Callable[["Connection", Any], Awaitable[dict[str, Any] | None]]
Hook = Callable[["Connection"], Awaitable[None]]


@dataclass(frozen=True)
class Route:
    frame_type: str
    schema: type[BaseModel]
    func: HandlerFunc
    # Pipelined: the handler is called as the frame is read and takes its place in line then (e.g.
    # queues the request), returning what to await; the connection's next frames are read while
    # it is answered (other requests still wait for it). Replies carry `ref`, so they need not
    # come in order.
    pipelined: bool = False


ROUTES: dict[str, Route] = {}
CONNECT_HOOKS: list[Hook] = []
DISCONNECT_HOOKS: list[Hook] = []


def handles(
    frame_type: str,
    schema: type[P] = Empty,  # type: ignore[assignment]
    *,
    pipelined: bool = False,
) -> Callable[[Callable[[Connection, P], Awaitable[dict[str, Any] | None]]], HandlerFunc]:
    """Register the handler of one request type; its reply `data` is what it returns."""

    def register(func: Callable[[Connection, P], Awaitable[dict[str, Any] | None]]) -> HandlerFunc:
        if frame_type in ROUTES:
            raise RuntimeError(f"two handlers for {frame_type!r}")
        ROUTES[frame_type] = Route(frame_type, schema, func, pipelined)
        return func

    return register


def on_connect(hook: Hook) -> Hook:
    """Run after a connection is accepted, joined its user's group and got `hello`."""
    CONNECT_HOOKS.append(hook)
    return hook


def on_disconnect(hook: Hook) -> Hook:
    """Run when an authenticated connection goes away, however it went."""
    DISCONNECT_HOOKS.append(hook)
    return hook
