"""Coupons: a host creates them, viewers claim them (atomically, within the quota, across nodes),
reservations consume a claim with the hold and get it back when the hold ends."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from typing import Any

import pytest

from tests.support.shop import ROOM, Shop
from tests.support.waiting import eventually

COUPONS = f"/api/rooms/{ROOM}/coupons"
QUOTA, CROWD = 50, 300


async def claim(shop: Shop, coupon_id: str, user: str, key: str | None = None,
                node: int = 0) -> tuple[int, Any]:  # fmt: skip
    return await shop.call(
        "POST", f"{COUPONS}/{coupon_id}/claims", role="viewer", user=user, node=node,
        headers={"Idempotency-Key": key or uuid.uuid4().hex},
    )  # fmt: skip


async def reserve(shop: Shop, sale_id: str, user: str, coupon_id: str | None, quantity: int = 1,
                  node: int = 0, key: str | None = None) -> tuple[int, Any]:  # fmt: skip
    body: dict[str, Any] = {"quantity": quantity}
    if coupon_id is not None:
        body["coupon_id"] = coupon_id
    return await shop.call(
        "POST", f"/api/rooms/{ROOM}/sales/{sale_id}/reservations", role="viewer", user=user,
        body=body, node=node, headers={"Idempotency-Key": key or uuid.uuid4().hex},
    )  # fmt: skip


async def events(shop: Shop, kind: str, count: int) -> list[dict[str, Any]]:
    """The purchase stream's `kind` events, once there are `count` (on a cluster they come
    through the outboxes' relay)."""

    async def read() -> list[dict[str, Any]]:
        entries = await shop.nodes[0].node.redis.xrange("live:purchases")
        return [json.loads(f[b"data"]) for _, f in entries if f[b"type"] == kind.encode()]

    return list(await eventually(read, lambda got: len(got) >= count))


@pytest.mark.stores("single", "cluster")
async def test_quota_holds_across_nodes_and_holds_carry_the_discount(make_shop: Any) -> None:
    shop = await make_shop(nodes=2, commerce_ip_rate=100_000)
    status, coupon = await shop.call("POST", COUPONS, body={
        "percent_off": 15, "quota": QUOTA, "per_user_limit": 1, "product_ids": ["mug"],
        "duration_s": 600,
    })  # fmt: skip
    assert status == 201, coupon
    cid = coupon["coupon_id"]
    assert coupon["remaining"] == QUOTA and coupon["status"] == "active"

    # 300 viewers press Claim at once, half on each node: exactly the quota wins.
    start = asyncio.Event()

    async def press(i: int) -> tuple[int, Any]:
        await start.wait()
        key = uuid.uuid4().hex
        for _ in range(20):
            # A loaded box may answer 503 (fail fast); a client retries with the same key.
            status, body = await claim(shop, cid, f"fan{i}", key=key, node=i % 2)
            if status != 503:
                break
        return status, body

    tasks = [asyncio.ensure_future(press(i)) for i in range(CROWD)]
    start.set()
    results = await asyncio.gather(*tasks)
    outcomes = Counter(s if s == 201 else b["error"] for s, b in results)
    assert outcomes == {201: QUOTA, "quota_exhausted": CROWD - QUOTA}, outcomes
    winners = [b["user_id"] for s, b in results if s == 201]
    assert len(set(winners)) == QUOTA
    _, listed = await shop.call("GET", COUPONS)
    assert [(c["coupon_id"], c["claimed"], c["remaining"]) for c in listed["coupons"]] == [
        (cid, QUOTA, 0)
    ]
    claimed = await events(shop, "coupon.claimed", QUOTA)
    assert sorted(e["user_id"] for e in claimed) == sorted(winners)
    assert len({e["event_id"] for e in claimed}) == QUOTA

    # Every winner buys one unit with the coupon, on either node: 990 less 15 % floored.
    sale = await shop.start_sale(quantity=100, per_user_limit=2, price_minor=990)
    sale_id = sale["sale_id"]
    holds = await asyncio.gather(
        *(reserve(shop, sale_id, u, cid, node=i % 2) for i, u in enumerate(winners))
    )
    assert {s for s, _ in holds} == {201}, holds
    for _, r in holds:
        assert (r["price_minor"], r["subtotal_minor"], r["discount_minor"], r["total_minor"]) == (
            990,
            990,
            148,
            842,
        ), r
        assert r["coupon_id"] == cid and r["claim_id"].startswith(cid + "-")
    reserved = await events(shop, "purchase.reserved", QUOTA)
    assert {e["total_minor"] for e in reserved} == {842}
    assert {e["claim_id"] for e in reserved} == {r["claim_id"] for _, r in holds}

    # One claim backs one hold: a second coupon reservation of the same buyer is refused (and
    # takes no unit); someone without a claim cannot use the coupon.
    first_user, first = winners[0], holds[0][1]
    status, body = await reserve(shop, sale_id, first_user, cid)
    assert (status, body["error"]) == (409, "coupon_used")
    status, body = await reserve(shop, sale_id, "stranger", cid)
    assert (status, body["error"]) == (409, "coupon_not_claimed")

    # Cancelling the hold gives its buyer the claim back: usable again, full discount.
    status, cancelled = await shop.call(
        "POST", f"/api/reservations/{first['reservation_id']}/cancel", role="orders", user="ops"
    )
    assert status == 200 and cancelled["state"] == "cancelled"
    status, again = await reserve(shop, sale_id, first_user, cid, node=1)
    assert status == 201 and again["claim_id"] == first["claim_id"], again
    assert again["total_minor"] == 842
    cancels = await events(shop, "purchase.cancelled", 1)
    assert cancels[0]["claim_id"] == first["claim_id"] and cancels[0]["discount_minor"] == 148
    # The quota counts claims, not holds: still exhausted.
    status, body = await claim(shop, cid, "late")
    assert (status, body["error"]) == (409, "quota_exhausted")
