"""Idempotent replay, expiry by two sweepers exactly once, cancel after expiry, room events."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import redis.asyncio as aioredis

from commerce.catalogue import Product
from commerce.config import CommerceSettings
from commerce.sales import Sales, Swept
from commerce.schemas import SaleIn
from commerce.sweeper import Sweeper
from tests.conftest import ClientFactory
from tests.support.shop import ROOM


async def _events(redis: aioredis.Redis) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f[b"type"].decode(), json.loads(f[b"data"]))
        for _, f in await redis.xrange("live:purchases")
    ]


async def test_idempotent_replay_returns_the_same_reservation(make_shop: Any) -> None:
    shop = await make_shop(nodes=2)
    sale = await shop.start_sale(quantity=5, per_user_limit=3)
    key = "buy-press-0001"
    concurrent = await asyncio.gather(
        *(shop.reserve(sale["sale_id"], "ann", key=key, node=i % 2) for i in range(6))
    )
    statuses = {status for status, _ in concurrent}
    assert statuses == {201}
    ids = {body["reservation_id"] for _, body in concurrent}
    assert len(ids) == 1
    assert sum(1 for _, body in concurrent if not body["replayed"]) == 1
    _, snap = await shop.call("GET", f"/api/rooms/{ROOM}/sales/{sale['sale_id']}")
    assert snap["stock_left"] == 4
    assert [t for t, _ in await _events(shop.nodes[0].node.redis)] == ["purchase.reserved"]
    # The same key of another user is another reservation.
    status, other = await shop.reserve(sale["sale_id"], "bob", key=key)
    assert status == 201 and other["reservation_id"] not in ids


async def test_holds_expire_once_with_two_sweepers(make_shop: Any) -> None:
    shop = await make_shop(nodes=2)
    sale = await shop.start_sale(quantity=4, per_user_limit=2, hold_s=0.3)
    reserved = [await shop.reserve(sale["sale_id"], f"u{i}", node=i % 2) for i in range(4)]
    assert all(status == 201 for status, _ in reserved)
    redis = shop.nodes[0].node.redis
    # Block on the stream until the four expiries arrive (no fixed sleep).
    async with asyncio.timeout(10):
        last = "0-0"
        expired = 0
        while expired < 4:
            for _, entries in await redis.xread({"live:purchases": last}, block=2000) or []:
                for entry_id, fields in entries:
                    last = entry_id
                    expired += fields[b"type"] == b"purchase.expired"
    # Both sweepers run two more full passes: still exactly one expiry per reservation.
    await asyncio.gather(*(n.node.commerce.sweeper.wait_passes(2) for n in shop.nodes))
    events = await _events(redis)
    expiries = [d["reservation_id"] for t, d in events if t == "purchase.expired"]
    assert sorted(expiries) == sorted(body["reservation_id"] for _, body in reserved)
    _, snap = await shop.call("GET", f"/api/rooms/{ROOM}/sales/{sale['sale_id']}")
    assert snap["stock_left"] == 4 and snap["reserved"] == 0
    rid = reserved[0][1]["reservation_id"]
    for action in ("cancel", "confirm"):
        status, body = await shop.call(
            "POST", f"/api/reservations/{rid}/{action}", role="orders", user="orders"
        )
        assert status == 409 and body["error"] == "reservation_expired", body
    assert len(await _events(redis)) == len(events)


async def test_direct_concurrent_sweeps_expire_once(valkey_url: str, redis: aioredis.Redis) -> None:
    config = CommerceSettings(user_rate=1000)
    clients = [aioredis.Redis.from_url(valkey_url) for _ in range(2)]
    try:
        sales = [Sales(c, config) for c in clients]
        spec = SaleIn(product_id="mug", quantity=50, price_minor=1, duration_s=60,
                      per_user_limit=50, hold_s=0.1)  # fmt: skip
        sale = await sales[0].create(ROOM, spec, Product("mug", "Mug", 1, "EUR"))
        for i in range(25):
            await sales[i % 2].reserve(
                ROOM, sale["sale_id"], user="whale", idempotency_key=f"k{i}", quantity=2, ip="ip"
            )
        hold_key = "live:{sale:" + sale["sale_id"] + "}:holds"
        last_due = int((await redis.zrange(hold_key, -1, -1, withscores=True))[0][1])
        seconds, micros = await redis.time()
        # Holds expire on the store's clock: wait exactly until the last is due, then check.
        await asyncio.sleep(max(0, last_due - (seconds * 1000 + micros // 1000)) / 1000 + 0.01)
        seconds, micros = await redis.time()
        assert seconds * 1000 + micros // 1000 > last_due
        swept: list[int] = []

        async def record(sale_id: str, result: Swept) -> None:
            swept.append(len(result.expired))

        sweepers = [Sweeper(c, s, record, 1.0, 10) for c, s in zip(clients, sales, strict=True)]
        counts = await asyncio.gather(*(s.sweep_once() for s in sweepers for _ in range(3)))
        assert sum(counts) == sum(swept) == 25
        expired = [t for t, _ in await _events(redis) if t == "purchase.expired"]
        assert len(expired) == 25
        assert int(await redis.hget("live:{sale:" + sale["sale_id"] + "}:meta", "stock")) == 50
    finally:
        for c in clients:
            await c.aclose()


async def test_room_sees_product_sale_and_masked_purchases(
    make_shop: Any, connect: ClientFactory
) -> None:
    shop = await make_shop(nodes=2)
    watcher = await connect(shop.nodes[1].url, "watcher", rooms=[ROOM])
    await watcher.join(ROOM)
    status, _ = await shop.call("POST", f"/api/rooms/{ROOM}/pin", body={"product_id": "mug"})
    assert status == 200
    pinned = await watcher.wait_for("product")
    assert pinned["product"]["title"] == "Studio mug"
    sale = await shop.start_sale(quantity=3, per_user_limit=3)
    await watcher.wait_for("sale", lambda d: d["status"] == "active")
    await asyncio.gather(
        shop.reserve(sale["sale_id"], "alice", 1),
        shop.call(
            "POST", f"/api/rooms/{ROOM}/sales/{sale['sale_id']}/reservations", role="viewer",
            user="bobby", body={"quantity": 2}, headers={"Idempotency-Key": "bobby-key-1"},
        ),
    )  # fmt: skip
    await watcher.wait_for("sale", lambda d: d["status"] == "sold_out" and d["stock_left"] == 0)
    notice = await watcher.wait_for("purchase")
    assert notice["buyers"] == 2 and notice["quantity"] == 3
    assert set(notice["names"]) == {"a***e", "b***y"}
    state = (await watcher.join(ROOM))["state"]
    assert state["pinned_product"]["product_id"] == "mug"
    assert state["sales"][0]["status"] == "sold_out"
    status, _ = await shop.call("DELETE", f"/api/rooms/{ROOM}/pin", role="moderator", user="mod")
    assert status == 200
    await watcher.wait_for("product", lambda d: d["product"] is None)
