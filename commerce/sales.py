"""Flash sales: creation, snapshots, and the calls into the reservation and settlement scripts."""

from __future__ import annotations

import json
import math
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from commerce import keys
from commerce.batching import EvalshaTemplate, ScriptBatcher
from commerce.catalogue import Product
from commerce.config import CommerceSettings
from commerce.errors import CommerceError
from commerce.schemas import SaleIn
from commerce.scripts import Scripts

# Sales (with their room) whose reservation call is kept packed (see `EvalshaTemplate`).
TEMPLATES = 256
_META_FIELDS = (
    "sale_id", "room_id", "product_id", "status", "quantity", "stock", "reserved", "sold",
    "price_minor", "currency", "per_user_limit", "hold_ms", "starts_at", "ends_at", "created_at",
)  # fmt: skip


def now_ms() -> int:
    return int(time.time() * 1000)


def effective_status(stored: str, stock: int, starts_at: int, ends_at: int, now: int) -> str:
    """`scheduled`, `active`, `sold_out` or `ended`, the way the reservation script decides."""
    if stored != "active" or now >= ends_at:
        return "ended"
    if now < starts_at:
        return "scheduled"
    return "sold_out" if stock <= 0 else "active"


@dataclass(frozen=True, slots=True)
class Reserved:
    reservation: dict[str, Any]
    stock_left: int
    replayed: bool
    raw: bytes = b""  # the reservation's JSON as the store holds it (`reservation`, encoded)

    def body(self) -> bytes:
        """The 201 answer: the reservation with `stock_left` and `replayed`, as JSON."""
        raw = self.raw.rstrip()
        if not raw.endswith(b"}") or raw == b"{}":
            return json.dumps(
                {**self.reservation, "stock_left": self.stock_left, "replayed": self.replayed}
            ).encode()
        flag = b"true" if self.replayed else b"false"
        return b'%b,"stock_left":%d,"replayed":%b}' % (raw[:-1], self.stock_left, flag)


@dataclass(frozen=True, slots=True)
class Settled:
    outcome: str  # ok, same, expired, conflict
    reservation: dict[str, Any]
    stock_left: int


