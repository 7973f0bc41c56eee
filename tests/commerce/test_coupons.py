"""Coupons: a host creates them, viewers claim them (atomically, within the quota, across nodes),
reservations consume a claim with the hold and get it back when the hold ends."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from typing import Any

import pytest

from commerce import keys
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


async def test_rules_refusals_replays_and_returns(make_shop: Any) -> None:
    shop = await make_shop(commerce_coupons_per_room=4, commerce_coupon_max_quota=100)
    redis = shop.nodes[0].node.redis

    async def create(body: dict[str, Any], **who: Any) -> tuple[int, Any]:
        return await shop.call("POST", COUPONS, body={"quota": 10, **body}, **who)

    # Who may create: the room's host; not a viewer, not a host whose token lacks the room, not
    # a host of another seller (olga) with the room in her token.
    assert (await create({"percent_off": 10}, role="viewer", user="v"))[1]["error"] == "forbidden"
    status, body = await shop.call(
        "POST", "/api/rooms/other/coupons", body={"percent_off": 10, "quota": 1}
    )
    assert (status, body["error"]) == (403, "forbidden")
    status, body = await create({"percent_off": 10}, user="olga")
    assert (status, body["error"]) == (403, "not_owner")

    # Bad input names the problem.
    for bad, word in (
        ({"percent_off": 10, "amount_off_minor": 100}, "exactly one"),
        ({}, "exactly one"),
        ({"percent_off": 101}, "percent_off"),
        ({"percent_off": 10, "quota": 0}, "quota"),
        ({"percent_off": 10, "quota": 101}, "LIVE_COMMERCE_COUPON_MAX_QUOTA"),
        ({"percent_off": 10, "product_ids": ["no spaces"]}, "product_ids"),
        ({"percent_off": 10, "quota": "5"}, "quota"),
    ):
        status, body = await create(bad)
        assert (status, body["error"]) == (400, "invalid_request") and word in body["detail"], bad

    status, wide = await create({"amount_off_minor": 5000, "per_user_limit": 1})
    status, other = await create({"percent_off": 50, "product_ids": ["vase"]})
    status, spend = await create({"amount_off_minor": 100, "min_spend_minor": 2000})
    status, later = await create({"percent_off": 5, "starts_in_s": 600})
    assert status == 201 and later["status"] == "scheduled", later
    status, body = await create({"percent_off": 5})
    assert (status, body["error"], body["limit"]) == (409, "too_many_coupons", 4)
    _, listed = await shop.call("GET", COUPONS)
    assert len(listed["coupons"]) == 4
    status, body = await shop.call("GET", "/api/rooms/nowhere/coupons")
    assert (status, body["error"]) == (404, "unknown_room")

    # Pinning: moderators and hosts of the room; the room's state carries the pinned coupon.
    pin = f"/api/rooms/{ROOM}/coupon-pin"
    status, body = await shop.call("POST", pin, role="viewer", user="v", body={"coupon_id": "x1"})
    assert (status, body["error"]) == (403, "forbidden")
    status, body = await shop.call("POST", pin, body={"coupon_id": "abc123"})
    assert (status, body["error"]) == (404, "unknown_coupon")
    status, body = await shop.call("POST", pin, body={"coupon_id": later["coupon_id"]})
    assert status == 200 and body["coupon"]["coupon_id"] == later["coupon_id"]
    _, room_state = await shop.call("GET", f"/api/rooms/{ROOM}")
    assert room_state["pinned_coupon"]["coupon_id"] == later["coupon_id"]
    assert (await shop.call("DELETE", pin))[1] == {"room": ROOM, "coupon": None}
    assert (await shop.call("GET", f"/api/rooms/{ROOM}"))[1]["pinned_coupon"] is None

    # Claims: replay by key, per-user limit, window, unknown ids.
    cid = wide["coupon_id"]
    status, first = await claim(shop, cid, "ann", key="claim-key-1")
    assert status == 201 and first["state"] == "claimed" and first["remaining"] == 9
    status, again = await claim(shop, cid, "ann", key="claim-key-1")
    assert status == 201 and again["claim_id"] == first["claim_id"] and again["replayed"]
    status, body = await claim(shop, cid, "ann")
    assert (status, body["error"], body["per_user_limit"]) == (409, "claim_limit", 1)
    status, body = await claim(shop, later["coupon_id"], "ann")
    assert (status, body["error"]) == (409, "coupon_not_started")
    assert body["starts_at"] == later["starts_at"]
    for unknown in ("abc123", "NOT-AN-ID"):
        status, body = await claim(shop, unknown, "ann")
        assert (status, body["error"]) == (404, "unknown_coupon")
    status, body = await shop.call("POST", f"{COUPONS}/{cid}/claims", role="viewer", user="ann")
    assert (status, body["error"]) == (400, "missing_idempotency_key")

    # Reservations: the amount off never exceeds the subtotal; a replay answers the same hold
    # and keeps the same claim.
    sale = await shop.start_sale(quantity=50, per_user_limit=5, price_minor=990, hold_s=60)
    sale_id = sale["sale_id"]
    status, held = await reserve(shop, sale_id, "ann", cid, quantity=2, key="buy-key-1")
    assert status == 201 and (held["subtotal_minor"], held["discount_minor"],
                              held["total_minor"]) == (1980, 1980, 0)  # fmt: skip
    status, replay = await reserve(shop, sale_id, "ann", cid, quantity=2, key="buy-key-1")
    assert status == 201 and replay["replayed"]
    assert (replay["reservation_id"], replay["claim_id"]) == (
        held["reservation_id"],
        held["claim_id"],
    )
    # Product and minimum spend: refused, and the claim stays free (not `coupon_used`).
    _, _ = await claim(shop, other["coupon_id"], "ben")
    for _ in range(2):
        status, body = await reserve(shop, sale_id, "ben", other["coupon_id"])
        assert (status, body["error"]) == (409, "coupon_not_applicable")
    _, _ = await claim(shop, spend["coupon_id"], "ben")
    status, body = await reserve(shop, sale_id, "ben", spend["coupon_id"])
    assert (status, body["error"], body["min_spend_minor"]) == (409, "coupon_min_spend", 2000)
    status, body = await reserve(shop, sale_id, "ben", spend["coupon_id"], quantity=3)
    assert status == 201 and body["total_minor"] == 2970 - 100, body

    # A lapsing hold gives its claim back (the sweeper's expiry path).
    short = await shop.start_sale(quantity=5, per_user_limit=5, price_minor=990, hold_s=0.2)
    _, _ = await claim(shop, other["coupon_id"], "cat")
    _, _ = await claim(shop, cid, "cat")
    status, lapsing = await reserve(shop, short["sale_id"], "cat", cid)
    assert status == 201
    status, body = await eventually(
        lambda: reserve(shop, short["sale_id"], "cat", cid), lambda got: got[0] == 201
    )
    assert body["claim_id"] == lapsing["claim_id"]

    # A request that died after setting a claim aside: the sweeper frees it after the lease
    # when no reservation came of it, and marks it used when one did.
    coupons = shop.nodes[0].node.commerce.coupons
    coupons.lease_s = 0.1
    _, dan = await claim(shop, cid, "dan")
    lost = await coupons.take(ROOM, cid, user="dan", key="k1", reservation_id=sale_id + "-dead")
    assert lost.claim_id == dan["claim_id"]
    status, body = await reserve(shop, sale_id, "dan", cid)
    assert (status, body["error"]) == (409, "coupon_used")
    claims = keys.coupon(ROOM, cid, "claims")

    async def state(claim_id: str) -> str:
        return str(json.loads(await redis.hget(claims, claim_id))["state"])

    await eventually(lambda: state(dan["claim_id"]), lambda s: s == "claimed")
    kept = await coupons.take(ROOM, cid, user="dan", key="k2",
                              reservation_id=sale_id + "-kept")  # fmt: skip
    sales = shop.nodes[0].node.commerce.sales
    await sales.reserve(ROOM, sale_id, user="dan", idempotency_key="k2", quantity=1, ip="x",
                        reservation_id=kept.reservation_id, coupon=kept.args())  # fmt: skip
    await eventually(lambda: state(dan["claim_id"]), lambda s: s == "used")
    # A replay of a reservation whose hold was cancelled answers that hold and leaves alone
    # the claim, which meanwhile backs a newer hold.
    _, eve = await claim(shop, cid, "eve")
    status, old = await reserve(shop, sale_id, "eve", cid, key="eve-first")
    assert status == 201, old
    status, _ = await shop.call(
        "POST", f"/api/reservations/{old['reservation_id']}/cancel", role="orders", user="ops"
    )
    status, new = await reserve(shop, sale_id, "eve", cid, key="eve-second")
    assert status == 201 and new["claim_id"] == eve["claim_id"]
    status, replay = await reserve(shop, sale_id, "eve", cid, key="eve-first")
    assert status == 201 and replay["reservation_id"] == old["reservation_id"], replay
    assert replay["state"] == "cancelled" and await state(eve["claim_id"]) == "used"
    # Confirming redeems it.
    status, _ = await shop.call(
        "POST", f"/api/reservations/{kept.reservation_id}/confirm", role="orders", user="ops"
    )
    assert status == 200 and await state(dan["claim_id"]) == "redeemed"

    created = await events(shop, "coupon.created", 4)
    assert {e["coupon_id"] for e in created} == {
        c["coupon_id"] for c in (wide, other, spend, later)
    }
    async with shop.http.get(shop.url + "/metrics") as resp:
        text = await resp.text()
    for line in (
        'live_commerce_coupon_claims_total{result="claimed"} 7.0',
        'live_commerce_coupon_claims_total{result="replay"} 1.0',
        'live_commerce_coupon_claims_total{result="claim_limit"} 1.0',
        'live_commerce_coupon_uses_total{state="redeemed"} 1.0',
    ):
        assert line in text, line
    assert 'live_commerce_coupon_uses_total{state="returned"}' in text
