"""The gift catalogue (a default set, replaceable per seller) and the room's gift events: bursts
combined into combos at a bounded rate per room, and the leaderboard at most once a second."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from commerce import keys
from commerce.announcer import RoomNotices
from commerce.errors import CommerceError
from commerce.schemas import GiftSpec
from core.events import RoomBroadcast
from core.store import honour_cancel

log = logging.getLogger(__name__)

# id, name, price in credits, tier (1 light, 2 medium, 3 full width), animation
DEFAULT_GIFTS: tuple[dict[str, Any], ...] = tuple(
    {"gift_id": g, "name": n, "price": p, "tier": t, "animation": a}
    for g, n, p, t, a in (
        ("rose", "Rose", 1, 1, "float"),
        ("heart", "Heart", 3, 1, "float"),
        ("star", "Star", 10, 1, "sparkle"),
        ("crown", "Crown", 50, 2, "burst"),
        ("rocket", "Rocket", 200, 3, "rocket"),
        ("castle", "Castle", 1000, 3, "castle"),
    )
)
COMBO_GAP_S = 3.0  # a sender's same gift within this continues the combo
LEADERBOARD_SIZE = 10
LEADERBOARD_INTERVAL_S = 1.0


class GiftCatalogue:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def of(self, seller: str | None) -> list[dict[str, Any]]:
        """The seller's gifts, else the default set."""
        if seller:
            raw = await self._redis.get(keys.gift_catalogue(seller))
            if raw:
                gifts: list[dict[str, Any]] = json.loads(raw)
                return gifts
        return [dict(g) for g in DEFAULT_GIFTS]

    async def replace(self, seller: str, gifts: list[GiftSpec]) -> list[dict[str, Any]]:
        ids = [g.gift_id for g in gifts]
        if len(set(ids)) != len(ids):
            raise CommerceError("invalid_request", "gift ids must be unique")
        specs = [g.model_dump() for g in gifts]
        await self._redis.set(keys.gift_catalogue(seller), json.dumps(specs))
        return specs

    async def find(self, seller: str | None, gift_id: str) -> dict[str, Any]:
        for gift in await self.of(seller):
            if gift["gift_id"] == gift_id:
                return gift
        raise CommerceError("unknown_gift", f"no gift {gift_id!r} in this room's catalogue")


@dataclass(slots=True)
class _Combo:
    sender: dict[str, str]
    gift: dict[str, Any]
    count: int  # not yet announced
    total: int  # in this combo, announced or not
    last: float
    message: dict[str, str] | None = None  # the newest message not yet announced: {id, text}


def _value(combo: _Combo) -> int:
    return int(combo.gift["price"]) * combo.count


Leaders = Callable[[str, str], Awaitable[dict[str, Any]]]


class GiftAnnouncer(RoomNotices):
    """One per node. Each room gets at most `events_per_s` `gift` events a second from this node
    (one per tick; combos waiting meanwhile grow; the highest tier and value first; one waiting
    longer than the combo gap is dropped) and at most one `leaderboard` a second."""

    def __init__(
        self,
        broadcast: RoomBroadcast,
        leaders: Leaders,
        events_per_s: int,
        on_drop: Callable[[], None] = lambda: None,
    ) -> None:
        super().__init__(broadcast)
        self._on_drop = on_drop
        self._leaders = leaders
        self._tick = 1.0 / events_per_s
        self._combos: dict[str, dict[tuple[str, str], _Combo]] = {}
        self._streaks: dict[tuple[str, str, str], tuple[int, float]] = {}
        self._flushing: set[str] = set()
        self._board_due: set[str] = set()
        self._shows: dict[str, str] = {}  # room -> its show at its last gift here

    def gift(
        self, room: str, sender: dict[str, str], gift: dict[str, Any], count: int, show: str = "",
        message: dict[str, str] | None = None,
    ) -> None:  # fmt: skip
        """Announce `count` gifts (with the gift's `message` {id, text}, if any, shown)."""
        now = time.monotonic()
        self._shows[room] = show
        streak_key = (room, sender["id"], gift["gift_id"])
        total, last = self._streaks.get(streak_key, (0, 0.0))
        total = count + (total if now - last <= COMBO_GAP_S else 0)
        self._streaks[streak_key] = (total, now)
        if len(self._streaks) > 10_000:  # forget stale streaks
            self._streaks = {k: v for k, v in self._streaks.items() if now - v[1] <= COMBO_GAP_S}
        room_combos = self._combos.setdefault(room, {})
        combo = room_combos.get((sender["id"], gift["gift_id"]))
        if combo is None:
            room_combos[(sender["id"], gift["gift_id"])] = _Combo(
                sender, gift, count, total, now, message
            )
        else:
            combo.count += count
            combo.total = total
            combo.last = now
            combo.message = message or combo.message
        if room not in self._flushing:
            self._flushing.add(room)
            self._spawn(self._flush(room))
        if room not in self._board_due:
            self._board_due.add(room)
            self._spawn(self._board(room))

    async def _flush(self, room: str) -> None:
        """One `gift` a tick, the oldest combo first, until the room has none waiting."""
        try:
            while self._combos.get(room):
                combos = self._combos[room]
                # A crowd of senders outruns the room's event rate: the most valuable combo
                # goes first, and one that waited past the combo gap unannounced is dropped
                # (the ledger, the leaderboard and the sender's ack still have it).
                now = time.monotonic()
                for stale in [k for k, c in combos.items() if now - c.last > COMBO_GAP_S]:
                    del combos[stale]
                    self._on_drop()
                if not combos:
                    break
                key = max(combos, key=lambda k: (combos[k].gift["tier"], _value(combos[k])))
                c = combos.pop(key)
                await self._emit(room, "gift", {
                    "room": room, "sender": c.sender, "gift_id": c.gift["gift_id"],
                    "name": c.gift["name"], "tier": c.gift["tier"],
                    "animation": c.gift["animation"], "count": c.count, "combo": c.total,
                    "message": c.message,
                })  # fmt: skip
                honour_cancel()  # a redis-py command may have swallowed the cancellation
                await asyncio.sleep(self._tick)
        finally:
            self._flushing.discard(room)
            if not self._combos.get(room):
                self._combos.pop(room, None)

    async def _board(self, room: str) -> None:
        try:
            await asyncio.sleep(LEADERBOARD_INTERVAL_S)
        finally:
            self._board_due.discard(room)
        board = await self._leaders(room, self._shows.pop(room, ""))
        await self._emit(room, "leaderboard", board)
