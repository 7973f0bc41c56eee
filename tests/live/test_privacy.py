"""Privacy rights: a user who chatted in two rooms, bought and gifted is exported with all of it,
erased (text gone from every history while others' recovery still works, orders, events and
ledger kept under the pseudonym, nothing of the user left anywhere in the store), and a second
export finds nothing; who may ask; the stream rewrite keeps consumer groups; chat retention."""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from chat.privacy import ChatRetention
from commerce import keys
from core.auth import TokenAuthority
from core.privacy import StreamRewriter, pseudonymise
from core.store import room_key
from tests.conftest import ClientFactory, NodeFactory
from tests.support.shop import PRODUCT, ROOM, Shop
from tests.support.waiting import eventually

ROOM2 = "second"
PURCHASES = "live:purchases"


async def _dump(redis: aioredis.Redis, key: bytes) -> bytes:
    """Every byte a key holds (name, fields, values), to search for a user's traces."""
    kind = (await redis.type(key)).decode()
    parts: list[Any] = [key]
    if kind == "string":
        parts.append(await redis.get(key))
    elif kind == "hash":
        parts += [x for kv in (await redis.hgetall(key)).items() for x in kv]
    elif kind == "set":
        parts += list(await redis.smembers(key))
    elif kind == "zset":
        parts += [m for m, _ in await redis.zrange(key, 0, -1, withscores=True)]
    elif kind == "stream":
        for entry_id, fields in await redis.xrange(key):
            parts += [entry_id, *(x for kv in fields.items() for x in kv)]
        for group in await redis.xinfo_groups(key):
            parts.append(group["name"])
    return b"\n".join(p for p in parts if p is not None)


async def _traces(redis: aioredis.Redis, needle: bytes) -> list[bytes]:
    found = []
    async for key in redis.scan_iter(count=1000):
        if needle in (await _dump(redis, key)).lower():
            found.append(key)
    return found


