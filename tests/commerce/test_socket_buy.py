"""Buying over the live connection: a race of Socket.IO `buy` requests over two nodes, replays
from the idempotency record (across paths too), refusals with the HTTP path's codes, metrics."""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from typing import Any

import pytest

from tests.conftest import ClientFactory
from tests.support.shop import ROOM
from tests.support.waiting import eventually

# Against a single Valkey and a Valkey Cluster (tests/conftest.py, "Store kinds").
pytestmark = pytest.mark.stores("single", "cluster")

USERS, PER_USER, UNITS, LIMIT = 60, 5, 40, 2


async def test_socket_buyers_race_over_two_nodes(make_shop: Any, connect: ClientFactory) -> None:
    shop = await make_shop(nodes=2, commerce_ip_rate=100_000)
    sale = await shop.start_sale(quantity=UNITS, per_user_limit=LIMIT)
    sale_id = sale["sale_id"]
    users = [f"buyer{i}" for i in range(USERS)]
    clients = await asyncio.gather(
        *(connect(shop.nodes[i % 2].url, u, rooms=[ROOM]) for i, u in enumerate(users))
    )
    await asyncio.gather(*(c.join(ROOM) for c in clients))
    rng = random.Random(15)
    attempts = [(i, j, rng.choice((1, 1, 2))) for i in range(USERS) for j in range(PER_USER)]
    rng.shuffle(attempts)

    async def buy(i: int, j: int, quantity: int) -> tuple[str, dict[str, Any]]:
        body = {"room": ROOM, "sale_id": sale_id, "quantity": quantity, "key": f"buy-key-{i}-{j}"}
        for _ in range(20):
            # A loaded box may answer store_unavailable (fail fast): retry with the same key.
            ack = await clients[i].call("buy", body)
            if ack.get("error") != "store_unavailable":
                break
        return users[i], ack

    results = await asyncio.gather(*(buy(*a) for a in attempts))
    keys = {
        id(ack): f"buy-key-{i}-{j}" for (i, j, _), (_, ack) in zip(attempts, results, strict=True)
    }
    outcomes = Counter("ok" if ack["ok"] else ack["error"] for _, ack in results)
    assert set(outcomes) <= {"ok", "sold_out", "insufficient_stock", "limit_reached"}, outcomes
    held = [ack for _, ack in results if ack["ok"]]
    assert sum(ack["quantity"] for ack in held) == UNITS
    per_user: Counter[str] = Counter()
    for user, ack in results:
        if ack["ok"]:
            assert ack["user_id"] == user and ack["state"] == "held", ack
            per_user[user] += ack["quantity"]
    assert max(per_user.values()) <= LIMIT
    assert len({ack["reservation_id"] for ack in held}) == len(held)
    # The 201 answer's fields, no more (and `ok`).
    fields = {"reservation_id", "sale_id", "room_id", "product_id", "user_id", "quantity",
              "price_minor", "currency", "state", "created_at", "expires_at", "stream_id",
              "stock_left", "replayed", "ok"}  # fmt: skip
    assert set(held[0]) == fields, held[0]
    _, snap = await shop.call("GET", f"/api/rooms/{ROOM}/sales/{sale_id}")
    assert snap["stock_left"] == 0 and snap["reserved"] == UNITS and snap["status"] == "sold_out"
    # The per-address window is keyed by a hash of the socket's address, never the address.
    redis = shop.nodes[0].node.redis
    windows = [k async for k in redis.scan_iter(match="live:{sale:*}:rl:ip:*")]
    assert windows and not [k for k in windows if b"127.0.0.1" in k], windows

    # One purchase.reserved per hold (on a cluster, relayed from the sale's outbox).
    entries = await eventually(
        lambda: shop.nodes[0].node.redis.xrange("live:purchases"),
        lambda got: len(got) >= len(held),
    )
    events = [json.loads(f[b"data"]) for _, f in entries if f[b"type"] == b"purchase.reserved"]
    assert len(events) == len(held) == len(entries)
    assert {e["reservation_id"] for e in events} == {ack["reservation_id"] for ack in held}

    # Replays answer from the idempotency record: on the other node, over HTTP too.
    user, ack = next((u, a) for u, a in results if a["ok"])
    i, key = users.index(user), keys[id(ack)]
    other = await connect(shop.nodes[(i + 1) % 2].url, user, rooms=[ROOM])
    await other.join(ROOM)
    again = await other.call(
        "buy", {"room": ROOM, "sale_id": sale_id, "quantity": ack["quantity"], "key": key}
    )
    assert again["ok"] and again["replayed"], again
    assert again["reservation_id"] == ack["reservation_id"]
    assert again["stream_id"] == ack["stream_id"]
    status, body = await shop.reserve(sale_id, user, ack["quantity"], key=key, node=1)
    assert status == 201 and body["replayed"] and body["reservation_id"] == ack["reservation_id"]
    held_of = await shop.nodes[0].node.redis.hlen(f"live:{{sale:{sale_id}}}:res")
    assert held_of == len(held)  # nothing new from the replays

    # A field of the reservation body passes through: a claimed coupon discounts the hold.
    status, coupon = await shop.call("POST", f"/api/rooms/{ROOM}/coupons", body={
        "percent_off": 15, "quota": 5, "per_user_limit": 1, "duration_s": 600,
    })  # fmt: skip
    assert status == 201, coupon
    status, claimed = await shop.call(
        "POST", f"/api/rooms/{ROOM}/coupons/{coupon['coupon_id']}/claims", role="viewer",
        user=user, headers={"Idempotency-Key": "coupon-claim-1"},
    )  # fmt: skip
    assert status == 201, claimed
    second = await shop.start_sale(quantity=5, per_user_limit=2, price_minor=1000)
    discounted = await other.call("buy", {
        "room": ROOM, "sale_id": second["sale_id"], "quantity": 1, "key": "coupon-buy-1",
        "coupon_id": coupon["coupon_id"],
    })  # fmt: skip
    assert discounted["ok"] and discounted["coupon_id"] == coupon["coupon_id"], discounted
    assert (discounted["discount_minor"], discounted["total_minor"]) == (150, 850)

    # Refusals: the HTTP path's codes; bad input names the problem.
    c = clients[0]

    async def refused(payload: dict[str, Any], client: Any = c) -> dict[str, Any]:
        got: dict[str, Any] = await client.call("buy", payload)
        assert not got["ok"], got
        return got

    base = {"room": ROOM, "sale_id": sale_id, "key": "bad-input-1"}
    bad = await refused({**base, "quantity": "2"})
    assert bad["error"] == "invalid_payload" and "quantity" in bad["detail"], bad
    bad = await refused({"room": ROOM, "sale_id": sale_id, "quantity": 1})
    assert bad["error"] == "invalid_payload" and "key" in bad["detail"], bad
    bad = await refused({**base, "key": "short"})
    assert bad["error"] == "invalid_payload" and "key" in bad["detail"], bad
    bad = await refused({**base, "coupon_code": "X"})
    assert bad["error"] == "invalid_payload" and "coupon_code" in bad["detail"], bad
    bad = await refused({**base, "quantity": 3})
    assert bad["error"] == "invalid_quantity" and bad["per_user_limit"] == LIMIT, bad
    bad = await refused({**base, "sale_id": "nosuchsale"})
    assert bad["error"] == "unknown_sale", bad
    bad = await refused({**base, "quantity": 1})
    assert bad["error"] in ("sold_out", "limit_reached"), bad
    bad = await refused({**base, "room": "elsewhere"})
    assert bad["error"] == "not_joined", bad
    orders = await connect(shop.nodes[0].url, "ops", role="orders", rooms=[ROOM])
    await orders.join(ROOM)
    bad = await refused({**base, "key": "orders-key-1"}, orders)
    assert bad["error"] == "forbidden", bad

    # Acks went straight to the idle connections' transports (chat/fanout.py).
    assert shop.nodes[0].node.chat.fanout.direct_acks > 0

    # Counted by result on /metrics.
    async with shop.http.get(shop.nodes[0].url + "/metrics") as response:
        text = await response.text()
    assert 'live_socket_buys_total{result="reserved"}' in text
    assert 'live_socket_buys_total{result="invalid_payload"}' in text
    async with shop.http.get(shop.nodes[(i + 1) % 2].url + "/metrics") as response:
        assert 'live_socket_buys_total{result="replay"} 1.0' in await response.text()
