"""The gift crowd: 200 users with 10 credits each send 4 gifts of 3 credits at once over two
nodes: exactly 3 land per user, every balance ends at 1, the host's earnings and the platform's
share add up to the debits to the credit, one `gift.sent` per gift and none twice."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from typing import Any

import pytest

from commerce import keys
from tests.support.shop import ROOM, Shop
from tests.support.waiting import eventually

# Against a single Valkey and a Valkey Cluster (tests/conftest.py, "Store kinds").
pytestmark = pytest.mark.stores("single", "cluster")

USERS, CREDITS, SENDS, PRICE = 200, 10, 4, 3


async def _retrying(shop: Shop, method: str, path: str, **kw: Any) -> tuple[int, Any]:
    for _ in range(20):
        # A loaded box may answer 503 (fail fast); a client retries with the same key.
        status, body = await shop.call(method, path, **kw)
        if status != 503:
            break
    return status, body


async def test_two_nodes_spend_exactly_the_balance(make_shop: Any) -> None:
    shop = await make_shop(nodes=2, gifts_platform_share_bps=5000)
    users = [f"fan{i}" for i in range(USERS)]
    credited = await asyncio.gather(*(
        _retrying(shop, "POST", f"/api/wallets/{u}/credits", role="orders", user="orders",
                  body={"amount": CREDITS}, headers={"Idempotency-Key": f"topup-{u}"})
        for u in users
    ))  # fmt: skip
    assert all(status == 201 for status, _ in credited), credited[:3]

    start = asyncio.Event()

    async def send(user: str, n: int) -> tuple[int, Any]:
        await start.wait()
        return await _retrying(
            shop, "POST", f"/api/rooms/{ROOM}/gifts", role="viewer", user=user, node=n % 2,
            body={"gift_id": "heart", "count": 1}, headers={"Idempotency-Key": uuid.uuid4().hex},
        )  # fmt: skip

    tasks = [asyncio.ensure_future(send(u, n)) for u in users for n in range(SENDS)]
    began = time.perf_counter()
    start.set()
    results = await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - began
    print(f"\ngifts: {len(tasks)} sends over 2 nodes in {elapsed:.2f}s "
          f"= {len(tasks) / elapsed:.0f} sends/s")  # fmt: skip

    outcomes = Counter(status if status == 201 else body["error"] for status, body in results)
    assert outcomes == {201: USERS * 3, "insufficient_credits": USERS}, outcomes
    sent = [body for status, body in results if status == 201]
    per_user = Counter(b["user_id"] for b in sent)
    assert set(per_user.values()) == {3}
    assert len({(b["user_id"], b["entry_id"]) for b in sent}) == len(sent)

    redis = shop.nodes[0].node.redis
    for user in users:
        assert await redis.hget(keys.wallet(user, "w"), "balance") == b"1"
    debits = USERS * 3 * PRICE
    # The host legs settle right after each debit (a sweeper takes over any a request left).
    host = await eventually(
        lambda: redis.hmget(keys.wallet("host", "w"), ["earned", "platform"]),
        lambda got: got[0] is not None and int(got[0]) + int(got[1] or 0) == debits,
    )
    earned, platform = int(host[0]), int(host[1])
    # 50 % of 3 is 1.5: the platform's share is floored to 1 per gift, the host gets 2.
    assert (earned, platform) == (USERS * 3 * 2, USERS * 3)
    # The leaderboards count after the host's leg (a sweeper's settlement, too).
    await eventually(
        lambda: shop.call("GET", f"/api/rooms/{ROOM}/gifts/leaderboard"),
        lambda got: got[0] == 200 and {row["credits"] for row in got[1]["all"]} == {9},
    )

    # On a cluster the events reach the purchase stream from the pending settlements.
    entries = await eventually(
        lambda: redis.xrange("live:purchases"),
        lambda got: len(got) >= USERS + len(sent),
    )
    gifts = [json.loads(f[b"data"]) for _, f in entries if f[b"type"] == b"gift.sent"]
    assert len(gifts) == USERS * 3 == len(entries) - USERS
    assert len({g["event_id"] for g in gifts}) == len(gifts)
    assert sum(-g["amount"] for g in gifts) == debits
    assert sum(g["host_amount"] + g["platform_amount"] for g in gifts) == debits

    # Nothing is left to settle (a settlement a sweeper took over goes once it is done).
    async def pending() -> int:
        return sum([await redis.hlen(keys.wallet(user, "pending")) for user in users])

    await eventually(pending, lambda left: left == 0)
