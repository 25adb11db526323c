"""Redis clients for the hub's own keys (rate limits, presence): one sync pool, one async pool per loop."""

from __future__ import annotations

import asyncio
import weakref
from functools import lru_cache

import redis
import redis.asyncio as aredis
from django.conf import settings

_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aredis.Redis] = weakref.WeakKeyDictionary()


@lru_cache(maxsize=4)
def _sync_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5, health_check_interval=30)


def sync_redis() -> redis.Redis:
    """The process's sync client (thread-safe pool)."""
    return _sync_client(settings.REDIS_URL)


def async_redis() -> aredis.Redis:
    """The running loop's async client; a blocking pool waits for a free connection instead of failing."""
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        pool = aredis.BlockingConnectionPool.from_url(
            settings.REDIS_URL, max_connections=64, timeout=10, socket_timeout=5, socket_connect_timeout=5
        )
        client = aredis.Redis(connection_pool=pool)
        _async_clients[loop] = client
    return client
