"""Node registry against the real Valkey: heartbeats, TTL expiry, drain orders, leaving."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from edge.registry import INDEX, NodeRecord, NodeRegistry, record_key
from tests.support.waiting import eventually

# Against a single Valkey and a Valkey Cluster (tests/conftest.py, "Store kinds").
pytestmark = pytest.mark.stores("single", "cluster")


def registry(redis: aioredis.Redis, node_id: str, **kw: object) -> NodeRegistry:
    values: dict[str, object] = {
        "role": "edge",
        "region": "eu",
        "capacity": 10,
        "heartbeat_s": 0.1,
        "ttl_s": 0.5,
        **kw,
    }
    url = f"http://127.0.0.1:1/{node_id}"
    return NodeRegistry(redis, node_id=node_id, url=lambda: url, **values)  # type: ignore[arg-type]


async def ids(reg: NodeRegistry) -> list[str]:
    return [n.node_id for n in await reg.nodes()]


async def test_heartbeat_writes_the_record_with_a_ttl(redis: aioredis.Redis) -> None:
    reg = registry(redis, "e1")
    reg.count_viewers = lambda: 4
    reg.count_sockets = lambda: 7
    assert await reg.beat()
    [record] = await reg.nodes()
    assert record == NodeRecord(
        node_id="e1",
        role="edge",
        region="eu",
        url="http://127.0.0.1:1/e1",
        viewers=4,
        sockets=7,
        capacity=10,
        draining=False,
        started_at=reg.started_at,
        ts=record.ts,
    )
    assert record.load == 0.4 and record.accepts_viewers and record.admitting
    ttl = await redis.pttl(record_key("e1"))
    assert 0 < ttl <= 500
    # Its measured load refuses viewers: the record says so, and it takes none (below capacity).
    reg.admitting = lambda: False
    assert await reg.beat()
    [record] = await reg.nodes()
    assert not record.admitting and not record.accepts_viewers and record.load == 0.4


async def test_no_beat_before_the_url_is_known(redis: aioredis.Redis) -> None:
    reg = NodeRegistry(redis, node_id="e1", role="edge", region="eu", capacity=1, url=lambda: None)
    assert not await reg.beat()
    assert await reg.nodes() == []


async def test_a_silent_node_drops_out_within_its_ttl(redis: aioredis.Redis) -> None:
    alive, dead = registry(redis, "alive"), registry(redis, "dead")
    await alive.start()
    try:
        await dead.beat()  # one beat, then silence: as if the process was killed
        assert await eventually(lambda: ids(alive), lambda v: v == ["alive", "dead"])
        await eventually(lambda: ids(alive), lambda v: v == ["alive"], within=2.0)
        # The expired id was pruned from the index on the way.
        assert await redis.smembers(INDEX) == {b"alive"}
    finally:
        await alive.stop()


async def test_leaving_removes_the_node_at_once(redis: aioredis.Redis) -> None:
    reg = registry(redis, "e1", ttl_s=30.0)
    await reg.start()
    await eventually(lambda: ids(reg), lambda v: v == ["e1"])
    await reg.stop()
    assert await reg.nodes() == []


async def test_operator_drain_sticks_across_beats_until_resumed(redis: aioredis.Redis) -> None:
    reg, admin = registry(redis, "e1"), registry(redis, "admin")
    await reg.start()
    try:
        await eventually(lambda: ids(admin), lambda v: v == ["e1"])
        assert not await admin.order_drain("nope")
        assert await admin.order_drain("e1")
        # Visible at once, and the node reads the order back at its next beat.
        [record] = await admin.nodes()
        assert record.draining and not record.accepts_viewers
        await eventually(lambda: reg.draining)
        reg.wake()
        await eventually(lambda: reg.beats, lambda n: n >= 3)
        assert (await admin.nodes())[0].draining
        assert await admin.order_drain("e1", drain=False)
        await eventually(admin.nodes, lambda ns: not ns[0].draining)
        assert not reg.draining
    finally:
        await reg.stop()


async def test_local_drain_is_published_immediately(redis: aioredis.Redis) -> None:
    reg = registry(redis, "e1", heartbeat_s=60.0)
    await reg.beat()
    await reg.drain()
    [record] = await reg.nodes()
    assert record.draining


async def test_full_node_does_not_accept_viewers(redis: aioredis.Redis) -> None:
    reg = registry(redis, "e1", capacity=2)
    reg.count_viewers = lambda: 2
    await reg.beat()
    [record] = await reg.nodes()
    assert record.load == 1.0 and not record.accepts_viewers
