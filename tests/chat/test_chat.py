"""Join, chat, history recovery, likes and viewer counts through a real node and Valkey."""

from __future__ import annotations

import pytest

from tests.conftest import ClientFactory, RunningNode


async def test_message_reaches_everyone_in_the_room_and_is_stored(
    node: RunningNode, connect: ClientFactory
) -> None:
    alice = await connect(node.url, "alice")
    bob = await connect(node.url, "bob")
    outsider = await connect(node.url, "carol")
    await alice.join("r1")
    await bob.join("r1")
    await outsider.join("r2")

    ack = await alice.call("chat", {"room": "r1", "text": "  hello\x00 there\u202e  "})
    assert ack["ok"] is True
    got = await bob.wait_for("chat", lambda m: m["id"] == ack["id"])
    assert got["text"] == "hello there"
    assert got["user"] == {"id": "alice", "name": "Alice", "role": "viewer"}
    assert got["room"] == "r1"
    mine = await alice.wait_for("chat", lambda m: m["id"] == ack["id"])
    assert mine == got

    rejoin = await (await connect(node.url, "dave")).join("r1")
    assert [m["id"] for m in rejoin["history"]] == [ack["id"]]
    assert rejoin["state"]["title"] == "Test room"
    assert outsider.events["chat"] == []


@pytest.mark.stores("single", "cluster")
async def test_rejoin_with_since_returns_exactly_the_missed_messages(
    node: RunningNode, connect: ClientFactory
) -> None:
    sender = await connect(node.url, "host-1", role="host")
    viewer = await connect(node.url, "viewer-1")
    await sender.join("r1")
    await viewer.join("r1")
    seen = [
        (await sender.call("chat", {"room": "r1", "text": f"before {i}"}))["id"] for i in range(3)
    ]
    await viewer.wait_for("chat", lambda m: m["id"] == seen[-1])
    await viewer.close()

    missed = [
        (await sender.call("chat", {"room": "r1", "text": f"missed {i}"}))["id"] for i in range(5)
    ]

    back = await connect(node.url, "viewer-1")
    ack = await back.join("r1", since=seen[-1])
    assert [m["id"] for m in ack["history"]] == missed
    assert [m["text"] for m in ack["history"]] == [f"missed {i}" for i in range(5)]


async def test_likes_are_aggregated_not_fanned_out_one_by_one(
    node: RunningNode, connect: ClientFactory
) -> None:
    liker = await connect(node.url, "liker")
    watcher = await connect(node.url, "watcher")
    await liker.join("r1")
    await watcher.join("r1")
    # Within the per-socket burst (20 requests) and the per-user likes' (20).
    for _ in range(19):
        assert (await liker.call("like", {"room": "r1"}))["ok"]
    final = await watcher.wait_for("likes", lambda d: d["total"] == 19)
    assert final == {"room": "r1", "total": 19}
    # 19 likes in a few flush intervals: fewer emits than likes, totals only grow.
    totals = [d["total"] for d in watcher.events["likes"]]
    assert len(totals) < 19
    assert totals == sorted(totals)
    assert (await watcher.join("r1"))["state"]["likes"] == 19


async def test_viewer_count_follows_joins_and_leaves(
    node: RunningNode, connect: ClientFactory
) -> None:
    first = await connect(node.url, "v1")
    await first.join("r1")
    await first.wait_for("viewers", lambda d: d["count"] == 1)
    second = await connect(node.url, "v2")
    await second.join("r1")
    await first.wait_for("viewers", lambda d: d["count"] == 2)
    first.events["viewers"].clear()
    await second.close()
    await first.wait_for("viewers", lambda d: d["count"] == 1)


async def test_rate_limit_refuses_the_21st_message_in_the_window(
    node: RunningNode, connect: ClientFactory
) -> None:
    chatty = await connect(node.url, "chatty")
    await chatty.join("r1")
    for i in range(20):
        assert (await chatty.call("chat", {"room": "r1", "text": f"m{i}"}))["ok"]
    refused = await chatty.call("chat", {"room": "r1", "text": "one more"})
    assert refused["ok"] is False
    assert refused["error"] == "rate_limited"
    assert refused["until"] > 0
    # Another user is not affected by chatty's limit.
    calm = await connect(node.url, "calm")
    await calm.join("r1")
    assert (await calm.call("chat", {"room": "r1", "text": "hi"}))["ok"]
