"""Coupons: a host's discounts for a room, claimed by viewers and consumed by reservations.

Everything of one coupon lives in its room's slot `{room:ID}` (`live:{room:ID}:coupon:CID:*`), so
creating one against the room's count of coupons, and claiming one (replay, window, quota,
per-user limit, the claim and its `coupon.claimed` event), are each one Lua script there
(`lua/coupon_create.lua`, `lua/coupon_claim.lua`): never more claims than the quota, whatever
the number of nodes.

A sale's keys live in `{sale:ID}`, another slot (a flash sale's hot keys are its own, not its
room's chat admission's, and one coupon serves every sale of its room), so the use of a claim by
a reservation cannot be one script with the hold on a Redis Cluster. It is a two-step with a
record that survives a dead request:

1. `lua/coupon_use.lua` (coupon slot) sets one of the buyer's free claims aside for the new
   reservation id (`pending`) and watches it (`watch`, due after `LEASE_S`); it answers the
   coupon's terms. A retry with the same Idempotency-Key gets the same claim and reservation id.
2. `lua/reserve.lua` (sale slot) checks the terms against the sale (products, minimum spend),
   applies the discount to the hold, its answer and `purchase.reserved`, atomically with the
   hold; the hold names the claim.
3. The request settles the claim (`lua/coupon_settle.lua`, a compare-and-set on the reservation
   id): `used` while the hold is held (watched until its expiry), back to `claimed` when the
   reservation was refused; later `claimed` again when the hold is cancelled or lapses, and
   `redeemed` when it is confirmed. The coupon sweeper (every node) does the same for any watched
   claim that falls due: it reads the reservation and moves the claim to match it, so a request
   or a settlement that died half way is finished within a sweep interval or so.

So one claim backs at most one hold, and a hold that ends gives its claim back to its buyer
(usable again; the quota is not refunded: it counts claims, and the claim still exists).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

from commerce import keys
from commerce.config import CommerceSettings
from commerce.errors import CommerceError
from commerce.schemas import CouponIn
from commerce.scripts import LUA

LEASE_S = 10.0  # a claim set aside for a reservation is looked at by the sweeper after this
STEP_MS = 2000  # a used claim whose hold is still held is looked at again this much later
SWEEP_PAGE = 200  # due claims per coupon per pass, at most
_META = (
    "coupon_id", "room_id", "kind", "value", "quota", "claimed", "per_user_limit",
    "min_spend_minor", "product_ids", "starts_at", "ends_at", "created_at", "created_by",
)  # fmt: skip
# A claim's state moves with its reservation's (`None`: no such reservation).
_FOR_RESERVATION = {"held": "used", "confirmed": "redeemed"}

Lookup = Callable[[str], Awaitable[dict[str, Any] | None]]


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class Claimed:
    claim: dict[str, Any]
    remaining: int
    replayed: bool

    def body(self) -> dict[str, Any]:
        return {**self.claim, "remaining": self.remaining, "replayed": self.replayed}


@dataclass(frozen=True, slots=True)
class CouponUse:
    """A claim set aside for one reservation, with the coupon's terms for `reserve.lua`."""

    room: str
    coupon_id: str
    claim_id: str
    reservation_id: str
    terms: tuple[str, str, str, str]  # kind, value, min spend, product ids

    def args(self) -> list[str]:
        """ARGV 9-14 of `reserve.lua`."""
        return [self.coupon_id, self.claim_id, *self.terms]


