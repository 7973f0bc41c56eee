"""The host's shop desk: per-room sales figures, aggregated from the purchase stream.

Every node reads the purchase stream in the consumer group `desk` (each event reaches one
node) and applies each event to its room's figures with `desk_apply.lua`, once per reservation
state (an event relayed twice, or re-claimed after a crash, counts once). The node that applied
an event pushes the room's figures to its staff (`desk`, to the hosts and moderators joined)
at most once per `LIVE_COMMERCE_DESK_INTERVAL_S`; `GET /api/rooms/{room}/desk` reads them.
Keys, all in the room's slot: `desk` (hash of counters), `desk:products` (zset of units per
product), `desk:buyers` (set of users with a hold), `desk:res` (reservation id -> state).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry, Counter

from commerce.delivery import PurchaseEvent, StreamConsumer
from commerce.scripts import LUA
from core.events import RoomBroadcast
from core.store import STORE_ERRORS, room_key

log = logging.getLogger(__name__)
GROUP = "desk"
TOP_PRODUCTS = 5
_KINDS = {
    "purchase.reserved": "reserved",
    "purchase.confirmed": "confirmed",
    "purchase.cancelled": "cancelled",
    "purchase.expired": "expired",
    "coupon.claimed": "claimed",
}
# The room's viewers now (the composition root connects chat's count).
ViewerCount = Callable[[str], Awaitable[int]]


def desk_keys(room: str) -> list[str]:
    return [room_key(room, "desk"), room_key(room, "desk", "products"),
            room_key(room, "desk", "buyers"), room_key(room, "desk", "res")]  # fmt: skip


def _args(kind: str, d: dict[str, Any]) -> list[str | int]:
    """`desk_apply.lua`'s arguments (but the retention) for one event's data."""
    if kind == "claimed":
        return [kind, str(d["claim_id"]), str(d.get("user_id")), "", 0, "", 0,
                str(d.get("coupon_id") or "")]  # fmt: skip
    qty = int(d["quantity"])
    total = d.get("total_minor")
    amount = int(total) if total is not None else int(d["price_minor"]) * qty
    return [kind, str(d["reservation_id"]), str(d["user_id"]), str(d["product_id"]), qty,
            str(d["currency"]), amount, str(d.get("coupon_id") or "")]  # fmt: skip


class Desk:
    def __init__(
        self,
        redis: aioredis.Redis,
        broadcast: RoomBroadcast,
        *,
        stream: str,
        node_id: str,
        interval_s: float,
        retention_s: float,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self._redis = redis
        self._broadcast = broadcast
        self._interval = interval_s
        self._retention_ms = str(int(retention_s * 1000))
        self._apply = redis.register_script((LUA / "desk_apply.lua").read_text())
        self._peak = redis.register_script((LUA / "desk_peak.lua").read_text())
        self.consumer = StreamConsumer(redis, stream, GROUP, node_id, self.handle)
        self.viewers: ViewerCount | None = None
        self._dirty: set[str] = set()
        self.events = Counter(
            "live_commerce_desk_events_total",
            "Purchase-stream events applied to the rooms' shop-desk figures, by result "
            "(applied, duplicate, ignored: not a sale or coupon event)",
            ["result"], registry=registry,
        )  # fmt: skip

    async def handle(self, event: PurchaseEvent) -> bool:
        """Apply one event (idempotent); mark its room for the next push."""
        kind, d = _KINDS.get(event.type), event.data
        room = d.get("room_id")
        if kind is None or not isinstance(room, str):
            self.events.labels("ignored").inc()
            return True
        try:
            args = _args(kind, d)
        except (KeyError, TypeError, ValueError):
            # Not ours to repair (the scripts write these): acknowledged, never retried.
            log.warning("desk: malformed %s event %s", event.type, event.event_id)
            self.events.labels("ignored").inc()
            return True
        applied = await self._apply(keys=desk_keys(room), args=[*args, self._retention_ms])
        self.events.labels("applied" if applied else "duplicate").inc()
        if applied:
            self._dirty.add(room)
        return True

    async def figures(self, room: str) -> dict[str, Any]:
        """The room's desk: viewers, buyers and conversion, units, money per currency (minor
        units), coupons, top products."""
        desk, products, _buyers, _res = desk_keys(room)
        viewers = await self.viewers(room) if self.viewers is not None else 0
        peak = int(await self._peak(keys=[desk], args=[viewers, self._retention_ms]))
        raw = {k.decode(): int(v) for k, v in (await self._redis.hgetall(desk)).items()}
        top = await self._redis.zrevrangebyscore(
            products, "+inf", 1, start=0, num=TOP_PRODUCTS, withscores=True
        )
        buyers = raw.get("buyers", 0)
        coupons: dict[str, dict[str, int]] = {}
        money: dict[str, dict[str, int]] = {"revenue": {}, "held": {}}
        for field, value in raw.items():
            kind, _, name = field.partition(":")
            if kind in ("coupon_claims", "coupon_uses"):
                coupons.setdefault(name, {"claims": 0, "uses": 0})[kind[7:]] = value
            elif kind in money and name and value:
                money[kind][name] = value
        return {
            "room": room,
            "viewers": viewers,
            "peak_viewers": peak,
            "buyers": buyers,
            "conversion": round(buyers / peak, 4) if peak else None,
            "holds": raw.get("holds", 0),
            "units_held": raw.get("units_held", 0),
            "units_sold": raw.get("units_sold", 0),
            "revenue_minor": money["revenue"],
            "held_minor": money["held"],
            "coupons": [{"coupon_id": c, **v} for c, v in sorted(coupons.items())],
            "top_products": [{"product_id": p.decode(), "units": int(u)} for p, u in top],
            "ts": int(time.time() * 1000),
        }

    async def push_once(self) -> None:
        """Send `desk` to the staff of each room whose figures moved since the last push."""
        rooms, self._dirty = self._dirty, set()
        for room in rooms:
            try:
                await self._broadcast.emit(room, "desk", await self.figures(room), to="staff")
            except STORE_ERRORS as exc:
                log.warning("desk push to room %s: %s; next time", room, exc)
                self._dirty.add(room)

    async def run_pusher(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.push_once()
            except Exception:
                # A bug in one push must not stop the desk: logged, the next tick tries again.
                log.warning("desk push failed", exc_info=True)