@dataclass(slots=True)
class Swept:
    expired: list[dict[str, Any]] = field(default_factory=list)
    announce: str = ""  # "", "started" or "ended"
    retire: bool = False
    extended: int = 0  # due holds kept because their event is not yet delivered


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Sales:
    def __init__(self, redis: aioredis.Redis, config: CommerceSettings) -> None:
        self._redis = redis
        self._config = config
        self._scripts = Scripts(redis)
        # The store's deadline applies per batch (see `batching.py`): TimeoutError past it.
        self._batch = ScriptBatcher(redis, timeout_s=config.redis_timeout_s)
        self._templates: dict[tuple[str, str], EvalshaTemplate] = {}
        # The delivering groups' floor on the purchase stream (`commerce/retention.py`), kept
        # current by the sweeper; '' while there is no group to wait for.
        self.delivery_floor = ""

    def events_key(self, sale_id: str) -> str:
        """Where the scripts append purchase events (see `commerce/outbox.py` for cluster mode)."""
        return keys.sale(sale_id, "outbox") if self._config.outbox else self._config.purchase_stream

    async def create(self, room: str, spec: SaleIn, product: Product) -> dict[str, Any]:
        sale_id = secrets.token_hex(6)
        seconds, micros = await self._redis.time()
        now = int(seconds) * 1000 + int(micros) // 1000
        starts_at = now + round(spec.starts_in_s * 1000)
        meta = {
            "sale_id": sale_id,
            "room_id": room,
            "product_id": product.product_id,
            "status": "active",
            "quantity": spec.quantity,
            "stock": spec.quantity,
            "reserved": 0,
            "sold": 0,
            "price_minor": spec.price_minor,
            "currency": product.currency,
            "per_user_limit": spec.per_user_limit,
            "hold_ms": round(spec.hold_s * 1000),
            "starts_at": starts_at,
            "ends_at": starts_at + round(spec.duration_s * 1000),
            "created_at": now,
            "title": product.title,
        }
        if spec.starts_in_s == 0:
            meta["ann_active"] = 1  # announced by the creator, not the sweeper
        await self._redis.hset(keys.sale(sale_id, "meta"), mapping=meta)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zadd(keys.room_sales(room), {sale_id: now})
            pipe.sadd(keys.ACTIVE_SALES, sale_id)
            if self._config.outbox:
                pipe.sadd(keys.OUTBOXES, sale_id)
            await pipe.execute()
        snapshot = await self.snapshot(sale_id)
        assert snapshot is not None
        return snapshot

    async def snapshot(self, sale_id: str) -> dict[str, Any] | None:
        return (await self.snapshots([sale_id]))[0]

    async def snapshots(self, sale_ids: list[str]) -> list[dict[str, Any] | None]:
        if not sale_ids:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for sale_id in sale_ids:
                pipe.hmget(keys.sale(sale_id, "meta"), [*_META_FIELDS, "title"])
            rows = await pipe.execute()
        now = now_ms()
        return [self._snapshot(row, now) if row[0] else None for row in rows]

    @staticmethod
    def _snapshot(row: list[bytes | None], now: int) -> dict[str, Any]:
        values = (_s(x) if x is not None else "" for x in row)
        v = dict(zip((*_META_FIELDS, "title"), values, strict=True))
        stock, starts_at, ends_at = int(v["stock"]), int(v["starts_at"]), int(v["ends_at"])
        return {
            "sale_id": v["sale_id"],
            "room_id": v["room_id"],
            "product_id": v["product_id"],
            "title": v["title"],
            "status": effective_status(v["status"], stock, starts_at, ends_at, now),
            "quantity": int(v["quantity"]),
            "stock_left": stock,
            "reserved": int(v["reserved"]),
            "sold": int(v["sold"]),
            "price_minor": int(v["price_minor"]),
            "currency": v["currency"],
            "per_user_limit": int(v["per_user_limit"]),
            "hold_s": int(v["hold_ms"]) / 1000,
            "starts_at": starts_at,
            "ends_at": ends_at,
            "server_time": now,
        }

    async def get(self, room: str, sale_id: str) -> dict[str, Any]:
        snap = await self.snapshot(sale_id) if keys.SALE_ID.match(sale_id) else None
        if snap is None or snap["room_id"] != room:
            raise CommerceError("unknown_sale", f"room {room!r} has no sale {sale_id!r}")
        return snap

    async def of_room(self, room: str, limit: int = 5) -> list[dict[str, Any]]:
        """The room's latest sales, newest first."""
        ids = [_s(x) for x in await self._redis.zrevrange(keys.room_sales(room), 0, limit - 1)]
        return [s for s in await self.snapshots(ids) if s is not None]

    async def end(self, room: str, sale_id: str) -> tuple[dict[str, Any], bool]:
        """End a sale now; the flag says whether this call ended it (and so announces it)."""
        await self.get(room, sale_id)
        meta = keys.sale(sale_id, "meta")
        await self._redis.hset(meta, "status", "ended")
        first = bool(await self._redis.hsetnx(meta, "ann_ended", 1))
        return await self.get(room, sale_id), first

    @staticmethod
    def new_reservation_id(sale_id: str) -> str:
        return f"{sale_id}-{secrets.token_hex(8)}"

    async def reserve(
        self, room: str, sale_id: str, *, user: str, idempotency_key: str, quantity: int, ip: str,
        reservation_id: str | None = None, coupon: list[str] | None = None,
    ) -> Reserved:  # fmt: skip
        """`coupon`: ARGV 9-14 of `reserve.lua` (`CouponUse.args`), with the reservation id
        its claim was set aside for."""
        if not keys.SALE_ID.match(sale_id):
            raise CommerceError("unknown_sale", f"room {room!r} has no sale {sale_id!r}")
        user_key, ip_key = keys.sale(sale_id, "rl:u:" + user), keys.sale(sale_id, "rl:ip:" + ip)
        rid = reservation_id or self.new_reservation_id(sale_id)
        script = self._scripts.reserve
        if self._batch.direct or coupon:
            keys_, args = self._reserve_call(room, sale_id, user_key, ip_key, user,
                                             idempotency_key, quantity, rid)  # fmt: skip
            result = await self._batch(script, keys_, [*args, *(coupon or ())])
        else:
            template = self._templates.get((sale_id, room))
            if template is None:
                template = self._reserve_template(script.sha, room, sale_id)
            command = template.pack(user_key, ip_key, user, idempotency_key, quantity, rid)
            result = await self._batch.call_packed(script, command)
        outcome = _s(result[0])
        if outcome in ("ok", "replay"):
            raw = result[1] if isinstance(result[1], bytes) else str(result[1]).encode()
            return Reserved(json.loads(raw), int(result[2]), outcome == "replay", raw)
        raise _reserve_refusal(outcome, [_s(x) for x in result[1:]], room, sale_id)

    async def replay(self, sale_id: str, user: str, idempotency_key: str) -> Reserved | None:
        """The reservation `user` made with `idempotency_key`, if any (as `reserve.lua` would
        answer a replay)."""
        rid = await self._redis.hget(keys.sale(sale_id, "idem"), f"{user}\n{idempotency_key}")
        if rid is None:
            return None
        raw = await self._redis.hget(keys.sale(sale_id, "res"), rid)
        if raw is None:
            return None
        stock = await self._redis.hget(keys.sale(sale_id, "meta"), "stock")
        return Reserved(json.loads(raw), int(stock or 0), True, raw)

    def _reserve_call(
        self,
        room: str,
        sale_id: str,
        user_key: str | None,
        ip_key: str | None,
        user: str | None,
        idempotency_key: str | None,
        quantity: int | None,
        rid: str | None,
    ) -> tuple[list[Any], list[Any]]:
        """KEYS and ARGV of `reserve.lua` (`None` leaves a slot for `EvalshaTemplate`)."""
        cfg = self._config
        k = keys.sale
        return (
            [
                k(sale_id, "meta"), k(sale_id, "users"), k(sale_id, "idem"), k(sale_id, "holds"),
                k(sale_id, "res"), self.events_key(sale_id), user_key, ip_key,
            ],
            [
                room, user, idempotency_key, quantity, rid,
                cfg.user_rate, cfg.ip_rate, round(cfg.rate_window_s * 1000),
            ],
        )  # fmt: skip

    def _reserve_template(self, sha: str, room: str, sale_id: str) -> EvalshaTemplate:
        template = EvalshaTemplate(sha, *self._reserve_call(room, sale_id, *[None] * 6))
        if len(self._templates) >= TEMPLATES:
            del self._templates[next(iter(self._templates))]  # the oldest
        self._templates[(sale_id, room)] = template
        return template

    async def settle(self, reservation_id: str, mode: str) -> Settled:
        sale_id = keys.sale_of(reservation_id)
        if sale_id is None:
            raise CommerceError("unknown_reservation", f"no reservation {reservation_id!r}")
        args = [mode, reservation_id, self.delivery_floor, self._max_extension_ms]
        result = await self._batch(self._scripts.settle, self._settle_keys(sale_id), args)
        outcome = _s(result[0])
        if outcome == "unknown_reservation":
            raise CommerceError("unknown_reservation", f"no reservation {reservation_id!r}")
        return Settled(outcome, json.loads(result[1]), int(result[2]))

    async def sweep(self, sale_id: str) -> Swept:
        cfg = self._config
        args = [
            "sweep", cfg.sweep_batch, self.delivery_floor, self._max_extension_ms,
            round(cfg.hold_extension_step_s * 1000),
        ]  # fmt: skip
        result = await self._scripts.settle(keys=self._settle_keys(sale_id), args=args)
        return Swept(
            expired=[json.loads(x) for x in result[4:]],
            announce=_s(result[1]),
            retire=_s(result[2]) == "retire",
            extended=int(result[3]),
        )

    @property
    def _max_extension_ms(self) -> int:
        # In outbox mode the recorded stream id is the sale's outbox's, not the purchase
        # stream's: holds are not extended there (see docs/architecture.md).
        return 0 if self._config.outbox else round(self._config.hold_max_extension_s * 1000)

    async def retire(self, sale_id: str) -> None:
        """The sale is over and holds none: stop sweeping it, let its keys expire later."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.srem(keys.ACTIVE_SALES, sale_id)
            for part in keys.SALE_PARTS:
                pipe.expire(keys.sale(sale_id, part), self._config.retention_s)
            await pipe.execute()

    async def reservation(self, reservation_id: str) -> dict[str, Any]:
        sale_id = keys.sale_of(reservation_id)
        raw = await self._redis.hget(keys.sale(sale_id, "res"), reservation_id) if sale_id else None
        if raw is None:
            raise CommerceError("unknown_reservation", f"no reservation {reservation_id!r}")
        data: dict[str, Any] = json.loads(raw)
        return data

    def _settle_keys(self, sale_id: str) -> list[str]:
        k = keys.sale
        return [
            k(sale_id, "meta"), k(sale_id, "users"), k(sale_id, "holds"), k(sale_id, "res"),
            self.events_key(sale_id), k(sale_id, "undelivered"),
        ]  # fmt: skip


def _reserve_refusal(outcome: str, info: list[str], room: str, sale_id: str) -> CommerceError:
    if outcome == "rate_limited":
        retry_after = max(1, math.ceil(int(info[0]) / 1000))
        # The wait also goes in the body, for clients that cannot read headers.
        return CommerceError(
            "rate_limited", "too many reservation attempts; retry later",
            retry_after=retry_after, retry_after_s=retry_after,
        )  # fmt: skip
    if outcome == "unknown_sale":
        return CommerceError("unknown_sale", f"room {room!r} has no sale {sale_id!r}")
    if outcome == "sale_not_active":
        return CommerceError("sale_not_active", "the sale has not started or has ended")
    if outcome == "invalid_quantity":
        return CommerceError(
            "invalid_quantity", f"at most {info[0]} per buyer", per_user_limit=int(info[0])
        )
    if outcome == "sold_out":
        return CommerceError("sold_out", "the sale is sold out", stock_left=0)
    if outcome == "insufficient_stock":
        return CommerceError("insufficient_stock", f"only {info[0]} left", stock_left=int(info[0]))
    if outcome == "coupon_not_applicable":
        if info[1:] == ["subtotal"]:
            return CommerceError(
                "coupon_not_applicable", "a coupon applies to subtotals below 10^14 minor units"
            )
        return CommerceError(
            "coupon_not_applicable", f"the coupon does not apply to product {info[0]!r}"
        )
    if outcome == "coupon_min_spend":
        return CommerceError(
            "coupon_min_spend", f"the coupon needs a spend of at least {info[0]} (minor units)",
            min_spend_minor=int(info[0]),
        )  # fmt: skip
    if outcome == "limit_reached":
        return CommerceError(
            "limit_reached", "you reached the per-buyer limit of this sale",
            remaining=max(0, int(info[0])),
        )  # fmt: skip
    return CommerceError("internal", f"unexpected reservation outcome {outcome!r}")