class Coupons:
    def __init__(self, redis: aioredis.Redis, config: CommerceSettings) -> None:
        self._redis = redis
        self._config = config
        self._create: AsyncScript = self._script(redis, "coupon_create")
        self._claim: AsyncScript = self._script(redis, "coupon_claim")
        self._use: AsyncScript = self._script(redis, "coupon_use")
        self._settle: AsyncScript = self._script(redis, "coupon_settle")
        self.lease_s = LEASE_S  # not a setting (tests shorten it to see the sweeper finish)

    @staticmethod
    def _script(redis: aioredis.Redis, name: str) -> AsyncScript:
        return redis.register_script((LUA / f"{name}.lua").read_text())

    def events_key(self, room: str) -> str:
        """Where the scripts append coupon events: the purchase stream, or with an outbox (a
        Redis Cluster) the room's coupon outbox, relayed like a sale's (`commerce/outbox.py`)."""
        if self._config.outbox:
            return keys.outbox(keys.coupon_outbox_member(room))
        return self._config.purchase_stream

    def _keys(self, room: str, coupon_id: str, *parts: str) -> list[str]:
        return [keys.coupon(room, coupon_id, part) for part in parts]

    async def create(self, room: str, spec: CouponIn, by: str) -> dict[str, Any]:
        cfg = self._config
        if spec.quota > cfg.coupon_max_quota:
            raise CommerceError(
                "invalid_request",
                f"quota: at most {cfg.coupon_max_quota} (LIVE_COMMERCE_COUPON_MAX_QUOTA)",
            )
        coupon_id = secrets.token_hex(6)
        fields = {
            "room_id": room,
            "kind": "percent" if spec.percent_off is not None else "amount",
            "value": spec.percent_off if spec.percent_off is not None else spec.amount_off_minor,
            "quota": spec.quota,
            "per_user_limit": spec.per_user_limit,
            "min_spend_minor": spec.min_spend_minor,
            "product_ids": ",".join(spec.product_ids),
            "created_by": by,
        }
        # Indexed first: a coupon the sweeper does not know of could strand a claim.
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.sadd(keys.ACTIVE_COUPONS, f"{room} {coupon_id}")
            if cfg.outbox:
                pipe.sadd(keys.OUTBOXES, keys.coupon_outbox_member(room))
            await pipe.execute()
        result = await self._create(
            keys=[keys.room_coupons(room), keys.coupon(room, coupon_id, "meta"),
                  self.events_key(room)],
            args=[coupon_id, cfg.coupons_per_room, round(spec.starts_in_s * 1000),
                  round(spec.duration_s * 1000), json.dumps(fields), cfg.retention_s * 1000],
        )  # fmt: skip
        if _s(result[0]) == "too_many_coupons":
            await self._redis.srem(keys.ACTIVE_COUPONS, f"{room} {coupon_id}")
            raise CommerceError(
                "too_many_coupons",
                f"the room has {cfg.coupons_per_room} coupons running or scheduled "
                "(LIVE_COMMERCE_COUPONS_PER_ROOM)",
                limit=cfg.coupons_per_room,
            )
        return _public(json.loads(result[1]), now_ms())

    async def get(self, room: str, coupon_id: str) -> dict[str, Any]:
        meta = await self._meta(room, coupon_id)
        if meta is None:
            raise _unknown(room, coupon_id)
        return _public(meta, now_ms())

    async def pin(self, room: str, coupon_id: str) -> dict[str, Any]:
        """Pin a coupon not yet ended in the room (viewers see it with a Claim button)."""
        coupon = await self.get(room, coupon_id)
        if coupon["status"] == "ended":
            raise CommerceError("coupon_expired", "the coupon has ended", ends_at=coupon["ends_at"])
        await self._redis.set(keys.pinned_coupon(room), coupon_id)
        return coupon

    async def unpin(self, room: str) -> None:
        await self._redis.delete(keys.pinned_coupon(room))

    async def pinned(self, room: str) -> dict[str, Any] | None:
        """The room's pinned coupon, while it has not ended."""
        raw = await self._redis.get(keys.pinned_coupon(room))
        meta = await self._meta(room, _s(raw)) if raw is not None else None
        coupon = _public(meta, now_ms()) if meta is not None else None
        return coupon if coupon is not None and coupon["status"] != "ended" else None

    async def _meta(self, room: str, coupon_id: str) -> dict[str, Any] | None:
        if not keys.COUPON_ID.match(coupon_id):
            return None
        row = await self._redis.hmget(keys.coupon(room, coupon_id, "meta"), list(_META))
        if row[0] is None:
            return None
        return {k: _s(v) if v is not None else "" for k, v in zip(_META, row, strict=True)}

    async def active(self, room: str) -> list[dict[str, Any]]:
        """The room's coupons not yet ended (scheduled ones too), oldest first."""
        now = now_ms()
        ids = await self._redis.zrangebyscore(keys.room_coupons(room), f"({now}", "+inf")
        async with self._redis.pipeline(transaction=False) as pipe:
            for raw in ids:
                pipe.hmget(keys.coupon(room, _s(raw), "meta"), list(_META))
            rows = await pipe.execute()
        coupons = [
            {k: _s(v) if v is not None else "" for k, v in zip(_META, row, strict=True)}
            for row in rows
            if row[0] is not None
        ]
        return sorted((_public(c, now) for c in coupons), key=lambda c: c["created_at"])

    async def claim(self, room: str, coupon_id: str, *, user: str, key: str) -> Claimed:
        if not keys.COUPON_ID.match(coupon_id):
            raise _unknown(room, coupon_id)
        claim_id = f"{coupon_id}-{secrets.token_hex(8)}"
        result = await self._claim(
            keys=[*self._keys(room, coupon_id, "meta", "claims", "users", "idem"),
                  self.events_key(room)],
            args=[room, user, key, claim_id],
        )  # fmt: skip
        outcome = _s(result[0])
        if outcome in ("ok", "replay"):
            return Claimed(json.loads(result[1]), int(result[2]), outcome == "replay")
        raise _refusal(outcome, [_s(x) for x in result[1:]], room, coupon_id)

    async def take(
        self, room: str, coupon_id: str, *, user: str, key: str, reservation_id: str
    ) -> CouponUse:
        """Set one of `user`'s free claims aside for `reservation_id` (or, for a retried
        `key`, the claim and reservation id its first attempt set aside)."""
        if not keys.COUPON_ID.match(coupon_id):
            raise _unknown(room, coupon_id)
        result = await self._use(
            keys=self._keys(room, coupon_id, "meta", "claims", "users", "idem", "watch"),
            args=[room, user, key, reservation_id, round(self.lease_s * 1000)],
        )
        outcome = _s(result[0])
        if outcome not in ("ok", "replay"):
            raise _refusal(outcome, [_s(x) for x in result[1:]], room, coupon_id)
        claim = json.loads(result[1])
        kind, value, min_spend, products = (_s(x) for x in result[2:6])
        return CouponUse(room, coupon_id, claim["claim_id"], claim["reservation_id"],
                         (kind, value, min_spend, products))  # fmt: skip

    async def follow(
        self, room: str, coupon_id: str, claim_id: str, reservation_id: str,
        reservation: dict[str, Any] | None,
    ) -> str | None:  # fmt: skip
        """Move the claim to match its reservation (`None`: there is none): `used` while it is
        held, `redeemed` once confirmed, `claimed` (free again) otherwise. Returns the state
        it moved to, or None when it had already moved (another node, a later attempt)."""
        state = None
        if (
            reservation is not None
            and reservation.get("claim_id") == claim_id
            and reservation.get("reservation_id") == reservation_id
        ):
            state = _FOR_RESERVATION.get(str(reservation.get("state")))
        if state == "used":
            assert reservation is not None
            due = str(max(int(reservation["expires_at"]), now_ms() + STEP_MS))
            result = await self._settle(
                keys=self._keys(room, coupon_id, "claims", "watch"),
                args=[claim_id, reservation_id, "pending,used", "used", due],
            )
        else:
            result = await self._settle(
                keys=self._keys(room, coupon_id, "claims", "watch"),
                args=[claim_id, reservation_id, "pending,used", state or "claimed", ""],
            )
        return (state or "claimed") if _s(result[0]) == "ok" else None

    async def sweep_once(self, lookup: Lookup) -> dict[str, int]:
        """Settle every watched claim that fell due, on every coupon that may have one; retire
        coupons that ended and watch nothing. Returns the claims moved, by the state they
        moved to."""
        moved: dict[str, int] = {}
        now = now_ms()
        for raw in await self._redis.smembers(keys.ACTIVE_COUPONS):
            room, _, coupon_id = _s(raw).partition(" ")
            watch = keys.coupon(room, coupon_id, "watch")
            due = [_s(x) for x in await self._redis.zrangebyscore(
                watch, "-inf", now, start=0, num=SWEEP_PAGE)]  # fmt: skip
            if due:
                claims = await self._redis.hmget(keys.coupon(room, coupon_id, "claims"), due)
                for claim_id, raw_claim in zip(due, claims, strict=True):
                    claim = json.loads(raw_claim) if raw_claim else {}
                    rid = claim.get("reservation_id")
                    if not rid:  # settled meanwhile: stop watching it (unless taken again)
                        await self._settle(
                            keys=self._keys(room, coupon_id, "claims", "watch"),
                            args=[claim_id, "", "free", "", ""],
                        )
                        continue
                    state = await self.follow(room, coupon_id, claim_id, rid, await lookup(rid))
                    if state is not None and state != "used":
                        moved[state] = moved.get(state, 0) + 1
            elif await self._ended(room, coupon_id, now):
                await self._retire(room, coupon_id)
        return moved

    async def _ended(self, room: str, coupon_id: str, now: int) -> bool:
        ends_at = await self._redis.hget(keys.coupon(room, coupon_id, "meta"), "ends_at")
        return ends_at is None or int(ends_at) <= now

    async def _retire(self, room: str, coupon_id: str) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.srem(keys.ACTIVE_COUPONS, f"{room} {coupon_id}")
            for part in keys.COUPON_PARTS:
                pipe.expire(keys.coupon(room, coupon_id, part), self._config.retention_s)
            await pipe.execute()


