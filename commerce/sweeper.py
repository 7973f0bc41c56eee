"""Expire holds over each sale's sorted set. Every node may sweep: the settle script pops a due
hold atomically, so each expiry happens (and is announced) exactly once. A due hold whose
`purchase.reserved` the order system's consumer group has not yet acknowledged is extended
instead (up to `LIVE_COMMERCE_HOLD_MAX_EXTENSION_S`): see `commerce/retention.py`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from commerce import keys, retention
from commerce.sales import Sales, Swept
from core.store import honour_cancel

log = logging.getLogger(__name__)

OnSwept = Callable[[str, Swept], Awaitable[None]]
MAX_ROUNDS = 50  # batches per sale per pass; the rest waits for the next pass


class Sweeper:
    def __init__(
        self,
        redis: aioredis.Redis,
        sales: Sales,
        on_swept: OnSwept,
        interval_s: float,
        batch: int,
        *,
        stream: str = "",
        delivery_groups: tuple[str, ...] = (),
    ) -> None:
        self._redis = redis
        self._stream = stream
        self._groups = delivery_groups
        self._sales = sales
        self._on_swept = on_swept
        self._interval = interval_s
        self._batch = batch
        self.passes = 0
        self.passed = asyncio.Condition()

    async def sweep_once(self) -> int:
        """One pass over every sale that may hold something; returns how many holds expired."""
        await self.refresh_floor()
        expired = 0
        for raw in await self._redis.smembers(keys.ACTIVE_SALES):
            sale_id = raw.decode()
            for _ in range(MAX_ROUNDS):
                swept = await self._sales.sweep(sale_id)
                expired += len(swept.expired)
                if swept.expired or swept.announce or swept.retire or swept.extended:
                    await self._on_swept(sale_id, swept)
                if len(swept.expired) + swept.extended < self._batch:
                    break
        async with self.passed:
            self.passes += 1
            self.passed.notify_all()
        return expired

    async def refresh_floor(self) -> None:
        """Read how far the delivering groups have acknowledged (before holds are judged)."""
        if not self._stream or not self._groups:
            return
        lowest = await retention.floor(self._redis, self._stream, self._groups)
        self._sales.delivery_floor = retention.format_id(lowest) if lowest else ""

    async def wait_passes(self, count: int) -> None:
        """Wait until `count` more passes completed (for tests and orderly shutdown)."""
        async with self.passed:
            target = self.passes + count
            await self.passed.wait_for(lambda: self.passes >= target)

    async def run(self) -> None:
        while True:
            try:
                await self.sweep_once()
            except (RedisError, OSError) as exc:
                log.warning("sweep failed, retrying next interval: %s", exc)
            honour_cancel()
            await asyncio.sleep(self._interval)
