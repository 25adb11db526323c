"""TCP writes in daphne without registering the socket as a writer for every frame (ADR 0036).

Twisted's `transport.write` only buffers and registers the socket with the event loop for
writability (an `epoll_ctl`); on the next loop iteration the reactor writes the buffer and
unregisters it again (another `epoll_ctl`). Every WebSocket frame the hub sends paid those two
system calls and an extra trip round the loop: a tenth of the web process's CPU in the chat
benchmark.

Here a write to an idle connection schedules one flush at the end of the current loop iteration
(`call_soon`): everything written to that connection meanwhile goes out in one `send`, through
the reactor's own write step (`_readOrWrite`, so errors, half-closes and producers behave as
before). Only when the kernel buffer is full does the connection register for writability, as
Twisted always did. Applied to the asyncio reactor only (the one daphne runs)."""

from __future__ import annotations

from typing import Any

from twisted.internet import tcp
from twisted.internet.abstract import FileDescriptor, _dataMustBeBytes
from twisted.internet.asyncioreactor import AsyncioSelectorReactor

_FLUSH_PENDING = "_hub_flush_pending"


def _write(self: Any, data: bytes) -> None:
    reactor = self.reactor
    if not isinstance(reactor, AsyncioSelectorReactor):
        FileDescriptor.write(self, data)
        return
    _dataMustBeBytes(data)
    if not self.connected or self._writeDisconnected or not data:
        return
    self._tempDataBuffer.append(data)
    self._tempDataLen += len(data)
    self._maybePauseProducer()
    if getattr(self, _FLUSH_PENDING, False) or self in reactor._writers:
        return  # the scheduled flush, or writability, will send it
    setattr(self, _FLUSH_PENDING, True)
    reactor._asyncioEventloop.call_soon(_flush, self)


def _flush(conn: Any) -> None:
    setattr(conn, _FLUSH_PENDING, False)
    if not conn.connected or conn in conn.reactor._writers:
        return
    conn.reactor._readOrWrite(conn, False)  # what a writable socket gets: doWrite, errors handled
    if conn.connected and (conn._tempDataLen or conn.offset < len(conn.dataBuffer)):
        conn.startWriting()  # the kernel buffer is full: wait for writability, as Twisted does


def install() -> None:
    tcp.Connection.write = _write  # type: ignore[method-assign]
