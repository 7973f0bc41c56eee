"""Cascade with media workers on both nodes: the origin's worker serves the edge's upstream, the
edge's relay feeds the edge's workers."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import aiohttp
import pytest
import redis.asyncio as aioredis

from core.auth import TokenAuthority
from loadtest.report.scrape import metric
from tests.conftest import NodeFactory
from tests.support.peers import Host, Viewer
from tests.support.waiting import eventually
from tests.support.whip_whep import delete, whep, whip

FAST = {"node_heartbeat_s": 0.2, "node_ttl_s": 1.0}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_edge_viewers_on_workers_of_an_edge_pulling_from_a_worker_of_the_origin(
    start_node: NodeFactory,
    redis: aioredis.Redis,
    http: aiohttp.ClientSession,
    tokens: TokenAuthority,
) -> None:
    origin = await start_node(node_id="origin", role="origin", media_workers=1, **FAST)
    edge = await start_node(
        node_id="edge-eu",
        role="edge",
        region="eu",
        origin_url=origin.url,
        edge_upstream_grace_s=0.5,
        media_workers=2,
        **FAST,
    )
    await origin.node.rooms.create(title="t", owner="h", room_id="r1")
    host_token = tokens.issue(user="h", role="host", rooms=["r1"])
    viewer_token = tokens.issue(user="v", role="viewer", rooms=["r1"])
    host, viewers = Host(), [Viewer(), Viewer()]
    try:
        async with asyncio.timeout(25):
            await whip(http, origin.url, "r1", host_token, host)
            locations = [await whep(http, edge.url, "r1", viewer_token, v) for v in viewers]
            for v in viewers:
                await v.progress.until(lambda v=v: len(v.counters) >= 30)  # type: ignore[misc]
                assert all(b == a + 1 for a, b in itertools.pairwise(v.counters[:30]))
            assert await metric(http, edge.url, "live_edge_upstreams") == 1
            assert await metric(http, origin.url, "live_media_viewers") == 1
            for worker in ("0", "1"):
                viewers_there = await metric(
                    http, edge.url, f'live_media_worker_viewers{{worker="{worker}"}}'
                )
                assert viewers_there == 1
            for loc in locations:
                assert await delete(http, loc, viewer_token) == 200
            await eventually(
                lambda: metric(http, origin.url, "live_media_viewers"), lambda v: v == 0
            )
    finally:
        for v in viewers:
            await v.close()
        await host.close()
