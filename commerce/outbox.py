"""Cluster mode: the scripts may only touch keys of the sale's slot, so they append purchase
events to a per-sale outbox stream; this relay moves them to the purchase stream.

At least once: a relay that dies between XADD and XACK leaves the entry pending, another node
re-claims it and appends it again with the same event id (consumers dedupe by event id).
"""

from __future__ import annotations

import asyncio
import json
import logging

import redis.asyncio as aioredis

from commerce import keys
from commerce.delivery import PurchaseEvent, StreamConsumer
from core.store import STORE_ERRORS, honour_cancel

log = logging.getLogger(__name__)


class OutboxRelay:
    def __init__(
        self, redis: aioredis.Redis, purchase_stream: str, consumer: str, interval_s: float = 0.05
    ) -> None:
        self._redis = redis
        self._stream = purchase_stream
        self._consumer = consumer
        self._interval = interval_s
        self._readers: dict[str, StreamConsumer] = {}

    async def _forward(self, event: PurchaseEvent) -> bool:
        fields = {"type": event.type, "data": json.dumps(event.data, separators=(",", ":"))}
        await self._redis.xadd(self._stream, fields)
        return True

    async def relay_once(self) -> int:
        moved = 0
        for raw in await self._redis.smembers(keys.OUTBOXES):
            member = raw.decode()  # a sale id, or a room's coupon outbox
            reader = self._readers.get(member)
            if reader is None:
                reader = self._readers[member] = StreamConsumer(
                    self._redis, keys.outbox(member), "relay", self._consumer,
                    self._forward, batch=500, claim_idle_ms=10_000,
                )  # fmt: skip
            moved += await reader.poll(block_ms=0)
        return moved

    async def run(self) -> None:
        while True:
            try:
                if not await self.relay_once():
                    await asyncio.sleep(self._interval)
            except STORE_ERRORS as exc:
                log.warning("outbox relay: %s; retrying", exc)
                self._readers.clear()
                await asyncio.sleep(1.0)
            honour_cancel()  # a redis-py command may have swallowed the cancellation
