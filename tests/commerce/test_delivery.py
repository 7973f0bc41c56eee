"""Delivery to the core order system: signed webhooks (retries, dead letter, dedupe) and the
consumer-group reader with re-claim of a crashed consumer's pending entries."""

from __future__ import annotations

import asyncio
import json
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from commerce.delivery import PurchaseEvent, StreamConsumer
from commerce.orders import ReferenceOrderSystem, fails
from commerce.webhooks import EVENT_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from tests.support.loopback import serving
from tests.support.waiting import eventually

# Against a single Valkey and a Valkey Cluster (tests/conftest.py, "Store kinds").
pytestmark = pytest.mark.stores("single", "cluster")

SECRET = "hook-secret-" + "h" * 32


class Receiver:
    """An order system's webhook endpoint on loopback that dedupes by event id."""

    def __init__(self) -> None:
        self.attempts: Counter[str] = Counter()
        self.accepted: dict[str, dict[str, Any]] = {}
        self.duplicates = 0
        self.bad_signatures = 0
        self.changed = asyncio.Condition()
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not verify(SECRET, body, request.headers.get(SIGNATURE_HEADER, "")):
            self.bad_signatures += 1
            return web.Response(status=401)
        assert request.headers[TIMESTAMP_HEADER].isdigit()
        doc = json.loads(body)
        event_id = request.headers[EVENT_ID_HEADER]
        assert event_id == doc["event_id"]
        self.attempts[event_id] += 1
        user = doc["data"]["user_id"]
        if user == "doomed" or (user == "flaky" and self.attempts[event_id] <= 2):
            return web.Response(status=500)
        if user == "slow" and self.attempts[event_id] == 1:
            await asyncio.sleep(1.0)  # longer than the sender's timeout: it will resend
        async with self.changed:
            if event_id in self.accepted:
                self.duplicates += 1
            self.accepted[event_id] = doc
            self.changed.notify_all()
        return web.Response(status=204)

    async def wait_accepted(self, count: int) -> None:
        async with asyncio.timeout(15), self.changed:
            await self.changed.wait_for(lambda: len(self.accepted) >= count)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hooks", rec.handle)
    async with serving(app) as url:
        rec.url = url + "/hooks"
        yield rec


async def test_signed_webhooks_retry_dead_letter_and_dedupe(
    make_shop: Any, receiver: Receiver
) -> None:
    shop = await make_shop(
        nodes=2, webhook_url=receiver.url, webhook_secret=SECRET, webhook_max_attempts=3,
        webhook_backoff_s=0.02, webhook_timeout_s=0.3,
    )  # fmt: skip
    sale = await shop.start_sale(quantity=10)
    users = ["normal", "flaky", "slow", "doomed"]
    for user in users:
        status, _ = await shop.reserve(sale["sale_id"], user)
        assert status == 201
    await receiver.wait_accepted(3)
    redis = shop.nodes[0].node.redis
    dead = await redis.xread({"live:purchases:dead": "0-0"}, block=10_000)
    (_, entries), *_ = dead
    assert len(entries) == 1
    fields = entries[0][1]
    assert json.loads(fields[b"data"])["user_id"] == "doomed"
    assert fields[b"attempts"] == b"3" and fields[b"error"] == b"HTTP 500"
    doomed_id = fields[b"event_id"].decode()
    assert receiver.attempts[doomed_id] == 3
    accepted_users = sorted(d["data"]["user_id"] for d in receiver.accepted.values())
    assert accepted_users == ["flaky", "normal", "slow"]
    assert receiver.bad_signatures == 0
    flaky = next(k for k, d in receiver.accepted.items() if d["data"]["user_id"] == "flaky")
    assert receiver.attempts[flaky] == 3
    # The slow receiver saw the same event twice and kept one.
    slow = next(k for k, d in receiver.accepted.items() if d["data"]["user_id"] == "slow")
    assert receiver.attempts[slow] == 2
    async with asyncio.timeout(5), receiver.changed:
        await receiver.changed.wait_for(lambda: receiver.duplicates >= 1)
    assert receiver.duplicates == 1 and len(receiver.accepted) == 3


async def test_reference_order_system_reclaims_and_settles_everything(make_shop: Any) -> None:
    shop = await make_shop(commerce_user_rate=1000)
    sale = await shop.start_sale(quantity=40, per_user_limit=1)
    reserved = []
    for i in range(30):
        status, body = await shop.reserve(sale["sale_id"], f"buyer{i}")
        assert status == 201
        reserved.append(body["reservation_id"])
    redis = shop.nodes[0].node.redis
    # On a cluster the events reach the purchase stream through the sales' outboxes' relay.
    await eventually(lambda: redis.xlen("live:purchases"), lambda n: n >= 30)

    # A consumer takes a batch and dies before acknowledging it.
    async def crash(event: PurchaseEvent) -> bool:
        raise RuntimeError("order system crashed")

    crashed = StreamConsumer(redis, "live:purchases", "orders", "dead-worker", crash, batch=10)
    assert await crashed.poll(block_ms=0) == 0
    pending = await redis.xpending("live:purchases", "orders")
    assert pending["pending"] == 10

    token = shop.tokens.issue(user="orders", role="orders")
    async with aiohttp.ClientSession() as session:
        orders = ReferenceOrderSystem(
            redis, session, stream="live:purchases", base_url=shop.url, token=token,
            failure_rate=0.3, consumer="worker-2", claim_idle_ms=0,
        )  # fmt: skip
        async with asyncio.timeout(20):
            while orders.confirmed + orders.cancelled < 30:
                await orders.consumer.poll(block_ms=200)
    assert (await redis.xpending("live:purchases", "orders"))["pending"] == 0
    expected_cancel = {rid for rid in reserved if fails(rid, 0.3)}
    assert orders.cancelled == len(expected_cancel) and 0 < orders.cancelled < 30
    entries = await eventually(lambda: redis.xrange("live:purchases"), lambda e: len(e) >= 60)
    outcomes: dict[str, list[str]] = defaultdict(list)
    for _, f in entries:
        data = json.loads(f[b"data"])
        outcomes[data["reservation_id"]].append(f[b"type"].decode())
    for rid in reserved:
        settle = "purchase.cancelled" if rid in expected_cancel else "purchase.confirmed"
        assert outcomes[rid] == ["purchase.reserved", settle]
