"""Room-wide counters that must not cost one emit per event: likes and viewer counts.

Likes are summed locally and flushed to Redis every `flush_ms`; every node then emits at most one
`likes` event per room per tick, whatever the like rate. Viewer counts: each node writes its own
count per room with a timestamp; readers ignore counts of nodes that stopped refreshing them.
"""

from __future__ import annotations

import time
from collections import defaultdict

import redis.asyncio as aioredis

from core.store import room_key

STALE_AFTER_S = 15.0


class LikeCounter:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._pending: defaultdict[str, int] = defaultdict(int)
        self._latest: dict[str, int] = {}
        self._emitted: dict[str, int] = {}

    def add(self, room: str, count: int) -> None:
        self._pending[room] += count

    def observe(self, room: str, total: int) -> None:
        """A total seen from another node; the largest total is the newest."""
        if total > self._latest.get(room, -1):
            self._latest[room] = total

    async def flush(self) -> dict[str, int]:
        """Write pending likes; return the rooms whose total this node has not emitted yet."""
        pending, self._pending = self._pending, defaultdict(int)
        if pending:
            async with self._redis.pipeline(transaction=False) as pipe:
                for room, count in pending.items():
                    pipe.incrby(room_key(room, "likes"), count)
                totals = await pipe.execute()
            for room, total in zip(pending, totals, strict=True):
                self.observe(room, int(total))
        fresh = {r: t for r, t in self._latest.items() if self._emitted.get(r) != t}
        self._emitted.update(fresh)
        return fresh

    def forget(self, room: str) -> None:
        self._latest.pop(room, None)
        self._emitted.pop(room, None)

    async def total(self, room: str) -> int:
        return int(await self._redis.get(room_key(room, "likes")) or 0)


class ViewerCounter:
    def __init__(self, redis: aioredis.Redis, node_id: str) -> None:
        self._redis = redis
        self._node_id = node_id
        self._emitted: dict[str, int] = {}

    async def publish(self, local: dict[str, int]) -> dict[str, int]:
        """Record this node's counts; return room totals that changed since the last call."""
        rooms = set(local) | set(self._emitted)
        if not rooms:
            return {}
        now = time.time()
        async with self._redis.pipeline(transaction=False) as pipe:
            for room in rooms:
                key = room_key(room, "viewers")
                count = local.get(room, 0)
                if count:
                    pipe.hset(key, self._node_id, f"{count}:{now:.3f}")
                else:
                    pipe.hdel(key, self._node_id)
                pipe.hgetall(key)
            results = await pipe.execute()
        changed: dict[str, int] = {}
        for room, counts in zip(rooms, results[1::2], strict=True):
            total = _sum_fresh(counts, now)
            if room not in local:
                self._emitted.pop(room, None)
            elif self._emitted.get(room) != total:
                self._emitted[room] = changed[room] = total
        return changed

    async def total(self, room: str) -> int:
        return _sum_fresh(await self._redis.hgetall(room_key(room, "viewers")), time.time())

    async def withdraw(self, rooms: list[str]) -> None:
        for room in rooms:
            await self._redis.hdel(room_key(room, "viewers"), self._node_id)


def _sum_fresh(counts: dict[bytes, bytes], now: float) -> int:
    total = 0
    for value in counts.values():
        count, _, stamp = value.decode().partition(":")
        if now - float(stamp or 0) < STALE_AFTER_S:
            total += int(count)
    return total
