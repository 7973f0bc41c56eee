"""What the consumer groups of a stream have acknowledged, and trimming that never passes it.

A stream id is `ms-seq`. For a group, every entry below its *floor* is acknowledged: the floor is
its oldest pending entry, else the entry after the last one it was given. The floor of several
groups is the lowest of theirs. Holds wait for their event to fall below the delivering groups'
floor (`commerce/sweeper.py`); trimming never cuts at or above the floor of all groups.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import redis.asyncio as aioredis

from core.store import STORE_ERRORS, honour_cancel

log = logging.getLogger(__name__)

StreamId = tuple[int, int]


def parse_id(value: bytes | str) -> StreamId:
    text = value.decode() if isinstance(value, bytes) else value
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def format_id(value: StreamId) -> str:
    return f"{value[0]}-{value[1]}"


def _next(value: StreamId) -> StreamId:
    return (value[0], value[1] + 1)


async def group_floors(
    redis: aioredis.Redis, stream: str, groups: Iterable[str] | None = None
) -> dict[str, StreamId]:
    """Each existing group's floor (only `groups` when given); {} when the stream has none."""
    try:
        infos: list[dict[Any, Any]] = await redis.xinfo_groups(stream)
    except aioredis.ResponseError:  # no such stream yet
        return {}
    wanted = set(groups) if groups is not None else None
    floors: dict[str, StreamId] = {}
    for info in infos:
        name = _text(info.get("name", b""))
        if wanted is not None and name not in wanted:
            continue
        last = _next(parse_id(info.get("last-delivered-id", b"0-0")))
        if int(info.get("pending", 0)):
            summary = await redis.xpending(stream, name)
            lowest = summary.get("min")
            if lowest:
                last = min(last, parse_id(lowest))
        floors[name] = last
    return floors


async def floor(
    redis: aioredis.Redis, stream: str, groups: Iterable[str] | None = None
) -> StreamId | None:
    """The lowest floor of the (given) groups; None when none of them exists."""
    floors = await group_floors(redis, stream, groups)
    return min(floors.values()) if floors else None


async def trim(redis: aioredis.Redis, stream: str, retention_s: float) -> int:
    """Drop entries older than `retention_s`, but none that some group has not acknowledged.
    Returns how many entries went."""
    cutoff: StreamId = (int((time.time() - retention_s) * 1000), 0)
    lowest = await floor(redis, stream)
    if lowest is not None:
        cutoff = min(cutoff, lowest)
    if cutoff <= (0, 1):
        return 0
    # Exact MINID: entries below the cutoff go, the cutoff entry itself stays.
    removed: int = await redis.xtrim(stream, minid=format_id(cutoff), approximate=False)
    return removed


class StreamTrimmer:
    """Trims the given streams every `interval_s` (any node may; trimming twice is harmless)."""

    def __init__(
        self,
        redis: aioredis.Redis,
        streams: tuple[str, ...],
        retention_s: float,
        interval_s: float,
        on_trim: Callable[[str, int], None],
        more: Callable[[], Awaitable[list[str]]] | None = None,
    ) -> None:
        self._redis = redis
        self.streams = streams
        self._more = more  # streams found at each pass (cluster mode: the sales' outboxes)
        self._retention = retention_s
        self._interval = interval_s
        self._on_trim = on_trim

    async def trim_once(self) -> int:
        total = 0
        more = await self._more() if self._more is not None else []
        for stream in (*self.streams, *more):
            removed = await trim(self._redis, stream, self._retention)
            if removed:
                self._on_trim(stream, removed)
            total += removed
        return total

    async def run(self) -> None:
        while True:
            try:
                await self.trim_once()
            except STORE_ERRORS as exc:
                log.warning("trim failed, retrying next interval: %s", exc)
            honour_cancel()
            await asyncio.sleep(self._interval)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