@pytest.mark.stores("single", "cluster")
async def test_export_erase_and_nothing_left(
    start_node: NodeFactory, connect: ClientFactory, tokens: TokenAuthority,
    redis: aioredis.Redis,
) -> None:  # fmt: skip
    node = await start_node(commerce_sweep_interval_s=0.05)
    await node.node.rooms.create(title="Shop", owner="host", room_id=ROOM)
    await node.node.rooms.create(title="Second", owner="host", room_id=ROOM2)
    async with aiohttp.ClientSession() as http:
        shop = Shop([node], http, tokens)
        assert (await shop.call("POST", "/api/products", body=PRODUCT))[0] == 201

        # Chat in two rooms, between another viewer's messages; a moderator mutes the user.
        alice = await connect(node.url, "alice", rooms=[ROOM, ROOM2], name="Alice Liddell")
        bob = await connect(node.url, "bob", rooms=[ROOM, ROOM2])
        mod = await connect(node.url, "mo", role="moderator", rooms=[ROOM])
        for client in (alice, bob):
            await client.join(ROOM)
            await client.join(ROOM2)
        await mod.join(ROOM)
        b1 = (await bob.call("chat", {"room": ROOM, "text": "b1"}))["id"]
        a1 = (await alice.call("chat", {"room": ROOM, "text": "alice was here"}))["id"]
        b2 = (await bob.call("chat", {"room": ROOM, "text": "b2"}))["id"]
        a2 = (await alice.call("chat", {"room": ROOM2, "text": "alice again"}))["id"]
        ack = await mod.call("mod", {"room": ROOM, "action": "mute", "user_id": "alice",
                                     "seconds": 60})  # fmt: skip
        assert ack["ok"], ack

        # A hold (and its purchase.reserved), a top-up and a gift to the host.
        sale = await shop.start_sale()
        # A coupon claimed and taken by the hold.
        status, coupon = await shop.call(
            "POST", f"/api/rooms/{ROOM}/coupons", body={"percent_off": 10, "quota": 5}
        )
        assert status == 201, coupon
        cid = coupon["coupon_id"]
        status, claim = await shop.call(
            "POST", f"/api/rooms/{ROOM}/coupons/{cid}/claims", role="viewer", user="alice",
            headers={"Idempotency-Key": "claim-0001"},
        )  # fmt: skip
        assert status == 201, claim
        status, held = await shop.call(
            "POST", f"/api/rooms/{ROOM}/sales/{sale['sale_id']}/reservations", role="viewer",
            user="alice", body={"quantity": 1, "coupon_id": cid},
            headers={"Idempotency-Key": "buy-0001"},
        )  # fmt: skip
        assert status == 201, held
        # Its per-address rate window (10 s) is keyed by a hash: no address in the store.
        assert [k async for k in redis.scan_iter(match="live:{sale:*}:rl:ip:*")] != []
        found = await _traces(redis, b"127.0.0.1")  # the node registry holds nodes' URLs
        assert [k for k in found if not k.startswith(b"live:{nodes}:")] == []
        await node.node.commerce.credit(
            "alice", key="topup-0001", amount=50, reason="", reference="", by="test", seller=""
        )
        gift = await alice.call("gift", {"room": ROOM, "gift_id": "rose", "key": "rose-0001"})
        assert gift["ok"], gift
        # Events relayed (a cluster's outbox): an erasure does not race the relay here.
        await eventually(lambda: redis.xlen(PURCHASES), lambda n: n >= 4)
        # The order system's consumer group has read the stream and not acknowledged it all.
        await redis.xgroup_create(PURCHASES, "orders", "0")
        await redis.xreadgroup("orders", "o1", {PURCHASES: ">"}, count=2)
        groups_before = await redis.xinfo_groups(PURCHASES)

        async def request(method: str, user: str, role: str, shop_claim: str | None = None
                          ) -> tuple[int, Any]:  # fmt: skip
            token = tokens.issue(user="dpo", role=role, rooms=["*"], shop=shop_claim)
            url = f"{node.url}/api/privacy/users/{user}/{'export' if method == 'GET' else 'erase'}"
            async with http.request(method, url, headers={"Authorization": f"Bearer {token}"}) as r:
                return r.status, await r.json()

        # Who may ask: not a viewer, not a shop's order system; the platform's orders and privacy.
        assert (await request("GET", "alice", "viewer"))[0] == 403
        assert (await request("POST", "alice", "viewer"))[0] == 403
        assert (await request("POST", "alice", "orders", "shop-a"))[0] == 403
        assert (await request("GET", "alice", "orders"))[0] == 200
        # One erasure at a time (another node's holds the lock).
        await redis.set("live:privacy:lock", "other", px=5000)
        assert (await request("POST", "alice", "privacy"))[1]["error"] == "erasure_in_progress"
        await redis.delete("live:privacy:lock")

        # The shop desk has counted her hold (its consumer of the purchase stream).
        desk_buyers = room_key(ROOM, "desk", "buyers")
        await eventually(lambda: redis.sismember(desk_buyers, "alice"), lambda member: member)
        status, export = await request("GET", "alice", "privacy")
        assert status == 200, export
        data = export["data"]
        chat = data["chat"]["rooms"]
        assert [m["text"] for m in chat[ROOM]["messages"]] == ["alice was here"]
        assert [m["id"] for m in chat[ROOM2]["messages"]] == [a2]
        assert chat[ROOM]["muted_until"] and chat[ROOM]["name"] == "Alice Liddell"
        assert [(a["action"], a["user_id"]) for a in chat[ROOM]["audit"]] == [("mute", "alice")]
        commerce = data["commerce"]
        assert [r["reservation_id"] for r in commerce["reservations"]] == [held["reservation_id"]]
        assert {e["type"] for e in commerce["events"] if e["stream"] == PURCHASES} == {
            "purchase.reserved", "wallet.credited", "gift.sent", "coupon.claimed"
        }  # fmt: skip
        assert [e["e"]["kind"] if "e" in e else e["kind"] for e in commerce["ledger"]] == [
            "credit", "gift"
        ]  # fmt: skip
        assert commerce["wallet"]["balance"] == 50 - gift["amount"]
        assert len(commerce["gifts_received_by_hosts"]["host"]) == 1
        assert commerce["gifters"][ROOM]["all"] == gift["amount"]
        assert [c["claim_id"] for c in commerce["coupon_claims"]] == [claim["claim_id"]]
        assert commerce["desk_buyer_in_rooms"] == [ROOM]

        # The scan below sees every kind of key holding her (on a cluster, every master's).
        before = await _traces(redis, b"alice")
        assert keys.wallet("alice", "ledger").encode() in before
        assert room_key(ROOM2, "chat").encode() in before and PURCHASES.encode() in before

        status, erased = await request("POST", "alice", "privacy")
        assert status == 200, erased
        pseudo = erased["pseudonym"]
        assert re.fullmatch(r"anon-[0-9a-f]{16}", pseudo)
        assert erased["erased"]["chat"]["messages"] == 2
        assert erased["erased"]["commerce"]["reservations"] == 1
        # Bob's page drops the erased messages as after a moderator's delete.
        await bob.wait_for("deleted", lambda d: d["message_id"] == a1)
        await bob.wait_for("deleted", lambda d: d["message_id"] == a2)

        # Nothing of alice anywhere: no key name, field or value holds her id or her name.
        assert await _traces(redis, b"alice") == []
        # Another client resuming across the erased message gets the right neighbours.
        carol = await connect(node.url, "carol", rooms=[ROOM])
        assert [m["id"] for m in (await carol.join(ROOM, since=b1))["history"]] == [b2]
        assert [m["id"] for m in (await carol.join(ROOM, since=a1))["history"]] == [b2]
        # What must be kept is kept, under the pseudonym.
        reservation = json.loads(
            await redis.hget(keys.sale(sale["sale_id"], "res"), held["reservation_id"])
        )
        assert reservation["user_id"] == pseudo
        events = [json.loads(f[b"data"]) for _, f in await redis.xrange(PURCHASES)]
        assert sum(e.get("user_id") == pseudo for e in events) == len(
            [e for e in commerce["events"] if e["stream"] == PURCHASES]
        )
        claim_now = json.loads(
            await redis.hget(keys.coupon(ROOM, cid, "claims"), claim["claim_id"])
        )
        assert claim_now["user_id"] == pseudo
        ledger = await redis.xrange(keys.wallet(pseudo, "ledger"))
        assert [json.loads(f[b"e"])["user_id"] for _, f in ledger] == [pseudo, pseudo]
        assert int(await redis.hget(keys.wallet(pseudo, "w"), "balance")) == 50 - gift["amount"]
        ((_, earning),) = await redis.xrange(keys.wallet("host", "ledger"))
        assert json.loads(earning[b"e"])["source"].startswith(pseudo + "/")
        assert await redis.zscore(room_key(ROOM, "gifters:all"), pseudo) == gift["amount"]
        audit = await redis.xrange(room_key(ROOM, "audit"))
        assert json.loads(audit[0][1][b"a"])["user_id"] == pseudo
        # The consumer group survived the rewrite: same position, same pending entries.
        groups_after = await redis.xinfo_groups(PURCHASES)
        assert [(g["last-delivered-id"], g["pending"]) for g in groups_after] == [
            (g["last-delivered-id"], g["pending"]) for g in groups_before
        ]
        # The request is on record by pseudonym only.
        ((_, record),) = await redis.xrevrange("live:privacy:audit", count=1)
        assert json.loads(record[b"a"])["pseudonym"] == pseudo

        # Again: nothing personal left to export, nothing left to erase.
        status, again = await request("GET", "alice", "privacy")
        assert status == 200 and again["data"] == {}, again
        status, twice = await request("POST", "alice", "privacy")
        assert status == 200 and twice["pseudonym"] == pseudo
        assert all(n == 0 for part in twice["erased"].values() for n in part.values()), twice

        # The host, erased too: their room, product, earnings and the gift naming them.
        status, host_erased = await request("POST", "host", "privacy")
        assert status == 200, host_erased
        host = host_erased["pseudonym"]
        assert host_erased["erased"]["commerce"]["gifts_received"] == 1
        meta = await redis.hgetall(room_key(ROOM, "meta"))
        assert (meta[b"owner"], meta[b"seller"]) == (host.encode(), f"user:{host}".encode())
        assert await redis.hget(keys.product("mug"), "seller") == f"user:{host}".encode()
        created_by = await redis.hget(keys.coupon(ROOM, cid, "meta"), "created_by")
        assert created_by == host.encode()
        _, (_, gift_sent) = await redis.xrange(keys.wallet(pseudo, "ledger"))
        gift_entry = json.loads(gift_sent[b"e"])
        assert (gift_entry["host_id"], gift_entry["seller"]) == (host, f"user:{host}")
        assert await _traces(redis, b"user:host") == []
        assert await redis.xlen(keys.wallet(host, "ledger")) == 1

        async with http.get(f"{node.url}/metrics") as response:
            metrics = await response.text()
        assert 'live_privacy_requests_total{kind="erase"} 3.0' in metrics


