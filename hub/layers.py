"""The channel layer: channels-redis' pub/sub layer with its Redis commands sent in batches (ADR 0030).

Upstream, each process holds one connection per Redis host for publishing and one for its
subscriptions, and serialises every PUBLISH, SUBSCRIBE and UNSUBSCRIBE behind one asyncio lock,
awaiting each reply before the next command goes out. That keeps redis-py's pool small (its
asyncio pool raises "Too many connections" instead of waiting), but under load the lock becomes a
queue: each hand-over costs an event-loop iteration, so a burst of 200 connects (two subscriptions
each) waited about half a second there, and publishing was capped at one round trip per event.

Here commands are queued in call order and a single flusher per host sends whatever has queued
while the previous batch was in flight: consecutive PUBLISHes as one pipeline, consecutive
SUBSCRIBEs (or UNSUBSCRIBEs) as one command with many channels. Callers still wait until their
command has been sent (and, for PUBLISH, answered), order is kept, and the connection count stays
as upstream. Delivery semantics are upstream's: at most once, so the database stays the record."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from channels_redis.pubsub import RedisPubSubChannelLayer, RedisPubSubLoopLayer, RedisSingleShardConnection
from channels_redis.utils import _wrap_close

PUBLISH, SUBSCRIBE, UNSUBSCRIBE = "publish", "subscribe", "unsubscribe"


class BatchingShardConnection(RedisSingleShardConnection):
    """One Redis host: commands queue up and go out in batches, in the order they were made."""

    def __init__(self, host: Any, channel_layer: Any) -> None:
        super().__init__(host, channel_layer)
        self._queue: list[tuple[str, Any, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    def _submit(self, op: str, arg: Any) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._queue.append((op, arg, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush())
        return future

    async def publish(self, channel: str, message: bytes) -> None:
        await self._submit(PUBLISH, (channel, message))

    async def subscribe(self, channel: str) -> None:
        await self._submit(SUBSCRIBE, channel)

    async def unsubscribe(self, channel: str) -> None:
        await self._submit(UNSUBSCRIBE, channel)

    async def _flush(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            async with self._lock:  # upstream's flush() takes it too
                for op, run in itertools.groupby(batch, key=lambda item: item[0]):
                    items = list(run)
                    try:
                        await self._send(op, [arg for _, arg, _ in items])
                    except Exception as exc:  # each caller learns its command failed, as upstream
                        for _, _, future in items:
                            if not future.done():
                                future.set_exception(exc)
                    else:
                        for _, _, future in items:
                            if not future.done():
                                future.set_result(None)

    async def _send(self, op: str, args: list[Any]) -> None:
        self._ensure_redis()
        if op == PUBLISH:
            pipe = self._redis.pipeline(transaction=False)
            for channel, message in args:
                pipe.publish(channel, message)
            await pipe.execute()
            return
        self._ensure_receiver()
        if op == SUBSCRIBE:
            fresh = list(dict.fromkeys(c for c in args if c not in self._subscribed_to))
            if fresh:
                await self._pubsub.subscribe(*fresh)
                self._subscribed_to.update(fresh)
        else:
            gone = list(dict.fromkeys(c for c in args if c in self._subscribed_to))
            if gone:
                await self._pubsub.unsubscribe(*gone)
                self._subscribed_to.difference_update(gone)


class BatchingPubSubLoopLayer(RedisPubSubLoopLayer):
    """Upstream's per-event-loop layer, on batching shard connections."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        hosts = [shard.host for shard in self._shards]  # type: ignore[has-type]
        self._shards = [BatchingShardConnection(host, self) for host in hosts]


class BatchingPubSubChannelLayer(RedisPubSubChannelLayer):
    """`CHANNEL_LAYERS` backend: `RedisPubSubChannelLayer` with batched Redis commands."""

    def _get_layer(self) -> RedisPubSubLoopLayer:
        loop = asyncio.get_running_loop()
        try:
            return self._layers[loop]
        except KeyError:
            layer = BatchingPubSubLoopLayer(*self._args, **self._kwargs, channel_layer=self)
            self._layers[loop] = layer
            _wrap_close(self, loop)
            return layer
