"""Wallets and gifts over REST: top-ups, sends, refunds, replays, authorization, bad input."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from aiohttp import web

from commerce import keys
from commerce.orders import ReferenceOrderSystem
from commerce.wallet import Settlement
from commerce.webhooks import EVENT_ID_HEADER, SIGNATURE_HEADER, verify
from tests.support.loopback import serving
from tests.support.shop import ROOM, Shop
from tests.support.waiting import eventually

pytestmark = pytest.mark.stores("single", "cluster")


async def credit(shop: Shop, user: str, amount: int, key: str | None = None) -> tuple[int, Any]:
    return await shop.call(
        "POST", f"/api/wallets/{user}/credits", role="orders", user="orders",
        body={"amount": amount, "reason": "top-up", "reference": "order-1"},
        headers={"Idempotency-Key": key or uuid.uuid4().hex},
    )  # fmt: skip


async def gift(
    shop: Shop, user: str, gift_id: str = "heart", count: int = 1, key: str | None = None,
    node: int = 0,
) -> tuple[int, Any]:  # fmt: skip
    return await shop.call(
        "POST", f"/api/rooms/{ROOM}/gifts", role="viewer", user=user,
        body={"gift_id": gift_id, "count": count}, node=node,
        headers={"Idempotency-Key": key or uuid.uuid4().hex},
    )  # fmt: skip


async def events(shop: Shop, at_least: int) -> list[tuple[str, dict[str, Any]]]:
    entries = await eventually(
        lambda: shop.nodes[0].node.redis.xrange("live:purchases"),
        lambda got: len(got) >= at_least,
    )
    return [(f[b"type"].decode(), json.loads(f[b"data"])) for _, f in entries]


async def test_credit_gift_and_replay(make_shop: Any) -> None:
    shop = await make_shop()
    status, body = await credit(shop, "alice", 10, key="topup-0001")
    assert status == 201, body
    assert body["user_id"] == "alice" and body["balance"] == 10 and not body["replayed"]
    status, again = await credit(shop, "alice", 10, key="topup-0001")
    assert status == 201 and again["replayed"] and again["entry_id"] == body["entry_id"]
    assert again["balance"] == 10

    status, sent = await gift(shop, "alice", "heart", 2, key="gift-00001")
    assert status == 201, sent
    assert sent["balance"] == 4 and sent["count"] == 2 and sent["gift"]["price"] == 3
    # 30 % of 6 is 1.8: the platform's share is floored to 1, the host gets 5.
    assert sent["entry"]["platform_amount"] == 1 and sent["entry"]["host_amount"] == 5
    status, replay = await gift(shop, "alice", "heart", 2, key="gift-00001")
    assert status == 201 and replay["replayed"] and replay["entry_id"] == sent["entry_id"]

    status, poor = await gift(shop, "alice", "heart", 2)
    assert status == 402 and poor["error"] == "insufficient_credits" and poor["balance"] == 4

    status, mine = await shop.call("GET", "/api/wallet", role="viewer", user="alice")
    assert status == 200 and mine["balance"] == 4
    assert [e["kind"] for e in mine["entries"]] == ["gift", "credit"]
    _, host = await shop.call("GET", "/api/wallet", role="host", user="host")
    assert host["earned"] == 5 and host["platform_share"] == 1 and host["balance"] == 0

    got = await events(shop, 2)
    assert [t for t, _ in got] == ["wallet.credited", "gift.sent"]
    assert got[1][1]["event_id"] == f"wallet.alice.{sent['entry_id']}"
    assert got[1][1]["room_id"] == ROOM and got[1][1]["host_id"] == "host"

    status, board = await shop.call("GET", f"/api/rooms/{ROOM}/gifts/leaderboard")
    assert status == 200 and board["all"] == [{"user_id": "alice", "credits": 6}]


async def test_refunds(make_shop: Any) -> None:
    shop = await make_shop()
    _, top = await credit(shop, "bob", 20)
    _, sent = await gift(shop, "bob", "star", 1)
    assert sent["balance"] == 10

    async def refund(entry: str, key: str, role: str = "orders") -> tuple[int, Any]:
        return await shop.call(
            "POST", "/api/wallets/bob/refunds", role=role, user=role,
            body={"entry_id": entry, "reason": "chargeback"},
            headers={"Idempotency-Key": key},
        )  # fmt: skip

    status, back = await refund(sent["entry_id"], "refund-0001")
    assert status == 201, back
    assert back["balance"] == 20 and back["entry"]["refunds"] == sent["entry_id"]
    status, replay = await refund(sent["entry_id"], "refund-0001")
    assert status == 201 and replay["replayed"] and replay["entry_id"] == back["entry_id"]
    status, twice = await refund(sent["entry_id"], "refund-0002")
    assert status == 409 and twice["error"] == "already_refunded"

    host = await eventually(
        lambda: shop.call("GET", "/api/wallet", role="host", user="host"),
        lambda got: got[1]["earned"] == 0,
    )
    assert host[1]["platform_share"] == 0
    status, board = await shop.call("GET", f"/api/rooms/{ROOM}/gifts/leaderboard")
    assert board["all"] == [{"user_id": "bob", "credits": 0}]

    # The top-up is taken back only while the balance covers it.
    _, spent = await gift(shop, "bob", "star", 1)
    status, short = await refund(top["entry_id"], "refund-0003")
    assert status == 402 and short["error"] == "insufficient_credits"
    status, _ = await refund(spent["entry_id"], "refund-0004")
    assert status == 201
    status, taken = await refund(top["entry_id"], "refund-0005")
    assert status == 201 and taken["balance"] == 0
    status, bad = await refund(taken["entry_id"], "refund-0006")
    assert status == 409 and bad["error"] == "not_refundable"
    status, missing = await refund("1-0", "refund-0007")
    assert status == 404 and missing["error"] == "unknown_entry"

    kinds = [t for t, _ in await events(shop, 6)]
    assert kinds == [
        "wallet.credited",
        "gift.sent",
        "wallet.refunded",
        "gift.sent",
        "wallet.refunded",
        "wallet.refunded",
    ]


async def test_authorization(make_shop: Any) -> None:
    shop = await make_shop()
    status, body = await shop.call(
        "POST", "/api/wallets/alice/credits", role="viewer", user="alice",
        body={"amount": 5}, headers={"Idempotency-Key": "self-credit-1"},
    )  # fmt: skip
    assert status == 403 and body["error"] == "forbidden"
    status, body = await shop.call(
        "POST", "/api/wallets/alice/refunds", role="host", user="host",
        body={"entry_id": "1-0"}, headers={"Idempotency-Key": "host-refund-1"},
    )  # fmt: skip
    assert status == 403 and body["error"] == "forbidden"
    # An order system of another shop refunds none of this shop's entries.
    _, top = await credit(shop, "alice", 5)
    other = shop.tokens.issue(user="orders-b", role="orders", rooms=["*"], shop="shop-b")
    async with shop.http.post(
        f"{shop.url}/api/wallets/alice/refunds", json={"entry_id": top["entry_id"]},
        headers={"Authorization": f"Bearer {other}", "Idempotency-Key": "other-shop-1"},
    ) as response:  # fmt: skip
        assert response.status == 403 and (await response.json())["error"] == "not_owner"
    # A viewer of another room cannot gift here; the host does not gift to their own room.
    status, body = await shop.call(
        "POST", f"/api/rooms/{ROOM}/gifts", role="viewer", user="carol",
        body={"gift_id": "rose"}, headers={"Idempotency-Key": "k" * 8},
    )  # fmt: skip
    assert status == 201 or body["error"] == "insufficient_credits"
    status, body = await gift(shop, "host")
    assert status == 403 or body["error"] == "invalid_request"


async def test_bad_input(make_shop: Any) -> None:
    shop = await make_shop()
    status, body = await shop.call(
        "POST", "/api/wallets/alice/credits", role="orders", user="orders", body={"amount": 5}
    )
    assert status == 400 and body["error"] == "missing_idempotency_key"
    status, body = await credit(shop, "alice", 0)
    assert status == 400 and body["error"] == "invalid_request" and "amount" in body["detail"]
    status, body = await credit(shop, "al$ice", 5)
    assert status == 400 and "user id" in body["detail"]
    status, body = await gift(shop, "alice", "unicorn")
    assert status == 404 and body["error"] == "unknown_gift"
    status, body = await gift(shop, "alice", "rose", 0)
    assert status == 400 and "count" in body["detail"]
    status, body = await shop.call(
        "POST", f"/api/rooms/{ROOM}/gifts", role="viewer", user="alice",
        body={"gift_id": "rose", "count": "3"}, headers={"Idempotency-Key": "str-count-1"},
    )  # fmt: skip
    assert status == 400 and "count" in body["detail"]


async def test_catalogue_per_shop(make_shop: Any) -> None:
    shop = await make_shop()
    status, body = await shop.call("GET", "/api/gifts")
    assert status == 200 and {g["gift_id"] for g in body["gifts"]} >= {"rose", "heart", "castle"}
    token = shop.tokens.issue(user="owner", role="host", rooms=["*"], shop="shop-a")
    spec = {"gifts": [{"gift_id": "mug", "name": "Mug", "price": 7, "tier": 2,
                       "animation": "burst"}]}  # fmt: skip
    auth = {"Authorization": f"Bearer {token}"}
    async with shop.http.put(
        f"{shop.url}/api/shops/shop-b/gifts", json=spec, headers=auth
    ) as response:
        assert response.status == 403
    async with shop.http.put(
        f"{shop.url}/api/shops/shop-a/gifts", json=spec, headers=auth
    ) as response:
        assert response.status == 200
    status, body = await shop.call("GET", "/api/gifts?shop=shop-a")
    assert [g["gift_id"] for g in body["gifts"]] == ["mug"]


async def test_order_system_books_payouts_from_events(make_shop: Any) -> None:
    shop = await make_shop(gifts_platform_share_bps=2000)
    for user in ("ann", "ben"):
        await credit(shop, user, 100)
    _, g1 = await gift(shop, "ann", "star", 2)  # 20: platform 4, host 16
    await gift(shop, "ben", "heart", 3)  # 9: platform floor(1.8) = 1, host 8
    await shop.call(
        "POST", "/api/wallets/ann/refunds", role="orders", user="orders",
        body={"entry_id": g1["entry_id"]}, headers={"Idempotency-Key": "refund-ann-1"},
    )  # fmt: skip
    await events(shop, 5)
    token = shop.tokens.issue(user="orders", role="orders", rooms=["*"])
    orders = ReferenceOrderSystem(
        shop.nodes[0].node.redis, shop.http, stream="live:purchases", base_url=shop.url,
        token=token, claim_idle_ms=0,
    )  # fmt: skip
    async with asyncio.timeout(10):
        while orders.topups + orders.gifts + orders.refunds < 5:
            await orders.consumer.poll(block_ms=200)
    assert (orders.topups, orders.gifts, orders.refunds) == (2, 2, 1)
    assert orders.gift_credits == 9 and orders.earnings["host"] == 8 and orders.platform == 1
    _, host = await shop.call("GET", "/api/wallet", role="host", user="host")
    assert (host["earned"], host["platform_share"]) == (8, 1)


async def test_a_sweeper_settles_what_a_dead_request_left(make_shop: Any) -> None:
    shop = await make_shop(nodes=2)
    await credit(shop, "dan", 50)
    node = shop.nodes[0].node
    gift_spec = {"gift_id": "star", "name": "Star", "price": 10, "tier": 1}
    # The debit lands, the request dies before the host's leg (and, on a cluster, the event).
    applied = await node.commerce.wallets.gift(
        "dan", key="dead-request-1", host="host", room=ROOM, seller="", gift=gift_spec, count=2,
        settle=False,
    )  # fmt: skip
    assert applied.entry["balance"] == 30
    assert await node.redis.hlen(keys.wallet("dan", "pending")) == 1
    # Once its lease has run out a sweeper (on either node) settles it, once.
    host = await eventually(
        lambda: node.redis.hget(keys.wallet("host", "w"), "earned"), lambda got: got, within=15
    )
    assert int(host) == 14  # 30 % of 20 is 6 for the platform
    await eventually(lambda: node.redis.hlen(keys.wallet("dan", "pending")), lambda n: n == 0)
    got = await events(shop, 2)
    assert [t for t, _ in got] == ["wallet.credited", "gift.sent"]
    assert got[1][1]["entry_id"] == applied.entry["entry_id"]
    await eventually(lambda: node.redis.hexists(keys.WALLETS_PENDING, "dan"), lambda e: not e)
    assert int(await node.redis.hget(keys.wallet("host", "w"), "earned")) == 14
    _, board = await shop.call("GET", f"/api/rooms/{ROOM}/gifts/leaderboard")
    assert board["all"] == [{"user_id": "dan", "credits": 20}]


async def test_a_gift_settled_by_its_request_and_a_sweeper_counts_once(make_shop: Any) -> None:
    """A request that outlasts its lease settles while a sweeper settles the same entry: the
    host earns once and the leaderboards count the gift once."""
    shop = await make_shop(nodes=1)
    await credit(shop, "fay", 20)
    wallets = shop.nodes[0].node.commerce.wallets
    gift_spec = {"gift_id": "star", "name": "Star", "price": 10, "tier": 1}
    applied = await wallets.gift(
        "fay", key="settled-twice-1", host="host", room=ROOM, seller="", gift=gift_spec, count=1,
        settle=False,
    )  # fmt: skip
    leg = {"host": "host", "host_amount": 7, "platform_amount": 3}
    twice = Settlement("fay", applied.entry["entry_id"], leg, ROOM, "", None, None)
    await asyncio.gather(wallets.settle(twice), wallets.settle(twice))
    assert int(await shop.nodes[0].node.redis.hget(keys.wallet("host", "w"), "earned")) == 7
    _, board = await shop.call("GET", f"/api/rooms/{ROOM}/gifts/leaderboard")
    assert board["all"] == [{"user_id": "fay", "credits": 10}]


async def test_wallet_events_reach_the_webhook_signed(make_shop: Any) -> None:
    secret = "hook-secret-" + "g" * 32
    got: dict[str, dict[str, Any]] = {}
    changed = asyncio.Condition()

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        assert verify(secret, body, request.headers.get(SIGNATURE_HEADER, ""))
        doc = json.loads(body)
        assert request.headers[EVENT_ID_HEADER] == doc["event_id"]
        async with changed:
            got[doc["event_id"]] = doc
            changed.notify_all()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hooks", hook)
    async with serving(app) as url:
        shop = await make_shop(nodes=2, webhook_url=url + "/hooks", webhook_secret=secret)
        _, top = await credit(shop, "eve", 10)
        _, sent = await gift(shop, "eve", "heart", 1, node=1)
        await shop.call(
            "POST", "/api/wallets/eve/refunds", role="orders", user="orders",
            body={"entry_id": sent["entry_id"]}, headers={"Idempotency-Key": "refund-eve-1"},
        )  # fmt: skip
        async with asyncio.timeout(10), changed:
            await changed.wait_for(lambda: len(got) >= 3)
    kinds = sorted(d["type"] for d in got.values())
    assert kinds == ["gift.sent", "wallet.credited", "wallet.refunded"]
    assert got[f"wallet.eve.{top['entry_id']}"]["data"]["amount"] == 10
    assert got[f"wallet.eve.{sent['entry_id']}"]["data"]["host_amount"] == 3
