"""Any node serves any room: a host publishes on one node of role `all`; viewers on another such
node, and on an edge whose configured origin is that other node, pull the room from the node that
holds the host (its source in Redis). One host session per room across the nodes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
import redis.asyncio as aioredis

from core.auth import TokenAuthority
from edge.sources import source_key
from live.app import RunningNode
from loadtest.report.scrape import metric
from tests.conftest import NodeFactory
from tests.support.peers import Host, Viewer
from tests.support.waiting import eventually
from tests.support.whip_whep import HttpError, delete, whep, whip

FAST = {"node_heartbeat_s": 0.2, "node_ttl_s": 1.0, "edge_upstream_grace_s": 0.5}
ROOM = "r1"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _pair(start_node: NodeFactory) -> tuple[RunningNode, RunningNode]:
    a = await start_node(node_id="node-a", role="all", region="na", **FAST)
    b = await start_node(node_id="node-b", role="all", region="na", **FAST)
    await a.node.rooms.create(title="t", owner="h", room_id=ROOM)
    # Both in the registry: a puller's node token is exempt from WHEP limits only when listed.
    await eventually(a.node.registry.nodes, lambda ns: len(ns) == 2)
    return a, b


async def _source(redis: aioredis.Redis) -> dict[bytes, bytes]:
    found: dict[bytes, bytes] = await redis.hgetall(source_key(ROOM))
    return found


async def test_a_room_published_on_one_node_is_watched_on_another_and_on_an_edge(
    start_node: NodeFactory,
    redis: aioredis.Redis,
    http: aiohttp.ClientSession,
    tokens: TokenAuthority,
) -> None:
    a, b = await _pair(start_node)
    edge = await start_node(node_id="edge-eu", role="edge", region="eu", origin_url=a.url, **FAST)
    host_token = tokens.issue(user="h", role="host", rooms=[ROOM])
    viewer_token = tokens.issue(user="v", role="viewer", rooms=[ROOM])
    host, second = Host(), Host()
    on_a, on_edge = Viewer(), Viewer()
    try:
        async with asyncio.timeout(30):
            location = await whip(http, b.url, ROOM, host_token, host)
            source = await _source(redis)
            assert source[b"node_id"] == b"node-b" and source[b"url"] == b.url.encode()

            # A second WHIP, on any node, is told where the room is live.
            for node in (a, b):
                with pytest.raises(HttpError) as refused:
                    await whip(http, node.url, ROOM, host_token, second)
                assert refused.value.status == 409
                assert '"already_live"' in refused.value.body
                assert '"node_id": "node-b"' in refused.value.body
                assert b.url in refused.value.body
                await second.close()
                second = Host()

            await whep(http, a.url, ROOM, viewer_token, on_a)
            await whep(http, edge.url, ROOM, viewer_token, on_edge)
            for v in (on_a, on_edge):
                await v.progress.until(lambda v=v: len(v.counters) >= 30)  # type: ignore[misc]
            # One pull from A and one from the edge, both from B, the source (the edge goes to
            # the source directly rather than through its configured origin).
            assert await metric(http, a.url, "live_edge_upstreams") == 1
            assert await metric(http, edge.url, "live_edge_upstreams") == 1
            assert await metric(http, b.url, "live_edge_upstreams") == 0
            assert await metric(http, b.url, "live_media_viewers") == 2

            # The key stays while the host publishes (refreshed past its TTL of 1 s).
            await asyncio.sleep(1.5)
            assert (await _source(redis))[b"node_id"] == b"node-b"

            assert await delete(http, location, host_token) == 200
            await eventually(lambda: _source(redis), lambda s: s == {})
    finally:
        for peer in (on_a, on_edge, host, second):
            await peer.close()


async def test_a_viewer_waiting_on_another_node_gets_the_host_who_publishes_later(
    start_node: NodeFactory,
    redis: aioredis.Redis,
    http: aiohttp.ClientSession,
    tokens: TokenAuthority,
) -> None:
    a, b = await _pair(start_node)
    host_token = tokens.issue(user="h", role="host", rooms=[ROOM])
    viewer_token = tokens.issue(user="v", role="viewer", rooms=[ROOM])
    host, early = Host(), Viewer()
    try:
        async with asyncio.timeout(30):
            await whep(http, a.url, ROOM, viewer_token, early)  # nobody publishes yet
            await whip(http, b.url, ROOM, host_token, host)
            await early.progress.until(lambda: len(early.counters) >= 30)
            assert await metric(http, a.url, "live_edge_upstreams") == 1
    finally:
        await early.close()
        await host.close()


async def test_the_host_moving_to_the_pulling_node_replaces_its_upstream(
    start_node: NodeFactory,
    redis: aioredis.Redis,
    http: aiohttp.ClientSession,
    tokens: TokenAuthority,
) -> None:
    a, b = await _pair(start_node)
    host_token = tokens.issue(user="h", role="host", rooms=[ROOM])
    viewer_token = tokens.issue(user="v", role="viewer", rooms=[ROOM])
    first, moved, viewer = Host(), Host(start=700), Viewer()
    try:
        async with asyncio.timeout(30):
            location = await whip(http, b.url, ROOM, host_token, first)
            await whep(http, a.url, ROOM, viewer_token, viewer)
            await viewer.progress.until(lambda: len(viewer.counters) >= 10)
            assert await delete(http, location, host_token) == 200
            await eventually(lambda: _source(redis), lambda s: s == {})
            # The host comes back on A, which was pulling the room from B (counters 700 on: the
            # first host sends far fewer frames than that here).
            await whip(http, a.url, ROOM, host_token, moved)
            assert (await _source(redis))[b"node_id"] == b"node-a"
            await viewer.progress.until(lambda: viewer.counters[-1] >= 710)
            await eventually(lambda: metric(http, a.url, "live_edge_upstreams"), lambda v: v == 0)
    finally:
        for peer in (viewer, first, moved):
            await peer.close()