async def test_stream_rewrite_keeps_ids_groups_and_pending(redis: aioredis.Redis) -> None:
    # Only fields holding user ids change: a user called "viewer" leaves roles alone.
    entry = {
        "user": {"id": "viewer", "name": "V", "role": "viewer"},
        "kind": "viewer",
        "seller": "user:viewer",
        "items": [{"host_id": "viewer", "host_name": "V"}],
    }
    assert pseudonymise(entry, "viewer", "anon-1") == {
        "user": {"id": "anon-1", "name": "anon-1", "role": "viewer"}, "kind": "viewer",
        "seller": "user:anon-1", "items": [{"host_id": "anon-1", "host_name": "anon-1"}],
    }  # fmt: skip
    for i in range(1, 7):
        await redis.xadd("s", {"f": f"v{i}"}, id=f"{i}-0")
    await redis.xgroup_create("s", "g", "0")
    await redis.xreadgroup("g", "c1", {"s": ">"}, count=4)
    await redis.xack("s", "g", "1-0")
    await redis.xdel("s", "6-0")
    rewriter = StreamRewriter(redis)
    assert await rewriter.rewrite("s", {"3-0": ["f", "X"], "2-0": []}) == 2
    assert [(i, f[b"f"]) for i, f in await redis.xrange("s")] == [
        (b"1-0", b"v1"), (b"3-0", b"X"), (b"4-0", b"v4"), (b"5-0", b"v5")
    ]  # fmt: skip
    info = await redis.xinfo_stream("s")
    assert info["last-generated-id"] == b"6-0" and info["entries-added"] == 6
    (group,) = await redis.xinfo_groups("s")
    assert group["last-delivered-id"] == b"4-0" and group["entries-read"] == 4
    pending = await redis.xpending_range("s", "g", "-", "+", 10)
    assert [(p["message_id"], p["consumer"]) for p in pending] == [(b"3-0", b"c1"), (b"4-0", b"c1")]
    assert (await redis.xreadgroup("g", "c1", {"s": ">"}))[0][1] == [(b"5-0", {b"f": b"v5"})]
    # Every entry dropped: the stream stays, with its last id (new ids stay above it).
    assert await rewriter.rewrite("s", {i: [] for i in ("1-0", "3-0", "4-0", "5-0")}) == 4
    assert await redis.xlen("s") == 0
    assert (await redis.xinfo_stream("s"))["last-generated-id"] == b"6-0"

    # A chunk at a time while the stream grows and loses its head (retention) meanwhile.
    for i in range(1, 301):
        await redis.xadd("t", {"f": str(i)}, id=f"{i}-1")
    rewriter.CHUNK = 7

    async def writer() -> None:
        for i in range(301, 401):
            await redis.xadd("t", {"f": str(i)}, id=f"{i}-1")
        await redis.xtrim("t", minid="51-1", approximate=False)

    results = await asyncio.gather(rewriter.rewrite("t", {"150-1": ["f", "X"]}), writer())
    assert results[0] == 1
    entries = [(i.decode(), f[b"f"].decode()) for i, f in await redis.xrange("t")]
    assert entries == [(f"{i}-1", "X" if i == 150 else str(i)) for i in range(51, 401)]
    assert [k async for k in redis.scan_iter(match="*rewrite*")] == []


