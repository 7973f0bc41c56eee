"""Two nodes sharing one Valkey: messages, bans, mutes, likes and viewer counts cross nodes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from devtools.valkey_cluster import ValkeyCluster
from tests.conftest import ClientFactory, NodeFactory, RunningNode

# Against a single Valkey and a Valkey Cluster (tests/conftest.py, "Store kinds").
pytestmark = pytest.mark.stores("single", "cluster")


@pytest.fixture
async def nodes(start_node: NodeFactory) -> tuple[RunningNode, RunningNode]:
    a = await start_node()
    b = await start_node()
    await a.node.rooms.create(title="Shared room", owner="host", room_id="r1")
    return a, b


@pytest.fixture
async def masters(
    store: str, request: pytest.FixtureRequest
) -> AsyncIterator[list[aioredis.Redis]]:
    """A plain client of each master of the test's store (one for a single Valkey)."""
    if store == "cluster":
        cluster: ValkeyCluster = request.getfixturevalue("cluster_valkey")
        clients = [cluster.client(i) for i in range(cluster.masters)]
    else:
        clients = [aioredis.Redis.from_url(request.getfixturevalue("single_valkey_url"))]
    yield clients
    for client in clients:
        await client.aclose()


async def test_a_rooms_traffic_goes_through_its_shard_channel_only(
    nodes: tuple[RunningNode, RunningNode],
    connect: ClientFactory,
    masters: list[aioredis.Redis],
) -> None:
    a, b = nodes
    sender = await connect(a.url, "alice")
    receiver = await connect(b.url, "bob")
    await sender.join("r1")
    await receiver.join("r1")
    ack = await sender.call("chat", {"room": "r1", "text": "sharded"})
    await receiver.wait_for("chat", lambda m: m["id"] == ack["id"])
    # SSUBSCRIBE on the master of the room's slot (`{room:r1}`), nowhere else; no plain channel
    # (a PUBLISH on a cluster reaches every node of it).
    shard = [await m.pubsub_shardchannels("live:*") for m in masters]
    assert sorted(c for channels in shard for c in channels) == [b"live:{room:r1}:bus"]
    (holder,) = [m for m, channels in zip(masters, shard, strict=True) if channels]
    assert await holder.pubsub_shardnumsub("live:{room:r1}:bus") == [(b"live:{room:r1}:bus", 2)]
    for m in masters:
        assert not [c for c in await m.pubsub_channels("live:*") if b"room" in c]


async def test_message_on_a_reaches_client_on_b(
    nodes: tuple[RunningNode, RunningNode], connect: ClientFactory
) -> None:
    a, b = nodes
    sender = await connect(a.url, "alice")
    receiver = await connect(b.url, "bob")
    await sender.join("r1")
    await receiver.join("r1")
    ack = await sender.call("chat", {"room": "r1", "text": "across nodes"})
    got = await receiver.wait_for("chat", lambda m: m["id"] == ack["id"])
    assert got["text"] == "across nodes"
    # The sender's own node delivers once, not once locally and again from the bus.
    reply = await receiver.call("chat", {"room": "r1", "text": "and back"})
    await sender.wait_for("chat", lambda m: m["id"] == reply["id"])
    assert [m["id"] for m in sender.events["chat"]].count(ack["id"]) == 1


async def test_ban_on_a_disconnects_socket_on_b(
    nodes: tuple[RunningNode, RunningNode], connect: ClientFactory
) -> None:
    a, b = nodes
    moderator = await connect(a.url, "mia", role="moderator", rooms=["r1"])
    target = await connect(b.url, "troll")
    bystander = await connect(b.url, "bob")
    for client in (moderator, target, bystander):
        await client.join("r1")
    assert (await moderator.call("mod", {"room": "r1", "action": "ban", "user_id": "troll"}))["ok"]
    await target.wait_for("banned")
    await target.disconnected.wait()
    assert not bystander.disconnected.is_set()
    retry = await connect(b.url, "troll")
    assert (await retry.call("join", {"room": "r1"}))["error"] == "banned"


async def test_mute_on_a_is_enforced_on_b(
    nodes: tuple[RunningNode, RunningNode], connect: ClientFactory
) -> None:
    a, b = nodes
    moderator = await connect(a.url, "mia", role="moderator", rooms=["r1"])
    target = await connect(b.url, "loud")
    await moderator.join("r1")
    await target.join("r1")
    assert (await moderator.call("mod", {"room": "r1", "action": "mute", "user_id": "loud"}))["ok"]
    await target.wait_for("muted")
    assert (await target.call("chat", {"room": "r1", "text": "hello"}))["error"] == "muted"


async def test_delete_and_held_queue_cross_nodes(
    nodes: tuple[RunningNode, RunningNode], connect: ClientFactory
) -> None:
    a, b = nodes
    moderator = await connect(a.url, "mia", role="moderator", rooms=["r1"])
    viewer = await connect(b.url, "bob")
    await moderator.join("r1")
    await viewer.join("r1")
    sent = await viewer.call("chat", {"room": "r1", "text": "oops"})
    assert (
        await moderator.call("mod", {"room": "r1", "action": "delete", "message_id": sent["id"]})
    )["ok"]
    await viewer.wait_for("deleted", lambda d: d["message_id"] == sent["id"])
    # A term blocked through node A holds messages sent through node B.
    await moderator.call("mod", {"room": "r1", "action": "block_term", "term": "spam"})
    held = await viewer.call("chat", {"room": "r1", "text": "spam spam"})
    assert held["held"] is True
    await moderator.wait_for("held", lambda d: d["message"]["id"] == held["id"])


async def test_likes_and_viewers_are_counted_across_nodes(
    nodes: tuple[RunningNode, RunningNode], connect: ClientFactory
) -> None:
    a, b = nodes
    on_a = await connect(a.url, "alice")
    on_b = await connect(b.url, "bob")
    await on_a.join("r1")
    await on_b.join("r1")
    await on_a.wait_for("viewers", lambda d: d["count"] == 2)
    await on_b.wait_for("viewers", lambda d: d["count"] == 2)
    await on_a.call("like", {"room": "r1", "count": 3})
    await on_b.call("like", {"room": "r1", "count": 4})
    await on_a.wait_for("likes", lambda d: d["total"] == 7)
    await on_b.wait_for("likes", lambda d: d["total"] == 7)
