"""An origin and two edges as real `live serve` processes sharing the test Valkey: a synthetic host
publishes to the origin, viewers pick their edge by region, play and chat there; edges hold one
upstream per room; an edge dies and its viewer moves; the origin restarts and edges reconnect."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from core.auth import TokenAuthority
from core.rooms import RoomStore
from devtools.spawn import NodeProcess, child_env, spawn_node, stop_all
from loadtest.report.scrape import metric
from media import aiortc_compat
from tests.conftest import SECRET, Client
from tests.support.peers import Host, Viewer
from tests.support.waiting import eventually
from tests.support.whip_whep import whep, whip

ROOM = "r1"
NODE_ENV = {
    "LIVE_NODE_HEARTBEAT_S": "0.2",
    "LIVE_NODE_TTL_S": "1.0",
    "LIVE_EDGE_UPSTREAM_GRACE_S": "1.0",
    "LIVE_DRAIN_S": "0",
    "LIVE_LOG_JSON": "false",
    "LIVE_LOG_LEVEL": "INFO",
}
AUTH = TokenAuthority(SECRET)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def consecutive(counters: list[int]) -> bool:
    return all(b == a + 1 for a, b in itertools.pairwise(counters))


@dataclass
class Cluster:
    env: dict[str, str]
    logs: Path
    origin_port: int
    origin: NodeProcess
    edges: dict[str, NodeProcess]

    @property
    def nodes(self) -> list[NodeProcess]:
        return [self.origin, *self.edges.values()]

    async def start_origin(self) -> None:
        self.origin = await _spawn(self, "origin", "origin", "na", self.origin_port)


async def _spawn(
    cluster: Cluster, node_id: str, role: str, region: str, port: int = 0
) -> NodeProcess:
    log = (cluster.logs / f"{node_id}.log").open("ab")
    try:
        return await spawn_node(
            node_id=node_id,
            role=role,
            region=region,
            env=cluster.env,
            port=port,
            origin=f"http://127.0.0.1:{cluster.origin_port}",
            stderr=log.fileno(),
        )
    finally:
        log.close()  # the child holds its own descriptor


@pytest.fixture
async def cluster(valkey_url: str, tmp_path: Path) -> AsyncIterator[Cluster]:
    # This process's host and viewers: aioice offers no loopback candidate unless told to.
    aiortc_compat.set_ice_addresses(["127.0.0.1"])
    client = aioredis.Redis.from_url(valkey_url)
    await client.flushall()
    await RoomStore(client).create(title="Cluster room", owner="host", room_id=ROOM)
    await client.aclose()
    env = child_env(valkey_url, SECRET, {**NODE_ENV, "LIVE_DATA_DIR": str(tmp_path)})
    c = Cluster(env, tmp_path, free_port(), None, {})  # type: ignore[arg-type]
    try:
        origin, eu, sea = await asyncio.gather(
            _spawn(c, "origin", "origin", "na", c.origin_port),
            _spawn(c, "edge-eu", "edge", "eu"),
            _spawn(c, "edge-sea", "edge", "sea"),
        )
        c.origin, c.edges = origin, {"eu": eu, "sea": sea}
        yield c
    finally:
        await stop_all([n for n in c.nodes if n is not None], grace_s=5)
        print_logs(tmp_path)


def print_logs(where: Path) -> None:
    """The nodes' logs, shown by pytest when a test fails."""
    for f in sorted(where.glob("*.log")):
        print(f"---- {f.name}\n{f.read_text(errors='replace')[-4000:]}")


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def choose(http: aiohttp.ClientSession, ask: str, region: str) -> dict[str, Any]:
    async with http.get(f"{ask}/api/rooms/{ROOM}/edge?region={region}") as r:
        body: dict[str, Any] = await r.json()
        assert r.status == 200, body
        return body


async def all_registered(http: aiohttp.ClientSession, cluster: Cluster) -> None:
    async def ids() -> set[str]:
        async with http.get(f"{cluster.origin.url}/api/nodes") as r:
            return {n["node_id"] for n in (await r.json())["nodes"]}

    want = {n.node_id for n in cluster.nodes}
    await eventually(ids, lambda got: got == want)


class RegionViewer:
    """What the viewer page does: ask any node for an edge, play WHEP and chat on it; when the
    chat connection drops, ask again and resume, chat from the last message id seen."""

    def __init__(self, http: aiohttp.ClientSession, region: str, user: str) -> None:
        self.http = http
        self.region = region
        self.token = AUTH.issue(user=user, role="viewer", rooms=[ROOM])
        self.node: dict[str, Any] = {}
        self.player: Viewer | None = None
        self.chat: Client | None = None
        self.seen: list[str] = []

    async def start(self, ask: str, avoid: str | None = None) -> None:
        choice = await eventually(
            lambda: choose(self.http, ask, self.region), lambda c: c["node_id"] != avoid
        )
        self.node = choice
        self.player = Viewer()
        await whep(self.http, choice["url"], ROOM, self.token, self.player)
        since = self.seen[-1] if self.seen else None
        self.chat = await Client(choice["url"], self.token).connect()
        ack = await self.chat.join(ROOM, since=since)
        self.seen += [m["id"] for m in ack["history"]]
        self.chat.sio.on("chat", self._on_chat, namespace="/live")

    async def _on_chat(self, message: dict[str, Any]) -> None:
        if message["id"] not in self.seen:
            self.seen.append(message["id"])

    async def failover(self, ask: str) -> None:
        """The node went away: start over elsewhere."""
        assert self.chat is not None
        await asyncio.wait_for(self.chat.disconnected.wait(), 5)
        await self.close()
        await self.start(ask, avoid=self.node["node_id"])

    async def close(self) -> None:
        if self.player is not None:
            await self.player.close()
        if self.chat is not None:
            with contextlib.suppress(Exception):
                await self.chat.close()


