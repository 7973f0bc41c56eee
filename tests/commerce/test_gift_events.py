"""Gifts over Socket.IO across two nodes: acks, the room's `gift` events combined into combos at
the room's bounded rate, the `leaderboard` event, refusals."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from tests.conftest import ClientFactory, NodeFactory
from tests.support.waiting import eventually

pytestmark = pytest.mark.stores("single", "cluster")


async def test_gifts_are_acked_combined_and_ranked(
    start_node: NodeFactory, connect: ClientFactory
) -> None:
    a = await start_node(gifts_room_events_per_s=1)
    b = await start_node(gifts_room_events_per_s=1)
    await a.node.rooms.create(title="Gifts", owner="host", room_id="g1")
    await a.node.rooms.set_live("g1", True)  # a show starts
    await a.node.commerce.credit(
        "alice", key="topup-alice", amount=20, reason="", reference="", by="test", seller=""
    )
    alice = await connect(a.url, "alice", rooms=["g1"])
    bob = await connect(b.url, "bob", rooms=["g1"])
    await alice.join("g1")
    await bob.join("g1")

    # 8 at once: below the default gift rate per user (10/s).
    acks = await asyncio.gather(*(
        alice.call("gift", {"room": "g1", "gift_id": "rose", "count": 1, "key": f"rose-key-{i}"})
        for i in range(8)
    ))  # fmt: skip
    assert all(ack["ok"] for ack in acks), acks
    assert sorted(ack["balance"] for ack in acks) == list(range(12, 20))
    replay = await alice.call(
        "gift", {"room": "g1", "gift_id": "rose", "count": 1, "key": "rose-key-0"}
    )
    assert replay["ok"] and replay["replayed"] and replay["entry_id"] == acks[0]["entry_id"]

    # One event a second in the room: the burst arrives as a combo, not as 8 events.
    last = await bob.wait_for("gift", lambda g: g["combo"] == 8, within=10)
    events = bob.events["gift"]
    assert sum(g["count"] for g in events) == 8 and len(events) < 8
    assert last["sender"] == {"id": "alice", "name": "Alice"} and last["gift_id"] == "rose"
    assert last["tier"] == 1 and last["animation"] == "float"
    board = await bob.wait_for(
        "leaderboard", lambda d: d["all"] == [{"user_id": "alice", "credits": 8}], within=10
    )
    assert board["room"] == "g1" and board["show_id"] and board["show"] == board["all"]

    # The next show ranks from zero; all time keeps counting.
    await a.node.rooms.set_live("g1", False)
    await a.node.rooms.set_live("g1", True)
    ack = await alice.call("gift", {"room": "g1", "gift_id": "rose", "key": "rose-next-show"})
    assert ack["ok"], ack
    url = f"{b.url}/api/rooms/g1/gifts/leaderboard"
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        now = await response.json()
    assert now["show_id"] != board["show_id"]
    assert now["all"] == [{"user_id": "alice", "credits": 9}]
    assert now["show"] == [{"user_id": "alice", "credits": 1}]

    poor = await alice.call(
        "gift", {"room": "g1", "gift_id": "castle", "count": 1, "key": "castle-key-1"}
    )
    assert poor == {"ok": False, "error": "insufficient_credits",
                    "detail": "the balance is 11 credits", "balance": 11}  # fmt: skip
    bad = await alice.call("gift", {"room": "g1", "gift_id": "rose", "count": "2", "key": "x"})
    assert not bad["ok"] and bad["error"] == "invalid_payload"
    assert "count" in bad["detail"] and "key" in bad["detail"]
    outside = await alice.call(
        "gift", {"room": "g2", "gift_id": "rose", "count": 1, "key": "rose-key-99"}
    )
    assert not outside["ok"] and outside["error"] == "not_joined"


async def test_gift_rate_per_user(start_node: NodeFactory, connect: ClientFactory) -> None:
    a = await start_node(gifts_user_rate=3)
    await a.node.rooms.create(title="Gifts", owner="host", room_id="g1")
    await a.node.commerce.credit(
        "carol", key="topup-carol", amount=20, reason="", reference="", by="test", seller=""
    )
    carol = await connect(a.url, "carol", rooms=["g1"])
    await carol.join("g1")
    acks: list[dict[str, Any]] = []
    for i in range(4):
        acks.append(await carol.call(
            "gift", {"room": "g1", "gift_id": "rose", "count": 1, "key": f"rate-key-{i}"}
        ))  # fmt: skip
    assert [ack["ok"] for ack in acks] == [True, True, True, False]
    assert acks[3]["error"] == "rate_limited"


async def test_a_crowd_of_senders_is_bounded_top_tier_first(
    start_node: NodeFactory, connect: ClientFactory
) -> None:
    a = await start_node(gifts_room_events_per_s=2)
    await a.node.rooms.create(title="Gifts", owner="host", room_id="g1")
    watcher = await connect(a.url, "watcher", rooms=["g1"])
    await watcher.join("g1")
    commerce = a.node.commerce
    senders = [f"fan{i}" for i in range(20)]
    for user in [*senders, "whale"]:
        await commerce.credit(
            user, key=f"topup-{user}", amount=1000, reason="", reference="", by="t", seller=""
        )

    async def send(user: str, gift_id: str) -> None:
        await commerce.send_gift(
            "g1", user=user, user_name=user, host="host", seller="", key=f"crowd-{user}",
            gift_id=gift_id, count=1,
        )  # fmt: skip

    await asyncio.gather(*(send(u, "rose") for u in senders))
    await send("whale", "castle")
    dropped = a.node.metrics.registry.get_sample_value("live_gifts_events_dropped_total")
    assert dropped == 0
    # 21 combos, 2 events a second, 3 s before a waiting combo goes stale: most are dropped,
    # the top tier goes out first among those waiting.
    await eventually(
        lambda: (
            len(watcher.events["gift"])
            + (a.node.metrics.registry.get_sample_value("live_gifts_events_dropped_total") or 0)
        ),
        lambda total: total == 21,
        within=10,
    )
    events = watcher.events["gift"]
    assert len(events) < 21
    assert "castle" in [g["gift_id"] for g in events[:2]]
    board = await commerce.leaderboard("g1")
    assert len(board["all"]) == 10 and board["all"][0] == {"user_id": "whale", "credits": 1000}
