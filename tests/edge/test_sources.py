"""Room sources in Redis: one holder per room, released only by the attempt that claimed it, kept
alive by its node's keeper and gone when the keeper stops or the node dies (TTL)."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from edge.sources import RoomSources, Source, source_key
from tests.support.waiting import eventually


def sources(redis: aioredis.Redis, node_id: str, ttl_s: float = 3.0) -> RoomSources:
    return RoomSources(
        redis,
        node_id=node_id,
        url=lambda: f"http://127.0.0.1:1/{node_id}",
        heartbeat_s=ttl_s / 5,
        ttl_s=ttl_s,
    )


async def test_one_holder_per_room_released_only_by_its_attempt(redis: aioredis.Redis) -> None:
    a, b = sources(redis, "a"), sources(redis, "b")
    assert await a.get("r1") is None
    assert await a.claim("r1", "t1") is None
    held = Source("a", "http://127.0.0.1:1/a")
    assert await b.get("r1") == held
    assert await b.claim("r1", "t2") == held  # another node: refused, told who
    assert 0 < await redis.pttl(source_key("r1")) <= 3000
    await b.release("r1", "t2")
    await a.release("r1", "t-old")  # an older attempt of the holder's node
    assert await b.get("r1") == held
    # The holder's node again with a new attempt (its last one's key outlived a restart).
    assert await a.claim("r1", "t3") is None
    await a.release("r1", "t1")
    assert await b.get("r1") == held
    await a.release("r1", "t3")
    assert await b.get("r1") is None and a.held == {}
    assert await b.claim("r1", "t4") is None


async def test_the_keeper_keeps_a_claim_past_its_ttl_and_drops_it_on_stop(
    redis: aioredis.Redis,
) -> None:
    a = sources(redis, "a", ttl_s=0.5)
    await a.start()
    try:
        assert await a.claim("r1", "t1") is None
        await asyncio.sleep(1.2)  # more than twice the TTL: only refreshes keep it
        assert await a.get("r1") is not None
    finally:
        await a.stop()
    assert await a.get("r1") is None


async def test_a_claim_nobody_refreshes_expires(redis: aioredis.Redis) -> None:
    a = sources(redis, "a", ttl_s=0.3)  # never started: like a node that died
    assert await a.claim("r1", "t1") is None
    await eventually(lambda: a.get("r1"), lambda s: s is None, within=3)
