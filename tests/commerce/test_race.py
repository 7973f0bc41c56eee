"""The flash-sale crowd: 2,000 concurrent attempts from 500 users over two nodes for 100 units."""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections import Counter
from typing import Any

import pytest

from tests.support.shop import ROOM
from tests.support.waiting import eventually

# Against a single Valkey and a Valkey Cluster (tests/conftest.py, "Store kinds").
pytestmark = pytest.mark.stores("single", "cluster")

USERS, ATTEMPTS, UNITS, LIMIT = 500, 2000, 100, 2


async def test_two_nodes_sell_exactly_the_stock(make_shop: Any) -> None:
    shop = await make_shop(nodes=2, commerce_ip_rate=100_000)
    sale = await shop.start_sale(quantity=UNITS, per_user_limit=LIMIT)
    sale_id = sale["sale_id"]
    rng = random.Random(7)
    attempts = [(f"user{i % USERS}", rng.choice((1, 1, 2)), i % 2) for i in range(ATTEMPTS)]
    rng.shuffle(attempts)
    start = asyncio.Event()

    async def attempt(user: str, quantity: int, node: int) -> tuple[int, Any]:
        await start.wait()
        key = uuid.uuid4().hex
        for _ in range(20):
            # A loaded box may answer 503 (fail fast); a client retries with the same key.
            status, body = await shop.reserve(sale_id, user, quantity, key=key, node=node)
            if status != 503:
                break
        return status, body

    tasks = [asyncio.ensure_future(attempt(*a)) for a in attempts]
    began = time.perf_counter()
    start.set()
    results = await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - began
    print(f"\nrace: {ATTEMPTS} attempts over 2 nodes in {elapsed:.2f}s "
          f"= {ATTEMPTS / elapsed:.0f} attempts/s")  # fmt: skip

    outcomes = Counter(status if status == 201 else body["error"] for status, body in results)
    assert set(outcomes) <= {201, "sold_out", "insufficient_stock", "limit_reached"}, outcomes
    reserved = [body for status, body in results if status == 201]
    assert sum(r["quantity"] for r in reserved) == UNITS
    per_user = Counter()
    for r in reserved:
        per_user[r["user_id"]] += r["quantity"]
    assert max(per_user.values()) <= LIMIT
    assert len({r["reservation_id"] for r in reserved}) == len(reserved)

    _, snap = await shop.call("GET", f"/api/rooms/{ROOM}/sales/{sale_id}")
    assert snap["stock_left"] == 0 and snap["reserved"] == UNITS and snap["status"] == "sold_out"

    # On a cluster the events reach the purchase stream through the sales' outboxes' relay.
    entries = await eventually(
        lambda: shop.nodes[0].node.redis.xrange("live:purchases"),
        lambda got: len(got) >= len(reserved),
    )
    events = [json.loads(f[b"data"]) for _, f in entries if f[b"type"] == b"purchase.reserved"]
    assert len(events) == len(reserved) == len(entries)
    assert len({e["event_id"] for e in events}) == len(events)
    assert {e["reservation_id"] for e in events} == {r["reservation_id"] for r in reserved}
