"""`Commerce`: the commerce layer of one node, its operations and its background tasks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Coroutine, Iterator
from typing import Any, TypeVar

import aiohttp
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry, Counter, Histogram

from commerce import keys
from commerce.announcer import Announcer
from commerce.catalogue import Catalogue, Product
from commerce.config import CommerceSettings
from commerce.coupons import Claimed, Coupons
from commerce.delivery import StreamConsumer
from commerce.errors import CommerceError, unavailable
from commerce.gifts import LEADERBOARD_SIZE, GiftAnnouncer, GiftCatalogue
from commerce.images import check_image_url
from commerce.keys import OUTBOXES
from commerce.outbox import OutboxRelay
from commerce.retention import StreamTrimmer
from commerce.sales import Reserved, Sales, Swept
from commerce.schemas import CouponIn, ProductIn, SaleIn
from commerce.sweeper import Sweeper
from commerce.wallet import Applied, Wallets
from commerce.webhooks import WebhookSender
from core.events import RoomBroadcast
from core.store import STORE_ERRORS, honour_cancel

log = logging.getLogger(__name__)
T = TypeVar("T")
# What may stop a claim from following its reservation now: the coupon sweeper finishes it.
_FOLLOW_ERRORS: tuple[type[Exception], ...] = (CommerceError, *STORE_ERRORS)


class _Metrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.reservations = Counter(
            "live_commerce_reservations_total", "Reservation attempts by outcome", ["outcome"],
            registry=registry,
        )  # fmt: skip
        self.reserve_seconds = Histogram(
            "live_commerce_reserve_seconds", "Time of one reservation script call",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0),
            registry=registry,
        )  # fmt: skip
        self.settled = Counter(
            "live_commerce_settled_total", "Reservations leaving the held state", ["state"],
            registry=registry,
        )  # fmt: skip
        self.hold_extensions = Counter(
            "live_commerce_hold_extensions_total",
            "Due holds extended because the order system had not yet acknowledged their event",
            registry=registry,
        )
        self.stream_trimmed = Counter(
            "live_commerce_stream_trimmed_total", "Stream entries dropped by retention",
            ["stream"], registry=registry,
        )  # fmt: skip
        self.refusals = Counter(
            "live_commerce_refusals_total",
            "Refused by tenancy (another seller's product or room) or the image allow-list",
            ["rule"], registry=registry,
        )  # fmt: skip
        self.gifts_sent = Counter(
            "live_gifts_sent_total", "Gifts sent (a send of `count` gifts counts `count`)",
            ["tier"], registry=registry,
        )  # fmt: skip
        self.credits_moved = Counter(
            "live_wallet_credits_total",
            "Credits moved by wallet operations: credit (top-ups), gift (spent), refund",
            ["kind"], registry=registry,
        )  # fmt: skip
        self.wallet_refusals = Counter(
            "live_wallet_refusals_total", "Wallet operations refused, by error code",
            ["reason"], registry=registry,
        )  # fmt: skip
        self.gift_events_dropped = Counter(
            "live_gifts_events_dropped_total",
            "Gift combos never announced to the room: more senders than the room's event rate",
            registry=registry,
        )
        self.settlements_swept = Counter(
            "live_wallet_settlements_swept_total",
            "Pending settlements (host legs, outboxed events) a sweeper took over from a request",
            registry=registry,
        )
        self.coupon_claims = Counter(
            "live_commerce_coupon_claims_total", "Coupon claim attempts by result",
            ["result"], registry=registry,
        )  # fmt: skip
        self.coupon_uses = Counter(
            "live_commerce_coupon_uses_total",
            "Coupon claims moved by reservations: used (by a hold), returned (the hold or the "
            "reservation did not go through), redeemed (the hold was confirmed)",
            ["state"], registry=registry,
        )  # fmt: skip
        # Bound children: `labels()` validates and locks on every call; outcomes are few.
        self._outcomes: dict[str, Counter] = {}

    def outcome(self, code: str) -> Counter:
        child = self._outcomes.get(code)
        if child is None:
            child = self._outcomes[code] = self.reservations.labels(code)
        return child


class Commerce:
    def __init__(
        self,
        redis: aioredis.Redis,
        broadcast: RoomBroadcast,
        config: CommerceSettings,
        node_id: str,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.config = config
        self.node_id = node_id
        self._redis = redis
        self.catalogue = Catalogue(redis)
        self.sales = Sales(redis, config)
        self.coupons = Coupons(redis, config)
        self.announcer = Announcer(
            broadcast,
            self.sales.snapshot,
            stock_interval_s=config.stock_event_interval_s,
            notice_interval_s=config.notice_interval_s,
        )
        self.sweeper = Sweeper(
            redis, self.sales, self._after_sweep, config.sweep_interval_s, config.sweep_batch,
            stream=config.purchase_stream, delivery_groups=config.delivery_group_names,
            dead_letter_stream=config.dead_letter_stream,
        )  # fmt: skip
        self.metrics = _Metrics(registry)
        self.trimmer = StreamTrimmer(
            redis, (config.purchase_stream, config.dead_letter_stream), config.stream_retention_s,
            config.trim_interval_s, self._after_trim, self._outboxes if config.outbox else None,
        )  # fmt: skip
        self.wallets = Wallets(redis, config)
        self.gift_catalogue = GiftCatalogue(redis)
        self.gifts = GiftAnnouncer(
            broadcast, self.leaderboard, config.gifts_room_events_per_s,
            self.metrics.gift_events_dropped.inc,
        )  # fmt: skip
        self.webhooks: WebhookSender | None = None
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # Lifecycle
    async def start(self) -> None:
        self._spawn(self.sweeper.run(), "commerce-sweeper")
        self._spawn(self.trimmer.run(), "commerce-trimmer")
        self._spawn(self._sweep_wallets(), "commerce-wallet-sweeper")
        self._spawn(self._sweep_coupons(), "commerce-coupon-sweeper")
        cfg = self.config
        if cfg.outbox:
            relay = OutboxRelay(self._redis, cfg.purchase_stream, self.node_id)
            self._spawn(relay.run(), "commerce-outbox-relay")
        if cfg.webhook_url:
            secret = cfg.webhook_secret.get_secret_value() if cfg.webhook_secret else ""
            self._session = aiohttp.ClientSession()
            self.webhooks = WebhookSender(
                self._redis, self._session, url=cfg.webhook_url, secret=secret,
                dead_letter_stream=cfg.dead_letter_stream, max_attempts=cfg.webhook_max_attempts,
                backoff_s=cfg.webhook_backoff_s, backoff_max_s=cfg.webhook_backoff_max_s,
                timeout_s=cfg.webhook_timeout_s,
            )  # fmt: skip
            consumer = StreamConsumer(
                self._redis, cfg.purchase_stream, "webhooks", self.node_id, self.webhooks
            )
            self._spawn(consumer.run(), "commerce-webhooks")

    async def stop(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            # Bounded: a task stuck in a dead connection must not hold up shutdown.
            await asyncio.wait(tasks, timeout=5)
        await self.announcer.stop()
        await self.gifts.stop()
        if self._session is not None:
            await self._session.close()

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _fast(self, call: Awaitable[T]) -> T:
        """Fail fast when the store does not answer (503; the client retries with the same key)."""
        try:
            async with asyncio.timeout(self.config.redis_timeout_s):
                return await call
        except TimeoutError:
            raise unavailable() from None

    @contextlib.contextmanager
    def _refusal(self, rule: str, code: str) -> Iterator[None]:
        """Count a refusal of `code` on `live_commerce_refusals_total{rule}`."""
        try:
            yield
        except CommerceError as exc:
            if exc.code == code:
                self.metrics.refusals.labels(rule).inc()
            raise

    def refused(self, rule: str) -> None:
        """Count a refusal decided outside (a host of another seller, in the HTTP adapter)."""
        self.metrics.refusals.labels(rule).inc()

    # Room state (a RoomStateSource)
    async def room_state(self, room: str) -> dict[str, Any]:
        product = await self.catalogue.pinned(room)
        return {
            "pinned_product": product.to_json() if product else None,
            "sales": await self.sales.of_room(room),
            "pinned_coupon": await self.coupons.pinned(room),
        }

    # Catalogue and pins
    async def put_product(self, spec: ProductIn, seller: str) -> Product:
        """Create or replace `seller`'s product; its image must come from an allowed host."""
        with self._refusal("image_url", "invalid_request"):
            if spec.image_url is not None:
                check_image_url(spec.image_url, self.config.image_hosts)
        with self._refusal("product_owner", "not_owner"):
            return await self.catalogue.put(spec, seller)

    async def pin(self, room: str, product_id: str, seller: str) -> Product:
        """Pin a product of `seller`, the room's seller."""
        with self._refusal("room_seller", "not_owner"):
            product = await self.catalogue.pin(room, product_id, seller)
        self.announcer.product(room, product.to_json())
        return product

    async def unpin(self, room: str) -> None:
        await self.catalogue.unpin(room)
        self.announcer.product(room, None)

    # Sales
    async def start_sale(self, room: str, spec: SaleIn, seller: str) -> dict[str, Any]:
        """Start a sale of a product of `seller`, the room's seller."""
        with self._refusal("room_seller", "not_owner"):
            product = await self.catalogue.require_of(spec.product_id, seller)
        sale = await self.sales.create(room, spec, product)
        # Scheduled ones too: open pages show the countdown and open the sale at `starts_at`.
        await self.announcer.sale(sale)
        return sale

    async def end_sale(self, room: str, sale_id: str) -> dict[str, Any]:
        sale, first = await self.sales.end(room, sale_id)
        if first:
            await self.announcer.sale(sale)
        return sale

    async def reserve(
        self,
        room: str,
        sale_id: str,
        *,
        user: str,
        user_name: str,
        idempotency_key: str,
        quantity: int,
        ip: str,
        coupon_id: str | None = None,
    ) -> Reserved:
        """Reserve `quantity` units; with `coupon_id`, one of the buyer's claims of that coupon
        is consumed with the hold (see commerce/coupons.py)."""
        started = time.perf_counter()
        try:
            if coupon_id is None:
                # No `_fast` wrapper: the batcher holds the store's deadline for a whole batch.
                result = await self.sales.reserve(
                    room, sale_id, user=user, idempotency_key=idempotency_key,
                    quantity=quantity, ip=ip,
                )  # fmt: skip
            else:
                result = await self._reserve_with_coupon(
                    room, sale_id, coupon_id, user=user, key=idempotency_key, quantity=quantity,
                    ip=ip,
                )  # fmt: skip
        except TimeoutError:
            self.metrics.outcome("store_unavailable").inc()
            raise unavailable() from None
        except CommerceError as exc:
            self.metrics.outcome(exc.code).inc()
            raise
        self.metrics.reserve_seconds.observe(time.perf_counter() - started)
        self.metrics.outcome("replay" if result.replayed else "reserved").inc()
        if not result.replayed:
            r = result.reservation
            self.announcer.purchase(room, r["product_id"], user_name, r["quantity"])
            if result.stock_left == 0:
                self.announcer.sold_out(room, sale_id)
            else:
                self.announcer.stock_changed(sale_id)
        return result

    async def _reserve_with_coupon(
        self, room: str, sale_id: str, coupon_id: str, *, user: str, key: str, quantity: int,
        ip: str,
    ) -> Reserved:  # fmt: skip
        if not keys.SALE_ID.match(sale_id):
            raise CommerceError("unknown_sale", f"room {room!r} has no sale {sale_id!r}")
        # A retry of a reservation that exists answers it, whatever became of its claim since
        # (a cancelled hold's claim may back a newer hold by now).
        replay = await self._fast(self.sales.replay(sale_id, user, key))
        if replay is not None:
            return replay
        # The reservation's key, scoped to its sale as `reserve.lua` scopes it by its slot.
        use = await self._fast(self.coupons.take(
            room, coupon_id, user=user, key=f"{sale_id} {key}",
            reservation_id=self.sales.new_reservation_id(sale_id),
        ))  # fmt: skip
        try:
            result = await self.sales.reserve(
                room, sale_id, user=user, idempotency_key=key, quantity=quantity, ip=ip,
                reservation_id=use.reservation_id, coupon=use.args(),
            )  # fmt: skip
        except CommerceError as exc:
            # Refused: the claim is free again. (After a timeout it stays set aside: the
            # reservation may exist; a retry or the sweeper settles it.)
            if exc.code != "store_unavailable":
                await self._follow_coupon(room, coupon_id, use.claim_id, use.reservation_id, None)
            raise
        await self._follow_coupon(room, coupon_id, use.claim_id, use.reservation_id,
                                  result.reservation, count=not result.replayed)  # fmt: skip
        return result

    async def _follow_coupon(
        self, room: str, coupon_id: str, claim_id: str, rid: str, r: dict[str, Any] | None,
        *, count: bool = True,
    ) -> None:  # fmt: skip
        """Move a claim to match its reservation; on a store error the sweeper will."""
        try:
            state = await self._fast(self.coupons.follow(room, coupon_id, claim_id, rid, r))
        except _FOLLOW_ERRORS as exc:
            log.warning("coupon claim %s left to the sweeper: %s", claim_id, exc)
            return
        if state is not None and count:
            self.metrics.coupon_uses.labels("returned" if state == "claimed" else state).inc()

    async def _follow_hold(self, r: dict[str, Any]) -> None:
        """A settled hold that used a coupon: its claim follows it."""
        claim_id, coupon_id = r.get("claim_id"), r.get("coupon_id")
        if isinstance(claim_id, str) and isinstance(coupon_id, str):
            await self._follow_coupon(r["room_id"], coupon_id, claim_id, r["reservation_id"], r)

    # Coupons
    async def create_coupon(self, room: str, spec: CouponIn, by: str) -> dict[str, Any]:
        coupon = await self._fast(self.coupons.create(room, spec, by))
        await self.announcer.coupon(room, coupon)
        return coupon

    async def pin_coupon(self, room: str, coupon_id: str) -> dict[str, Any]:
        coupon = await self._fast(self.coupons.pin(room, coupon_id))
        self.announcer.coupon_pin(room, coupon)
        return coupon

    async def unpin_coupon(self, room: str) -> None:
        await self._fast(self.coupons.unpin(room))
        self.announcer.coupon_pin(room, None)

    async def claim_coupon(self, room: str, coupon_id: str, *, user: str, key: str) -> Claimed:
        try:
            claimed = await self._fast(self.coupons.claim(room, coupon_id, user=user, key=key))
        except CommerceError as exc:
            self.metrics.coupon_claims.labels(exc.code).inc()
            raise
        self.metrics.coupon_claims.labels("replay" if claimed.replayed else "claimed").inc()
        if not claimed.replayed:
            self.announcer.coupon_claimed(room, coupon_id, claimed.remaining)
        return claimed

    async def _sweep_coupons(self) -> None:
        async def lookup(rid: str) -> dict[str, Any] | None:
            try:
                return await self.sales.reservation(rid)
            except CommerceError:
                return None

        while True:
            try:
                for state, count in (await self.coupons.sweep_once(lookup)).items():
                    self.metrics.coupon_uses.labels(
                        "returned" if state == "claimed" else state
                    ).inc(count)
            except STORE_ERRORS as exc:
                log.warning("coupon sweeper: %s; retrying", exc)
            honour_cancel()  # a redis-py command may have swallowed the cancellation
            await asyncio.sleep(self.config.sweep_interval_s)

    async def confirm(self, reservation_id: str) -> dict[str, Any]:
        return await self._settle(reservation_id, "confirm")

    async def cancel(self, reservation_id: str) -> dict[str, Any]:
        return await self._settle(reservation_id, "cancel")

    async def _settle(self, reservation_id: str, mode: str) -> dict[str, Any]:
        settled = await self._fast(self.sales.settle(reservation_id, mode))
        r = settled.reservation
        if settled.outcome in ("ok", "expired"):
            self.metrics.settled.labels(r["state"]).inc()
            await self._follow_hold(r)
            if r["state"] != "confirmed":
                self.announcer.stock_changed(r["sale_id"])
        if settled.outcome in ("ok", "same"):
            return r
        raise CommerceError(
            f"reservation_{r['state']}",
            f"the reservation is already {r['state']}",
            reservation=r,
        )

    async def reservation(self, reservation_id: str) -> dict[str, Any]:
        return await self.sales.reservation(reservation_id)

    # Wallets and gifts
    @contextlib.contextmanager
    def _wallet_op(self) -> Iterator[None]:
        try:
            yield
        except CommerceError as exc:
            self.metrics.wallet_refusals.labels(exc.code).inc()
            raise

    async def credit(
        self, user: str, *, key: str, amount: int, reason: str, reference: str, by: str,
        seller: str,
    ) -> Applied:  # fmt: skip
        with self._wallet_op():
            applied = await self._fast(self.wallets.credit(
                user, key=key, amount=amount, reason=reason, reference=reference, by=by,
                seller=seller,
            ))  # fmt: skip
        if not applied.replayed:
            self.metrics.credits_moved.labels("credit").inc(amount)
        return applied

    async def send_gift(
        self, room: str, *, user: str, user_name: str, host: str, seller: str, key: str,
        gift_id: str, count: int, show: str = "", announce: bool = True,
    ) -> tuple[Applied, dict[str, Any]]:  # fmt: skip
        """`count` gifts from `user` to the room's host; the room hears it (combined), unless
        `announce` is False: the caller then calls `announce_gift` (after posting its message)."""
        with self._wallet_op():
            gift = await self._fast(self.gift_catalogue.find(seller, gift_id))
            applied = await self._fast(self.wallets.gift(
                user, key=key, host=host, room=room, seller=seller, gift=gift, count=count,
                show=show,
            ))  # fmt: skip
        if not applied.replayed:
            e = applied.entry
            self.metrics.gifts_sent.labels(str(gift["tier"])).inc(count)
            self.metrics.credits_moved.labels("gift").inc(-int(e["amount"]))
            if announce:
                self.announce_gift(room, user, user_name, gift, count, show)
        return applied, gift

    def announce_gift(
        self, room: str, user: str, user_name: str, gift: dict[str, Any], count: int,
        show: str = "", message: dict[str, str] | None = None,
    ) -> None:  # fmt: skip
        """The room's `gift` event of a fresh send (combined), with its message {id, text}."""
        self.gifts.gift(room, {"id": user, "name": user_name}, gift, count, show, message)

    async def refund(
        self, user: str, *, key: str, entry_id: str, reason: str, reference: str, by: str,
        shop: str,
    ) -> Applied:  # fmt: skip
        with self._wallet_op():
            applied = await self._fast(self.wallets.refund(
                user, key=key, entry_id=entry_id, reason=reason, reference=reference, by=by,
                shop=shop,
            ))  # fmt: skip
        if not applied.replayed:
            self.metrics.credits_moved.labels("refund").inc(abs(int(applied.entry["amount"])))
        return applied

    async def leaderboard(self, room: str, show: str = "") -> dict[str, Any]:
        """The room's top gifters of all time and of the show `show` ("": none): credits
        given, net of refunds."""

        async def top(scope: str) -> list[dict[str, Any]]:
            rows = await self._redis.zrevrange(
                keys.gifters(room, scope), 0, LEADERBOARD_SIZE - 1, withscores=True
            )
            return [{"user_id": u.decode(), "credits": int(score)} for u, score in rows]

        return {"room": room, "show_id": show or None, "all": await top("all"),
                "show": await top("show:" + show) if show else []}  # fmt: skip

    async def _sweep_wallets(self) -> None:
        while True:
            try:
                swept = await self.wallets.sweep_once()
                if swept:
                    self.metrics.settlements_swept.inc(swept)
            except STORE_ERRORS as exc:
                log.warning("wallet sweeper: %s; retrying", exc)
            honour_cancel()  # a redis-py command may have swallowed the cancellation
            await asyncio.sleep(self.config.sweep_interval_s)

    async def _outboxes(self) -> list[str]:
        return [keys.outbox(raw.decode()) for raw in await self._redis.smembers(OUTBOXES)]

    def _after_trim(self, stream: str, removed: int) -> None:
        # One label for every sale's outbox: a label per sale would grow without bound.
        label = "outbox" if stream.endswith("outbox") else stream
        self.metrics.stream_trimmed.labels(label).inc(removed)

    async def _after_sweep(self, sale_id: str, swept: Swept) -> None:
        if swept.extended:
            self.metrics.hold_extensions.inc(swept.extended)
        if swept.expired:
            self.metrics.settled.labels("expired").inc(len(swept.expired))
            for r in swept.expired:
                await self._follow_hold(r)
            self.announcer.stock_changed(sale_id)
        if swept.announce:
            snapshot = await self.sales.snapshot(sale_id)
            if snapshot is not None:
                await self.announcer.sale(snapshot)
        if swept.retire:
            await self.sales.retire(sale_id)
