"""Rooms: one live stream each; their record lives in Redis so every node sees it."""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import asdict, dataclass
from typing import Any

import redis.asyncio as aioredis

from core.auth import Claims, user_seller
from core.store import room_key

ROOM_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
ROOMS_INDEX = "live:rooms"
# The live flag, and a new show when it turns on (one step: two nodes cannot both start one).
SET_LIVE = """
local was = redis.call('HGET', KEYS[1], 'live')
redis.call('HSET', KEYS[1], 'live', ARGV[1])
if ARGV[1] == '1' and was ~= '1' then
  local t = redis.call('TIME')
  redis.call('HSET', KEYS[1], 'show', tostring(tonumber(t[1]) * 1000 + math.floor(t[2] / 1000)))
end
return 0
"""


@dataclass(frozen=True, slots=True)
class Room:
    room_id: str
    title: str
    owner: str
    created_at: float
    live: bool
    # The seller the room sells for (its creator's `Claims.seller`): only that seller's hosts and
    # products may be pinned or sold in it.
    seller: str = ""
    # The current (or last) show: when the room last went live (epoch ms, as text); "" before
    # its first. Per-show figures (the gift leaderboard) are keyed by it.
    show: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def staffed_by(self, claims: Claims) -> bool:
        """Whether the caller's seller may act here: a host, or any token naming a shop, acts
        only in its own seller's rooms (its `rooms` grant notwithstanding)."""
        return (claims.role != "host" and claims.shop is None) or claims.seller == self.seller


class RoomExists(Exception):
    pass


class RoomStore:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def create(
        self, *, title: str, owner: str, room_id: str | None = None, seller: str | None = None
    ) -> Room:
        """Create a room owned by user `owner`, selling for `seller` (default: the owner's own)."""
        room_id = room_id or secrets.token_urlsafe(6).replace("_", "x").replace("-", "y")
        seller = seller or user_seller(owner)
        room = Room(
            room_id=room_id,
            title=title,
            owner=owner,
            created_at=time.time(),
            live=False,
            seller=seller,
        )
        key = room_key(room_id, "meta")
        mapping = {
            "title": title,
            "owner": owner,
            "seller": seller,
            "created_at": str(room.created_at),
            "live": "0",
        }
        # HSETNX decides the race between two creators of the same id. Its value is this call's
        # own claim: a cluster client retries a command whose answer it lost (a timeout, a
        # failover, a slot moving), and a first attempt that did land must not read as a rival.
        claim = secrets.token_hex(8)
        if (
            not await self._redis.hsetnx(key, "room_id", claim)
            and await self._redis.hget(key, "room_id") != claim.encode()
        ):
            raise RoomExists(room_id)
        await self._redis.hset(key, mapping=mapping)
        await self._redis.sadd(ROOMS_INDEX, room_id)
        return room

    async def get(self, room_id: str) -> Room | None:
        if not ROOM_ID.match(room_id):
            return None
        raw = await self._redis.hgetall(room_key(room_id, "meta"))
        if not raw or b"title" not in raw:
            return None
        owner = raw.get(b"owner", b"").decode()
        seller = raw.get(b"seller")
        return Room(
            room_id=room_id,
            title=raw[b"title"].decode(),
            owner=owner,
            created_at=float(raw.get(b"created_at", b"0")),
            live=raw.get(b"live") == b"1",
            # A room made before sellers were recorded sells for its owner, as a shopless host.
            seller=seller.decode() if seller else user_seller(owner),
            show=raw.get(b"show", b"").decode(),
        )

    async def exists(self, room_id: str) -> bool:
        return bool(ROOM_ID.match(room_id)) and bool(
            await self._redis.hexists(room_key(room_id, "meta"), "title")
        )

    async def set_live(self, room_id: str, live: bool) -> None:
        """Set the live flag; going live starts a new show (`show`: the store's time, ms)."""
        await self._redis.eval(SET_LIVE, 1, room_key(room_id, "meta"), "1" if live else "0")
