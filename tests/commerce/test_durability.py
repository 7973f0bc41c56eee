"""Holds outlive an order-system outage (they lapse only once their event was acknowledged), and
the purchase streams are trimmed by age but never past what a consumer group has not acked."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp import web

from commerce import retention
from commerce.config import PURCHASE_STREAM
from commerce.webhooks import EVENT_TYPE_HEADER
from tests.support.loopback import serving
from tests.support.shop import Shop
from tests.support.waiting import eventually


class OrderSystem:
    """A webhook receiver that answers 503 until `up` is set, then confirms each reservation."""

    def __init__(self) -> None:
        self.up = asyncio.Event()
        self.refused = 0
        self.confirmed: dict[str, int] = {}
        self.changed = asyncio.Condition()
        self.shop: Shop | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        doc = await request.json()
        if not self.up.is_set():
            async with self.changed:
                self.refused += 1
                self.changed.notify_all()
            return web.Response(status=503)
        if request.headers[EVENT_TYPE_HEADER] != "purchase.reserved":
            return web.Response(status=204)
        assert self.shop is not None
        rid = doc["data"]["reservation_id"]
        status, _ = await self.shop.call("POST", f"/api/reservations/{rid}/confirm", role="orders")
        async with self.changed:
            self.confirmed[rid] = status
            self.changed.notify_all()
        return web.Response(status=204 if status == 200 else 500)

    async def wait(self, predicate: Any) -> None:
        async with asyncio.timeout(10), self.changed:
            await self.changed.wait_for(predicate)


@pytest.fixture
async def orders() -> AsyncIterator[OrderSystem]:
    system = OrderSystem()
    async with _listening(system, 0):
        yield system


@contextlib.asynccontextmanager
async def _listening(system: OrderSystem, port: int) -> AsyncIterator[None]:
    app = web.Application()
    app.router.add_post("/hooks", system.handle)
    async with serving(app, port) as url:
        system.url = url + "/hooks"
        yield


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _metric(shop: Shop, name: str) -> float:
    async with shop.http.get(shop.url + "/metrics") as response:
        text = await response.text()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith("#")
    )


@pytest.mark.parametrize("down", ["503", "connection refused"])
async def test_a_hold_outlives_an_order_system_outage_and_is_confirmed(
    make_shop: Any, down: str
) -> None:
    orders = OrderSystem()
    async with contextlib.AsyncExitStack() as stack:
        if down == "503":
            await stack.enter_async_context(_listening(orders, 0))
        else:  # nothing listens on its port until it is back
            port = _unused_port()
            orders.url = f"http://127.0.0.1:{port}/hooks"
        shop = await make_shop(
            webhook_url=orders.url, webhook_secret="w" * 32, webhook_max_attempts=20,
            webhook_backoff_s=0.05,
            webhook_backoff_max_s=0.2, webhook_timeout_s=1.0,
        )  # fmt: skip
        orders.shop = shop
        sale = await shop.start_sale(quantity=1, per_user_limit=1, hold_s=0.5)
        status, held = await shop.reserve(sale["sale_id"], "ann")
        assert status == 201, held
        if down == "503":
            await orders.wait(lambda: orders.refused >= 1)

        # Well past the hold's expiry, with the sweeper having run since: the unit is still held.
        await eventually(lambda: time.time() * 1000 > held["expires_at"] + 300)
        await shop.nodes[0].node.commerce.sweeper.wait_passes(2)
        status, refused = await shop.reserve(sale["sale_id"], "bob")
        assert (status, refused["error"]) == (409, "sold_out"), refused
        assert await _metric(shop, "live_commerce_hold_extensions_total") >= 1

        # Back: the retried webhook reaches it, and it confirms.
        orders.up.set()
        if down != "503":
            await stack.enter_async_context(_listening(orders, port))
        await orders.wait(lambda: held["reservation_id"] in orders.confirmed)
        assert orders.confirmed[held["reservation_id"]] == 200
        rid = held["reservation_id"]
        status, r = await shop.call("GET", f"/api/reservations/{rid}", role="orders")
        assert r["state"] == "confirmed"
        status, after = await shop.call("GET", f"/api/rooms/shop/sales/{sale['sale_id']}")
        assert (after["sold"], after["stock_left"], after["reserved"]) == (1, 0, 0)


async def test_confirm_after_expiry_succeeds_while_the_event_is_unacknowledged(
    make_shop: Any, redis: aioredis.Redis
) -> None:
    # The sweeper's first pass runs at start, the next one in an hour: confirm alone decides.
    shop = await make_shop(commerce_sweep_interval_s=3600)
    sweeper = shop.nodes[0].node.commerce.sweeper
    await redis.xgroup_create(PURCHASE_STREAM, "orders", id="$", mkstream=True)
    sale = await shop.start_sale(quantity=2, per_user_limit=1, hold_s=0.2)
    held = [(await shop.reserve(sale["sale_id"], user))[1] for user in ("ann", "bob")]
    # The order system was handed both events and acknowledged only ann's.
    read = await redis.xreadgroup("orders", "o1", {PURCHASE_STREAM: ">"}, count=10)
    entries = read[0][1]
    assert len(entries) == 2
    await redis.xack(PURCHASE_STREAM, "orders", entries[0][0])
    await sweeper.refresh_floor()
    await eventually(lambda: time.time() * 1000 > max(h["expires_at"] for h in held) + 50)

    status, bob = await shop.call(
        "POST", f"/api/reservations/{held[1]['reservation_id']}/confirm", role="orders"
    )
    assert (status, bob.get("state")) == (200, "confirmed"), bob
    status, ann = await shop.call(
        "POST", f"/api/reservations/{held[0]['reservation_id']}/confirm", role="orders"
    )
    assert (status, ann["error"]) == (409, "reservation_expired"), ann


async def test_the_extension_is_bounded(make_shop: Any, redis: aioredis.Redis) -> None:
    shop = await make_shop(commerce_hold_max_extension_s=0.3)
    await redis.xgroup_create(PURCHASE_STREAM, "webhooks", id="$", mkstream=True)
    sale = await shop.start_sale(quantity=1, per_user_limit=1, hold_s=0.2)
    status, held = await shop.reserve(sale["sale_id"], "ann")
    assert status == 201
    # Nobody ever reads the event: the hold lapses at expiry + the max extension, not before.
    rid = held["reservation_id"]
    r = await eventually(
        lambda: shop.call("GET", f"/api/reservations/{rid}", role="orders"),
        lambda answer: answer[1]["state"] == "expired",
    )
    assert r[1]["settled_at"] >= held["created_at"] + 200 + 300


async def test_trimming_keeps_what_a_group_has_not_acknowledged(redis: aioredis.Redis) -> None:
    stream = "live:test:trim"
    old = int((time.time() - 3600) * 1000)
    ids = [await redis.xadd(stream, {"n": str(i)}, id=f"{old + i}-0") for i in range(10)]
    await redis.xgroup_create(stream, "g", id="0")
    await redis.xreadgroup("g", "c", {stream: ">"}, count=6)
    await redis.xack(stream, "g", *ids[:4])  # 4 and 5 pending, 6.. never delivered
    assert await retention.trim(redis, stream, retention_s=60) == 4
    assert (await redis.xrange(stream, count=1))[0][0] == ids[4]

    await redis.xack(stream, "g", *ids[4:6])
    assert await retention.trim(redis, stream, retention_s=60) == 2  # up to the undelivered
    await redis.xreadgroup("g", "c", {stream: ">"})
    await redis.xack(stream, "g", *ids[6:])
    # A second group that never read anything keeps everything that is left.
    await redis.xgroup_create(stream, "late", id="0")
    assert await retention.trim(redis, stream, retention_s=60) == 0
    await redis.xgroup_destroy(stream, "late")
    assert await retention.trim(redis, stream, retention_s=60) == 4
    # Young entries stay whatever the groups did.
    await redis.xadd(stream, {"n": "new"})
    assert await retention.trim(redis, stream, retention_s=60) == 0
    assert await redis.xlen(stream) == 1


async def test_the_node_trims_its_streams_and_counts_it(
    make_shop: Any, redis: aioredis.Redis
) -> None:
    shop = await make_shop(commerce_stream_retention_s=60)
    old = int((time.time() - 3600) * 1000)
    for stream in (PURCHASE_STREAM, "live:purchases:dead"):
        for i in range(3):
            await redis.xadd(stream, {"type": "x", "data": "{}"}, id=f"{old + i}-0")
    assert await shop.nodes[0].node.commerce.trimmer.trim_once() == 6
    assert await _metric(shop, "live_commerce_stream_trimmed_total") == 6


async def test_a_dead_lettered_hold_waits_for_the_order_system(
    make_shop: Any, orders: OrderSystem
) -> None:
    # The sender gives up fast: the event is dead-lettered (and acknowledged) while the order
    # system is down. It never got the event, so the hold must not lapse.
    shop = await make_shop(
        webhook_url=orders.url, webhook_secret="w" * 32, webhook_max_attempts=2,
        webhook_backoff_s=0.01,
        webhook_backoff_max_s=0.01, webhook_timeout_s=1.0,
    )  # fmt: skip
    sale = await shop.start_sale(quantity=1, per_user_limit=1, hold_s=0.3)
    status, held = await shop.reserve(sale["sale_id"], "ann")
    assert status == 201
    rid = held["reservation_id"]
    await eventually(lambda: shop.nodes[0].node.commerce.webhooks.dead_lettered >= 1)
    await eventually(lambda: time.time() * 1000 > held["expires_at"] + 300)
    await shop.nodes[0].node.commerce.sweeper.wait_passes(2)
    status, refused = await shop.reserve(sale["sale_id"], "bob")
    assert (status, refused["error"]) == (409, "sold_out"), refused
    # The order system, handed the event later (a replay), confirms.
    status, r = await shop.call("POST", f"/api/reservations/{rid}/confirm", role="orders")
    assert (status, r["state"]) == (200, "confirmed"), r


async def test_outboxes_are_trimmed_once_relayed(make_shop: Any, redis: aioredis.Redis) -> None:
    shop = await make_shop(commerce_outbox=True, commerce_stream_retention_s=60)
    sale = await shop.start_sale(quantity=5)
    outbox = "live:{sale:" + sale["sale_id"] + "}:outbox"
    old = int((time.time() - 3600) * 1000)
    for i in range(3):
        await redis.xadd(outbox, {"type": "x", "data": "{}"}, id=f"{old + i}-0")
    status, _ = await shop.reserve(sale["sale_id"], "ann")  # a young one, relayed too
    assert status == 201

    async def relayed() -> bool:
        floor = await retention.floor(redis, outbox)
        return floor is not None and floor > retention.parse_id((await redis.xrange(outbox))[-1][0])

    await eventually(relayed)
    assert await shop.nodes[0].node.commerce.trimmer.trim_once() == 3  # the young one stays
    assert await redis.xlen(outbox) == 1
    assert await _metric(shop, 'live_commerce_stream_trimmed_total{stream="outbox"}') == 3
