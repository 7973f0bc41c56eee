"""Room events of commerce: `sale` updates throttled per sale (sold out at once) and `purchase`
notices with masked buyer names, grouped when they come in bursts."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from core.events import RoomBroadcast

log = logging.getLogger(__name__)

Snapshot = Callable[[str], Awaitable[dict[str, Any] | None]]
NOTICE_NAMES = 3


def mask_name(name: str) -> str:
    """`Alice` -> `A***e`: enough for a crowd to feel the rush, not enough to identify anyone."""
    name = name.strip()
    if len(name) <= 1:
        return "*"
    if len(name) == 2:
        return name[0] + "*"
    return name[0] + "***" + name[-1]


@dataclass(slots=True)
class _Burst:
    names: list[str] = field(default_factory=list)
    buyers: int = 0
    quantity: int = 0


class RoomNotices:
    """Room events a node sends in the background. A lost one never fails what caused it (a
    purchase, a gift): the store holds the truth, and the room's state tells it again."""

    def __init__(self, broadcast: RoomBroadcast) -> None:
        self._broadcast = broadcast
        self._tasks: set[asyncio.Task[None]] = set()

    async def _emit(self, room: str, event: str, data: dict[str, Any]) -> None:
        try:
            await self._broadcast.emit(room, event, data)
        except Exception:
            log.warning("could not announce %s to room %s", event, room, exc_info=True)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)


class Announcer(RoomNotices):
    """One per node. Each node throttles what it caused; viewers merge `sale` events by sale id."""

    def __init__(
        self,
        broadcast: RoomBroadcast,
        snapshot: Snapshot,
        *,
        stock_interval_s: float,
        notice_interval_s: float,
    ) -> None:
        super().__init__(broadcast)
        self._snapshot = snapshot
        self._stock_interval = stock_interval_s
        self._notice_interval = notice_interval_s
        self._last_sale: dict[str, float] = {}
        self._pending_sale: set[str] = set()
        self._bursts: dict[tuple[str, str], _Burst] = {}
        # Coupons whose claimed count moved: (room, remaining) to send, once per interval.
        self._coupon_left: dict[str, tuple[str, int]] = {}

    async def sale(self, snapshot: dict[str, Any]) -> None:
        """A sale started, ended or sold out: everyone hears at once."""
        self._last_sale[snapshot["sale_id"]] = time.monotonic()
        await self._emit(snapshot["room_id"], "sale", {"room": snapshot["room_id"], **snapshot})

    def sold_out(self, room: str, sale_id: str) -> None:
        self._last_sale[sale_id] = time.monotonic()
        data = {"room": room, "sale_id": sale_id, "status": "sold_out", "stock_left": 0}
        self._spawn(self._emit(room, "sale", data))
        self.stock_changed(sale_id)  # the full snapshot follows, throttled

    def stock_changed(self, sale_id: str) -> None:
        """Stock moved: send a fresh snapshot at most once per interval (leading and trailing)."""
        if sale_id in self._pending_sale:
            return
        self._pending_sale.add(sale_id)
        wait = self._last_sale.get(sale_id, 0.0) + self._stock_interval - time.monotonic()
        self._spawn(self._flush_sale(sale_id, max(0.0, wait)))

    async def _flush_sale(self, sale_id: str, wait: float) -> None:
        try:
            if wait:
                await asyncio.sleep(wait)
        finally:
            self._pending_sale.discard(sale_id)
        self._last_sale[sale_id] = time.monotonic()
        snapshot = await self._snapshot(sale_id)
        if snapshot is not None:
            await self._emit(snapshot["room_id"], "sale", {"room": snapshot["room_id"], **snapshot})

    def purchase(self, room: str, product_id: str, user_name: str, quantity: int) -> None:
        """Queue a `purchase` notice; a burst within the interval becomes one grouped notice."""
        key = (room, product_id)
        burst = self._bursts.get(key)
        if burst is None:
            burst = self._bursts[key] = _Burst()
            self._spawn(self._flush_burst(key))
        if len(burst.names) < NOTICE_NAMES:
            burst.names.append(mask_name(user_name))
        burst.buyers += 1
        burst.quantity += quantity

    async def _flush_burst(self, key: tuple[str, str]) -> None:
        try:
            if self._notice_interval:
                await asyncio.sleep(self._notice_interval)
        finally:
            burst = self._bursts.pop(key)
        room, product_id = key
        data = {
            "room": room,
            "user_name": burst.names[0],
            "product_id": product_id,
            "quantity": burst.quantity,
            "buyers": burst.buyers,
            "names": burst.names,
            "others": burst.buyers - 1,
        }
        await self._emit(room, "purchase", data)

    def product(self, room: str, product: dict[str, Any] | None) -> None:
        self._spawn(self._emit(room, "product", {"room": room, "product": product}))

    async def coupon(self, room: str, coupon: dict[str, Any]) -> None:
        """A coupon was created: everyone hears at once (clients merge `coupon` by id)."""
        await self._emit(room, "coupon", {"room": room, **coupon})

    def coupon_claimed(self, room: str, coupon_id: str, remaining: int) -> None:
        """A claim took quota: `coupon {room, coupon_id, remaining}` at most once per interval
        per coupon (trailing: the lowest count this node saw)."""
        pending = self._coupon_left.get(coupon_id)
        if pending is not None:
            self._coupon_left[coupon_id] = (room, min(remaining, pending[1]))
        else:
            self._coupon_left[coupon_id] = (room, remaining)
            self._spawn(self._flush_coupon(coupon_id))

    async def _flush_coupon(self, coupon_id: str) -> None:
        try:
            if self._stock_interval:
                await asyncio.sleep(self._stock_interval)
        finally:
            room, remaining = self._coupon_left.pop(coupon_id)
        await self._emit(room, "coupon", {"room": room, "coupon_id": coupon_id,
                                          "remaining": remaining})  # fmt: skip

    def coupon_pin(self, room: str, coupon: dict[str, Any] | None) -> None:
        self._spawn(self._emit(room, "coupon_pin", {"room": room, "coupon": coupon}))
