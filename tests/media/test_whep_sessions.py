"""WHEP sessions per user per node: a few per token `sub`, unconnected ones freed, and the `node`
role's exemption only for nodes the registry knows."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from core.auth import TokenAuthority
from edge.registry import NodeRegistry
from live.app import RunningNode
from live.http.media import MEDIA
from loadtest.report.scrape import metric
from tests.conftest import NodeFactory
from tests.support.peers import Viewer, offer
from tests.support.waiting import eventually

ROOM = "r1"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def viewers() -> AsyncIterator[list[Viewer]]:
    made: list[Viewer] = []
    yield made
    for viewer in made:
        await viewer.close()


async def _node(start_node: NodeFactory, **settings: Any) -> RunningNode:
    running = await start_node(**settings)
    await running.node.rooms.create(title="Room", owner="host", room_id=ROOM)
    return running


async def _whep(
    http: aiohttp.ClientSession,
    running: RunningNode,
    token: str,
    viewers: list[Viewer],
) -> tuple[int, dict[str, str], Any]:
    """POST a fresh offer (the answer is never applied: the session does not connect)."""
    viewer = Viewer()
    viewers.append(viewer)
    headers = {"Content-Type": "application/sdp", "Authorization": f"Bearer {token}"}
    async with http.post(
        f"{running.url}/whep/{ROOM}", data=(await offer(viewer.pc)).encode(), headers=headers
    ) as r:
        body = await r.json() if r.content_type == "application/json" else await r.text()
        return r.status, dict(r.headers), body


async def _metric(http: aiohttp.ClientSession, running: RunningNode, name: str) -> float:
    return await metric(http, running.url, name) or 0.0


async def test_a_user_holds_a_few_sessions_per_node(
    start_node: NodeFactory, http: aiohttp.ClientSession, tokens: TokenAuthority,
    viewers: list[Viewer],
) -> None:  # fmt: skip
    running = await _node(start_node)  # the default: 3 per user
    media = running.runner.app[MEDIA]
    bob = tokens.issue(user="bob", role="viewer", rooms=[ROOM])
    locations = []
    async with asyncio.timeout(20):
        for _ in range(3):
            status, headers, _ = await _whep(http, running, bob, viewers)
            assert status == 201
            locations.append(headers["Location"])
        status, headers, body = await _whep(http, running, bob, viewers)
        assert status == 429 and body["error"] == "too_many_sessions", body
        assert "bob" in body["detail"] and headers["Retry-After"] == "10"
        assert media.sessions_of("bob") == 3 and media.viewer_total == 3
        # Another user is not affected.
        alice = tokens.issue(user="alice", role="viewer", rooms=[ROOM])
        assert (await _whep(http, running, alice, viewers))[0] == 201
        # Ending one frees a slot.
        async with http.delete(
            running.url + locations[0], headers={"Authorization": f"Bearer {bob}"}
        ) as r:
            assert r.status == 200
        assert (await _whep(http, running, bob, viewers))[0] == 201
        assert (await _whep(http, running, bob, viewers))[0] == 429
    refused = 'live_whep_refused_total{reason="too_many_sessions"}'
    assert await _metric(http, running, refused) == 2


async def test_a_session_that_never_connects_frees_its_slot(
    start_node: NodeFactory, http: aiohttp.ClientSession, tokens: TokenAuthority,
    viewers: list[Viewer],
) -> None:  # fmt: skip
    running = await _node(start_node, whep_sessions_per_user=1, media_connect_timeout_s=0.5)
    media = running.runner.app[MEDIA]
    bob = tokens.issue(user="bob", role="viewer", rooms=[ROOM])
    async with asyncio.timeout(20):
        assert (await _whep(http, running, bob, viewers))[0] == 201
        status, headers, _ = await _whep(http, running, bob, viewers)
        assert status == 429 and headers["Retry-After"] == "1"
        await eventually(lambda: media.sessions_of("bob") == 0, within=5)
        assert (await _whep(http, running, bob, viewers))[0] == 201
    closed = "live_media_sessions_unconnected_closed_total"
    assert await _metric(http, running, closed) >= 1


async def test_only_registered_nodes_skip_the_limits(
    start_node: NodeFactory, http: aiohttp.ClientSession, tokens: TokenAuthority,
    viewers: list[Viewer],
) -> None:  # fmt: skip
    running = await _node(start_node, whep_sessions_per_user=1, media_max_viewers=2)
    forged = tokens.issue(user="edge-x", role="node", rooms=["*"])
    async with asyncio.timeout(20):
        # A node token whose subject is no node of the registry is an ordinary viewer.
        assert (await _whep(http, running, forged, viewers))[0] == 201
        status, _, body = await _whep(http, running, forged, viewers)
        assert status == 429 and body["error"] == "too_many_sessions"
        registry = NodeRegistry(
            running.node.redis, node_id="edge-1", role="edge", region="local", capacity=10,
            url=lambda: "http://127.0.0.1:9",
        )  # fmt: skip
        assert await registry.beat()
        edge = tokens.issue(user="edge-1", role="node", rooms=["*"])
        for _ in range(3):  # past the per-user limit and the node's viewer limit
            assert (await _whep(http, running, edge, viewers))[0] == 201
        status, _, body = await _whep(http, running, forged, viewers)
        assert status == 503 and body["error"] == "full"
    assert await _metric(http, running, 'live_whep_refused_total{reason="full"}') == 1
