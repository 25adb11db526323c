"""The bare-relay baseline, the Python ceiling: a `websockets` server with no auth and no database.

A client connects to `/room/<name>`; every text frame it sends is relayed, unchanged, to the other
members of that room. Run: `python -m bench.relay --port 9000`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

ROOMS: dict[str, set[ServerConnection]] = {}


async def handler(ws: ServerConnection) -> None:
    """Join the room named by the path, relay each frame to the others, leave on close."""
    name = ws.request.path.rstrip("/").rsplit("/", 1)[-1] if ws.request else ""
    room = ROOMS.setdefault(name, set())
    room.add(ws)
    try:
        # A client that went away without a close frame ends the loop with ConnectionClosed.
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                # broadcast() writes without waiting for each peer to drain: the websockets fast path.
                broadcast([peer for peer in room if peer is not ws], message)
    finally:
        room.discard(ws)
        if not room:
            ROOMS.pop(name, None)


async def main(host: str, port: int) -> None:
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with serve(handler, host, port, compression=None, max_size=64 * 1024):
        await stop


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    args = parser.parse_args()
    asyncio.run(main(args.host, args.port))
