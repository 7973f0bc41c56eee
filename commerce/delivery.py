"""Reading the purchase stream with a consumer group: at least once, stale pending entries of a
crashed consumer re-claimed with XAUTOCLAIM. Handlers must be idempotent (dedupe by event id)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from core.store import STORE_ERRORS, honour_cancel

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PurchaseEvent:
    entry_id: str
    type: str
    data: dict[str, Any]

    @property
    def event_id(self) -> str:
        return str(self.data.get("event_id") or self.entry_id)

    @classmethod
    def from_entry(cls, entry_id: bytes | str, fields: dict[bytes, bytes]) -> PurchaseEvent:
        eid = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
        try:
            data = json.loads(fields.get(b"data", b"{}"))
        except ValueError:
            data = {}
        kind = fields.get(b"type", b"").decode(errors="replace")
        return cls(eid, kind, data if isinstance(data, dict) else {})


# True: done (acknowledge). False or an exception: leave pending, to be retried or re-claimed.
EventHandler = Callable[[PurchaseEvent], Awaitable[bool]]


class StreamConsumer:
    def __init__(
        self,
        redis: aioredis.Redis,
        stream: str,
        group: str,
        consumer: str,
        handler: EventHandler,
        *,
        batch: int = 100,
        block_ms: int = 1000,
        claim_idle_ms: int = 30_000,
        concurrency: int = 16,
    ) -> None:
        self._redis = redis
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self._handler = handler
        self._batch = batch
        self._block_ms = block_ms
        self._claim_idle_ms = claim_idle_ms
        self._limit = asyncio.Semaphore(concurrency)
        self._claim_from = "0-0"
        self._group_ready = False

    async def ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            await self._redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    async def poll(self, block_ms: int | None = None) -> int:
        """Re-claim one page of stale pending entries, else read new ones; handle them; ack the
        handled. Returns how many entries were acknowledged."""
        await self.ensure_group()
        claimed = await self._redis.xautoclaim(
            self.stream, self.group, self.consumer, self._claim_idle_ms,
            start_id=self._claim_from, count=self._batch,
        )  # fmt: skip
        self._claim_from = _s(claimed[0])
        entries: list[tuple[bytes, dict[bytes, bytes]]] = [e for e in claimed[1] if e[1]]
        if not entries:
            read = await self._redis.xreadgroup(
                self.group, self.consumer, {self.stream: ">"}, count=self._batch,
                block=self._block_ms if block_ms is None else block_ms or None,
            )  # fmt: skip
            for _stream, items in read or ():
                entries.extend(e for e in items if e[1])
        if not entries:
            return 0
        results = await asyncio.gather(*(self._handle(entry) for entry in entries))
        done = [entry[0] for entry, ok in zip(entries, results, strict=True) if ok]
        if done:
            await self._redis.xack(self.stream, self.group, *done)
        return len(done)

    async def _handle(self, entry: tuple[bytes, dict[bytes, bytes]]) -> bool:
        event = PurchaseEvent.from_entry(*entry)
        async with self._limit:
            try:
                return await self._handler(event)
            except Exception:
                log.warning("handler failed on %s; left pending", event.event_id, exc_info=True)
                return False

    async def run(self) -> None:
        """Poll until cancelled; a store outage only pauses it."""
        while True:
            try:
                await self.poll()
            except STORE_ERRORS as exc:
                log.warning("stream %s: %s; retrying", self.stream, exc)
                self._group_ready = False
                await asyncio.sleep(1.0)
            honour_cancel()


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
