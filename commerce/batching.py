"""Coalesce concurrent script calls into pipelined round trips.

A crowd pressing Buy in the same instant becomes a few pipelines instead of one connection and
round trip per attempt. Each script still runs atomically on the server; only the network trip
is shared. Scripts go by SHA; a NOSCRIPT answer (server restarted, cache flushed) loads the script
and retries those calls once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

_Call = tuple[AsyncScript, Sequence[Any], Sequence[Any], "asyncio.Future[Any]"]


class ScriptBatcher:
    def __init__(self, redis: aioredis.Redis, max_batch: int = 256) -> None:
        self._redis = redis
        self._max = max_batch
        self._pending: list[_Call] = []
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        # Cluster pipelines split by slot anyway; call directly there.
        self._direct = isinstance(redis, RedisCluster)

    async def __call__(self, script: AsyncScript, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        if self._direct:
            return await script(keys=keys, args=args)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((script, keys, args, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, []
        for start in range(0, len(pending), self._max):
            task = asyncio.ensure_future(self._run(pending[start : start + self._max]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, calls: list[_Call]) -> None:
        try:
            results = await self._execute(calls)
            retry = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
            if retry:
                for script in {calls[i][0] for i in retry}:
                    script.sha = await self._redis.script_load(script.script)
                again = await self._execute([calls[i] for i in retry])
                for i, result in zip(retry, again, strict=True):
                    results[i] = result
        except BaseException as exc:
            for *_, future in calls:
                if not future.done():
                    future.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        for (*_, future), result in zip(calls, results, strict=True):
            if future.done():
                continue  # the caller gave up (timeout); the script ran or not, keys decide
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def _execute(self, calls: list[_Call]) -> list[Any]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for script, keys, args, _ in calls:
                pipe.evalsha(script.sha, len(keys), *keys, *args)
            results: list[Any] = await pipe.execute(raise_on_error=False)
        return results