async def plays(viewer: Viewer, frames: int = 30, after: int = -1) -> None:
    """`frames` decoded pictures numbered above `after`, in order."""
    await viewer.progress.until(lambda: len([c for c in viewer.counters if c > after]) >= frames)
    assert consecutive([c for c in viewer.counters if c > after][-frames:])


async def test_each_edge_pulls_once_and_lets_go_after_the_grace(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    host_token = AUTH.issue(user="host", role="host", rooms=[ROOM])
    host = Host()
    viewers = [
        RegionViewer(http, r, f"{r}-{i}") for r, i in itertools.product(("eu", "sea"), (1, 2))
    ]
    try:
        async with asyncio.timeout(25):
            await all_registered(http, cluster)
            await whip(http, cluster.origin.url, ROOM, host_token, host)
            await asyncio.gather(*(v.start(cluster.origin.url) for v in viewers))
            for v in viewers:
                assert v.node["node_id"] == f"edge-{v.region}" and v.node["reason"] == "region"
                assert v.player is not None
                await plays(v.player)
            for edge in cluster.edges.values():
                assert await metric(http, edge.url, "live_edge_upstreams") == 1
                assert await metric(http, edge.url, "live_edge_upstream_connects_total") == 1
                assert await metric(http, edge.url, "live_media_viewers") == 2
            # The origin sends one copy per edge, not one per viewer.
            assert await metric(http, cluster.origin.url, "live_media_viewers") == 2
            for v in viewers:
                await v.close()
            for edge in cluster.edges.values():
                await eventually(
                    lambda e=edge: metric(http, e.url, "live_edge_upstreams"),  # type: ignore[misc]
                    lambda n: n == 0,
                )
            await eventually(
                lambda: metric(http, cluster.origin.url, "live_media_viewers"), lambda n: n == 0
            )
    finally:
        for v in viewers:
            await v.close()
        await host.close()


async def test_edge_dies_viewer_reselects_and_resumes_video_and_chat(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    host_token = AUTH.issue(user="host", role="host", rooms=[ROOM])
    host = Host()
    viewer = RegionViewer(http, "eu", "eve")
    talker = await Client(
        cluster.origin.url, AUTH.issue(user="tom", role="viewer", rooms=[ROOM])
    ).connect()
    try:
        async with asyncio.timeout(30):
            await all_registered(http, cluster)
            await whip(http, cluster.origin.url, ROOM, host_token, host)
            await viewer.start(cluster.origin.url)
            assert viewer.node["node_id"] == "edge-eu" and viewer.player is not None
            await plays(viewer.player)
            await talker.join(ROOM)
            before = await talker.call("chat", {"room": ROOM, "text": "before"})
            await eventually(lambda: viewer.seen, lambda s: before["id"] in s)

            cluster.edges["eu"].kill()
            await cluster.edges["eu"].proc.wait()
            missed = [await talker.call("chat", {"room": ROOM, "text": f"m{i}"}) for i in range(3)]
            last = max(viewer.player.counters)
            await viewer.failover(cluster.origin.url)
            assert viewer.node["node_id"] == "edge-sea" and viewer.node["reason"] == "nearest"
            assert viewer.player is not None
            await plays(viewer.player, after=last)
            after = await talker.call("chat", {"room": ROOM, "text": "after"})
            await eventually(lambda: viewer.seen, lambda s: after["id"] in s)
        ids = [before["id"], *(m["id"] for m in missed), after["id"]]
        assert [i for i in viewer.seen if i in ids] == ids  # nothing missed, in order
    finally:
        await viewer.close()
        await talker.close()
        await host.close()


async def test_origin_restart_edges_reconnect(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    host_token = AUTH.issue(user="host", role="host", rooms=[ROOM])
    first, second = Host(start=0), Host(start=500)
    viewer = RegionViewer(http, "eu", "eve")
    edge = cluster.edges["eu"]
    try:
        async with asyncio.timeout(30):
            await all_registered(http, cluster)
            await whip(http, cluster.origin.url, ROOM, host_token, first)
            await viewer.start(cluster.origin.url)
            assert viewer.player is not None
            await plays(viewer.player)

            assert await cluster.origin.stop(grace_s=5) == 0
            await first.close()
            await cluster.start_origin()
            await whip(http, cluster.origin.url, ROOM, host_token, second)
            # The viewer keeps its session on the edge; the edge pulls again by itself.
            await plays(viewer.player, after=499)
            assert await metric(http, edge.url, "live_edge_upstreams") == 1
            connects = await metric(http, edge.url, "live_edge_upstream_connects_total")
            assert connects is not None and connects >= 2
    finally:
        await viewer.close()
        await first.close()
        await second.close()
