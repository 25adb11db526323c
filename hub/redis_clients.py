"""Every Redis client of the hub, with timeouts: one sync pool, one async pool per loop, subscriber connections.

Rate limits, presence, throttles, readiness and event publishing use the pools; each web process's
router (consumers.router) holds one dedicated connection for its subscriptions. A command that
finds its pooled connection dead (Redis restarted) is retried once or twice at once on a new one;
while Redis is away, commands fail within about a connect timeout instead of queueing behind
long retries (the caller logs and goes on: the database is the record)."""

from __future__ import annotations

import asyncio
import weakref
from functools import lru_cache

import redis
import redis.asyncio as aredis
from django.conf import settings
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

SOCKET_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 2.0
RETRIES = 2  # a stale pooled connection after a Redis restart: reconnect, not fail
_BACKOFF = {"base": 0.01, "cap": 0.2}

_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aredis.Redis] = weakref.WeakKeyDictionary()


def _options() -> dict[str, float]:
    return {"socket_timeout": SOCKET_TIMEOUT_S, "socket_connect_timeout": CONNECT_TIMEOUT_S}


@lru_cache(maxsize=4)
def _sync_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url, **_options(), health_check_interval=30, retry=Retry(ExponentialWithJitterBackoff(**_BACKOFF), RETRIES)
    )


def sync_redis() -> redis.Redis:
    """The process's sync client (thread-safe pool)."""
    return _sync_client(settings.REDIS_URL)


def async_redis() -> aredis.Redis:
    """The running loop's async client; a blocking pool waits for a free connection instead of failing."""
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        pool = aredis.BlockingConnectionPool.from_url(
            settings.REDIS_URL,
            max_connections=64,
            timeout=10,
            retry=AsyncRetry(ExponentialWithJitterBackoff(**_BACKOFF), RETRIES),
            **_options(),
        )
        client = aredis.Redis(connection_pool=pool)
        _async_clients[loop] = client
    return client


def subscriber_connection() -> aredis.Connection:
    """A new, unconnected connection of its own for SUBSCRIBE (a subscribed connection can't be pooled).

    Its reads wait as long as the caller says (the router pings it when silent); connects time out."""
    pool = aredis.ConnectionPool.from_url(settings.REDIS_URL, **_options())
    return pool.make_connection()  # type: ignore[no-any-return]