async def test_chat_retention_drops_old_history_and_records(
    redis: aioredis.Redis, start_node: NodeFactory
) -> None:
    now = int(time.time() * 1000)
    old, new = now - 3 * 86_400_000, now - 60_000
    await redis.sadd("live:rooms", "r1")
    for key, field in ((room_key("r1", "chat"), "m"), (room_key("r1", "audit"), "a")):
        await redis.xadd(key, {field: "{}"}, id=f"{old}-0")
        await redis.xadd(key, {field: "{}"}, id=f"{new}-0")
    await redis.hset(room_key("r1", "held"), mapping={
        "h-old": json.dumps({"ts": old}), "h-new": json.dumps({"ts": new})
    })  # fmt: skip
    await redis.zadd(room_key("r1", "mutes"), {"over": now - 1, "on": now + 60_000})
    assert await ChatRetention(redis, 0).sweep_once(now) == 0  # 0 keeps everything

    # Every node sweeps on its own schedule (LIVE_PRIVACY_*).
    node = await start_node(privacy_chat_retention_days=2, privacy_retention_interval_s=0.05)

    async def dropped() -> str:
        async with aiohttp.ClientSession() as http, http.get(f"{node.url}/metrics") as response:
            return await response.text()

    await eventually(dropped, lambda text: "live_privacy_retention_dropped_total 4.0" in text)
    assert [i for i, _ in await redis.xrange(room_key("r1", "chat"))] == [f"{new}-0".encode()]
    assert [i for i, _ in await redis.xrange(room_key("r1", "audit"))] == [f"{new}-0".encode()]
    assert await redis.hkeys(room_key("r1", "held")) == [b"h-new"]
    assert await redis.zrange(room_key("r1", "mutes"), 0, -1) == [b"on"]