def _public(c: dict[str, Any], now: int) -> dict[str, Any]:
    starts_at, ends_at = int(c["starts_at"]), int(c["ends_at"])
    quota, claimed = int(c["quota"]), int(c["claimed"])
    percent = c["kind"] == "percent"
    status = "ended" if now >= ends_at else "scheduled" if now < starts_at else "active"
    return {
        "coupon_id": c["coupon_id"],
        "room_id": c["room_id"],
        "percent_off": int(c["value"]) if percent else None,
        "amount_off_minor": None if percent else int(c["value"]),
        "quota": quota,
        "claimed": claimed,
        "remaining": max(0, quota - claimed),
        "per_user_limit": int(c["per_user_limit"]),
        "min_spend_minor": int(c["min_spend_minor"]),
        "product_ids": [p for p in str(c["product_ids"]).split(",") if p],
        "status": status,
        "starts_at": starts_at,
        "ends_at": ends_at,
        "created_at": int(c["created_at"]),
        "server_time": now,
    }


def _unknown(room: str, coupon_id: str) -> CommerceError:
    return CommerceError("unknown_coupon", f"room {room!r} has no coupon {coupon_id!r}")


def _refusal(outcome: str, info: list[str], room: str, coupon_id: str) -> CommerceError:
    if outcome == "unknown_coupon":
        return _unknown(room, coupon_id)
    if outcome == "coupon_not_started":
        return CommerceError("coupon_not_started", "the coupon has not started yet",
                             starts_at=int(info[0]))  # fmt: skip
    if outcome == "coupon_expired":
        return CommerceError("coupon_expired", "the coupon has ended", ends_at=int(info[0]))
    if outcome == "quota_exhausted":
        return CommerceError("quota_exhausted", "every claim of this coupon is taken",
                             remaining=0)  # fmt: skip
    if outcome == "claim_limit":
        return CommerceError(
            "claim_limit", f"you claimed this coupon {info[0]} times, the most allowed",
            per_user_limit=int(info[0]),
        )  # fmt: skip
    if outcome == "coupon_not_claimed":
        return CommerceError("coupon_not_claimed", "claim the coupon before using it")
    if outcome == "coupon_used":
        return CommerceError("coupon_used", "your claims of this coupon are all in use")
    return CommerceError("internal", f"unexpected coupon outcome {outcome!r}")
