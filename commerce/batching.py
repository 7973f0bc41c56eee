"""Coalesce concurrent script calls into pipelined round trips.

A crowd pressing Buy in the same instant becomes a few pipelines instead of one connection and
round trip per attempt. Each script still runs atomically on the server; only the network trip
is shared. Scripts go by SHA; a NOSCRIPT answer (server restarted, cache flushed) loads the script
and retries those calls once.

A batch is written straight to a pooled connection (one packed write, then one reply per call),
not through redis-py's `Pipeline`, whose per-command bookkeeping cost more than the call itself
on a hot path. A caller that sends the same keys and arguments again and again (the
reservation: one sale's keys, the node's limits) packs those once in an `EvalshaTemplate` and
fills in only what changes per call.

The store's deadline is kept per batch, not per call: a batch that does not answer within
`timeout_s` fails every call in it with `TimeoutError` and its connection is dropped.

At most `max_inflight` batches are on the wire at once; calls arriving meanwhile wait for the next
one. Under load that makes batches larger (fewer writes and reads, on both sides of the socket)
for at most one extra round trip; the server runs scripts one at a time anyway. A batch failing
with a timeout or a connection error fails the calls queued behind it too, so none waits longer
than about one deadline for a store that is gone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

# (script, the packed EVALSHA command, the caller's future)
_Call = tuple[AsyncScript, bytes, "asyncio.Future[Any]"]


def _bulk(value: Any) -> bytes:
    data = value if isinstance(value, bytes) else str(value).encode()
    return b"$%d\r\n%b\r\n" % (len(data), data)


def _evalsha(sha: str, keys: Sequence[Any], args: Sequence[Any]) -> bytes:
    """`EVALSHA sha numkeys keys... args...` in RESP, packed as redis-py would (ints by str())."""
    parts = [b"*%d\r\n$7\r\nEVALSHA\r\n" % (3 + len(keys) + len(args)), _bulk(sha)]
    parts.append(_bulk(len(keys)))
    parts.extend([_bulk(x) for x in keys])
    parts.extend([_bulk(x) for x in args])
    return b"".join(parts)


class EvalshaTemplate:
    """`EVALSHA` of one script with its fixed keys and arguments packed once.

    `None` among `keys` and `args` marks a slot; `pack(*values)` fills the slots in order and
    gives the bytes `_evalsha` would give for the filled-in call.
    """

    def __init__(self, sha: str, keys: Sequence[Any], args: Sequence[Any]) -> None:
        n = 3 + len(keys) + len(args)
        run = [b"*%d\r\n$7\r\nEVALSHA\r\n" % n, _bulk(sha), _bulk(len(keys))]
        self._chunks: list[bytes] = []  # the constant runs around the slots
        for value in (*keys, *args):
            if value is None:
                self._chunks.append(b"".join(run))
                run = []
            else:
                run.append(_bulk(value))
        self._chunks.append(b"".join(run))
        self.slots = len(self._chunks) - 1

    def pack(self, *values: Any) -> bytes:
        if len(values) != self.slots:
            raise ValueError(f"{self.slots} values expected, got {len(values)}")
        chunks = self._chunks
        out = [chunks[0]]
        for i, value in enumerate(values, 1):
            out.append(_bulk(value))
            out.append(chunks[i])
        return b"".join(out)


class ScriptBatcher:
    def __init__(
        self,
        redis: aioredis.Redis,
        max_batch: int = 256,
        timeout_s: float | None = None,
        max_inflight: int = 2,
    ) -> None:
        self._redis = redis
        self._max = max_batch
        self._timeout = timeout_s
        self._inflight_max = max_inflight
        self._inflight = 0
        self._pending: list[_Call] = []
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        # Cluster pipelines split by slot anyway; call directly there.
        self._direct = isinstance(redis, RedisCluster)

    @property
    def direct(self) -> bool:
        """True on a cluster: calls go one by one, `call_packed` is not available."""
        return self._direct

    async def __call__(self, script: AsyncScript, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        if self._direct:
            async with asyncio.timeout(self._timeout):
                return await script(keys=keys, args=args)
        return await self._submit(script, _evalsha(script.sha, keys, args))

    async def call_packed(self, script: AsyncScript, command: bytes) -> Any:
        """Run `command`, an `EVALSHA` of `script` packed by the caller (e.g. `EvalshaTemplate`).

        The SHA of a script's text never changes, so the bytes stay good after a reload.
        """
        if self._direct:
            raise RuntimeError("packed calls need a single Redis, not a cluster")
        return await self._submit(script, command)

    def _submit(self, script: AsyncScript, command: bytes) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((script, command, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._scheduled = False
        while self._pending and self._inflight < self._inflight_max:
            calls, self._pending = self._pending[: self._max], self._pending[self._max :]
            self._inflight += 1
            task = asyncio.ensure_future(self._run(calls))
            self._tasks.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._inflight -= 1
        self._flush()

    def _fail_queued(self, exc: BaseException) -> None:
        queued, self._pending = self._pending, []
        for _, _, future in queued:
            if not future.done():
                future.set_exception(exc)

    async def _run(self, calls: list[_Call]) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                results = await self._execute(calls)
                retry = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
                if retry:
                    for script in {calls[i][0] for i in retry}:
                        script.sha = await self._redis.script_load(script.script)
                    again = await self._execute([calls[i] for i in retry])
                    for i, result in zip(retry, again, strict=True):
                        results[i] = result
        except BaseException as exc:
            for _, _, future in calls:
                if not future.done():
                    future.set_exception(exc)
            if isinstance(exc, (TimeoutError, ConnectionError, RedisConnectionError)):
                self._fail_queued(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        for (_, _, future), result in zip(calls, results, strict=True):
            if future.done():
                continue  # the caller gave up (timeout); the script ran or not, keys decide
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def _execute(self, calls: list[_Call]) -> list[Any]:
        pool = self._redis.connection_pool
        conn = await pool.get_connection()
        try:
            await conn.send_packed_command(b"".join([command for _, command, _ in calls]))
            results: list[Any] = []
            for _ in calls:
                try:
                    results.append(await conn.read_response())
                except ResponseError as exc:  # this call's error (NOSCRIPT, a script error)
                    results.append(exc)
        except BaseException:
            # Replies may still be on the way: this connection cannot be reused as it is.
            await conn.disconnect(nowait=True)
            raise
        finally:
            await pool.release(conn)
        return results
