"""Expire holds over each sale's sorted set. Every node may sweep: the settle script pops a due
hold atomically, so each expiry happens (and is announced) exactly once. A due hold whose
`purchase.reserved` the order system's consumer group has not yet acknowledged is extended
instead (up to `LIVE_COMMERCE_HOLD_MAX_EXTENSION_S`): see `commerce/retention.py`."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis

from commerce import keys, retention
from commerce.sales import Sales, Swept
from core.store import STORE_ERRORS, honour_cancel

log = logging.getLogger(__name__)

OnSwept = Callable[[str, Swept], Awaitable[None]]
MAX_ROUNDS = 50  # batches per sale per pass; the rest waits for the next pass
DEAD_PAGE, DEAD_PAGES = 500, 10  # dead letters read per pass, at most


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
        dead_letter_stream: str = "",
    ) -> None:
        self._redis = redis
        self._stream = stream
        self._groups = delivery_groups
        self._dead = dead_letter_stream
        self._dead_from = "-"  # this node's cursor in the dead-letter stream
        self._sales = sales
        self._on_swept = on_swept
        self._interval = interval_s
        self._batch = batch
        self.passes = 0
        self.passed = asyncio.Condition()

    async def sweep_once(self) -> int:
        """One pass over every sale that may hold something; returns how many holds expired."""
        await self.refresh_floor()
        # After the floor: an event dead-lettered and then acknowledged is seen here.
        await self.refresh_dead_letters()
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

    async def refresh_dead_letters(self) -> None:
        """Mark holds whose `purchase.reserved` was dead-lettered: acknowledged, but it never
        reached the order system, so the hold waits (bounded) for a replay or the order system."""
        if not self._dead:
            return
        for _ in range(DEAD_PAGES):
            entries = await self._redis.xrange(self._dead, min=self._dead_from, count=DEAD_PAGE)
            if not entries:
                return
            async with self._redis.pipeline(transaction=False) as pipe:
                for entry_id, fields in entries:
                    rid = _reserved_id(fields)
                    sale_id = keys.sale_of(rid) if rid else None
                    if rid and sale_id:
                        pipe.hset(keys.sale(sale_id, "undelivered"), rid, entry_id)
                await pipe.execute()
            self._dead_from = "(" + entries[-1][0].decode()
            if len(entries) < DEAD_PAGE:
                return

    async def wait_passes(self, count: int) -> None:
        """Wait until `count` more passes completed (for tests and orderly shutdown)."""
        async with self.passed:
            target = self.passes + count
            await self.passed.wait_for(lambda: self.passes >= target)

    async def run(self) -> None:
        while True:
            try:
                await self.sweep_once()
            except STORE_ERRORS as exc:
                log.warning("sweep failed, retrying next interval: %s", exc)
            honour_cancel()
            await asyncio.sleep(self._interval)


def _reserved_id(fields: dict[bytes, bytes]) -> str:
    """The reservation id of a dead-lettered `purchase.reserved`, else ''."""
    if fields.get(b"type") != b"purchase.reserved":
        return ""
    try:
        data = json.loads(fields.get(b"data", b"{}"))
    except ValueError:
        return ""
    rid = data.get("reservation_id") if isinstance(data, dict) else None
    return rid if isinstance(rid, str) else ""
