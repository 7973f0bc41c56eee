"""WHIP/WHEP over HTTP on a real node: tokens, errors as JSON, live notices, session ownership."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pylibsrtp
import pytest

from core.auth import TokenAuthority
from edge.registry import NodeRegistry
from live.app import RunningNode
from live.http.media import MEDIA
from media import MediaServer, MediaStats
from media.config import MediaSettings
from media.stats import add_viewer_counters
from tests.conftest import ClientFactory, NodeFactory
from tests.support.peers import Host, Viewer, accept, offer, open_peer_connections

SDP = {"Content-Type": "application/sdp"}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def media(node: RunningNode) -> MediaServer:
    return node.runner.app[MEDIA]


def bearer(tokens: TokenAuthority, user: str, role: str, rooms: list[str] | None = None) -> str:
    return "Bearer " + tokens.issue(user=user, role=role, rooms=rooms or ["r1"])


async def post(
    http: aiohttp.ClientSession, url: str, body: str, auth: str | None, **headers: str
) -> tuple[int, dict[str, str], Any]:
    h = {**SDP, **headers}
    if auth:
        h["Authorization"] = auth
    async with http.post(url, data=body.encode(), headers=h) as r:
        payload: Any = await (r.json() if r.content_type == "application/json" else r.text())
        return r.status, dict(r.headers), payload


async def test_whip_refusals_are_json(
    node: RunningNode, http: aiohttp.ClientSession, tokens: TokenAuthority, media: MediaServer
) -> None:
    host = Host(audio=False)
    try:
        sdp = await offer(host.pc)
        url = f"{node.url}/whip/r1"
        host_auth = bearer(tokens, "h", "host")
        any_host, any_viewer = (
            bearer(tokens, "h", "host", ["*"]),
            bearer(tokens, "v", "viewer", ["*"]),
        )
        cases = [
            (await post(http, url, sdp, None), 401, None),
            (await post(http, url, sdp, bearer(tokens, "v", "viewer")), 403, "forbidden"),
            (await post(http, url, sdp, bearer(tokens, "h", "host", ["r2"])), 403, "forbidden"),
            (await post(http, url, "garbage", host_auth), 400, "invalid_sdp"),
            (
                await post(http, url, sdp, host_auth, **{"Content-Type": "text/plain"}),
                415,
                "unsupported_media_type",
            ),
            (await post(http, f"{node.url}/whip/nope", sdp, host_auth), 403, "forbidden"),
            (
                await post(http, f"{node.url}/whip/nope", sdp, any_host),
                404,
                "unknown_room",
            ),
            (
                await post(http, f"{node.url}/whep/nope", sdp, any_viewer),
                404,
                "unknown_room",
            ),
        ]
        for (status, _, body), want_status, want_code in cases:
            assert status == want_status, body
            assert set(body) >= {"error", "detail"}
            if want_code:
                assert body["error"] == want_code
    finally:
        await host.close()
    assert media.sessions == {}
    assert open_peer_connections() == 0


async def test_go_live_watch_and_stop_over_http(
    node: RunningNode,
    http: aiohttp.ClientSession,
    tokens: TokenAuthority,
    media: MediaServer,
    connect: ClientFactory,
) -> None:
    chat = await connect(node.url, "watcher", rooms=["r1"])
    await chat.join("r1")
    host, other_host, viewer = Host(), Host(), Viewer()
    host_auth = bearer(tokens, "h", "host")
    try:
        async with asyncio.timeout(15):
            # a viewer may arrive first
            status, headers, answer = await post(
                http, f"{node.url}/whep/r1", await offer(viewer.pc), bearer(tokens, "v", "viewer")
            )
            assert status == 201 and headers["Content-Type"].startswith("application/sdp")
            viewer_location = headers["Location"]
            assert viewer_location.startswith("/whep/r1/")
            await accept(viewer.pc, answer)

            status, headers, answer = await post(
                http, f"{node.url}/whip/r1", await offer(host.pc), host_auth
            )
            assert status == 201, answer
            location = headers["Location"]
            assert location.startswith("/whip/r1/")
            await accept(host.pc, answer)

            status, _, body = await post(
                http, f"{node.url}/whip/r1", await offer(other_host.pc), host_auth
            )
            assert status == 409 and body["error"] == "already_live"
            assert body["node_id"] == node.node.settings.server.node_id and body["url"] == node.url

            await chat.wait_for("stream", lambda d: d == {"room": "r1", "live": True}, within=10)
            assert (await node.node.rooms.get("r1")).live  # type: ignore[union-attr]
            await viewer.progress.until(lambda: len(viewer.counters) >= 10)

            async with http.get(f"{node.url}/metrics") as r:
                text = await r.text()
            assert "live_media_viewers 1.0" in text and "live_media_publishers 1.0" in text

            # only the owner may end a session
            async with http.delete(
                node.url + location, headers={"Authorization": bearer(tokens, "x", "host")}
            ) as r:
                assert r.status == 403 and (await r.json())["error"] == "forbidden"
            async with http.delete(
                node.url + location.replace("whip", "whep"), headers={"Authorization": host_auth}
            ) as r:
                assert r.status == 404
            async with http.delete(node.url + location, headers={"Authorization": host_auth}) as r:
                assert r.status == 200
            await chat.wait_for("stream", lambda d: d == {"room": "r1", "live": False}, within=10)
            assert not (await node.node.rooms.get("r1")).live  # type: ignore[union-attr]
            async with http.delete(
                node.url + viewer_location, headers={"Authorization": bearer(tokens, "v", "viewer")}
            ) as r:
                assert r.status == 200
    finally:
        for peer in (host, other_host, viewer):
            await peer.close()
    assert media.sessions == {}
    assert open_peer_connections() == 0


async def test_a_full_node_refuses_viewers_but_not_an_edge_upstream(
    start_node: NodeFactory, http: aiohttp.ClientSession, tokens: TokenAuthority
) -> None:
    running = await start_node(media_max_viewers=1)
    await running.node.rooms.create(title="Test room", owner="host", room_id="r1")
    media = running.runner.app[MEDIA]
    url = f"{running.url}/whep/r1"
    first, second, upstream = Viewer(), Viewer(), Viewer()
    try:
        async with asyncio.timeout(15):
            status, headers, _ = await post(
                http, url, await offer(first.pc), bearer(tokens, "v1", "viewer")
            )
            assert status == 201
            location = headers["Location"]

            status, headers, body = await post(
                http, url, await offer(second.pc), bearer(tokens, "v2", "viewer")
            )
            assert status == 503 and body["error"] == "full", body
            assert "1 viewers" in body["detail"] and headers["Retry-After"] == "2"
            assert media.viewer_total == 1  # the refused offer left nothing behind

            # An edge's upstream carries a crowd of its own: it is let in (a registered node).
            await NodeRegistry(
                running.node.redis, node_id="edge-1", role="edge", region="local", capacity=10,
                url=lambda: "http://127.0.0.1:9",
            ).beat()  # fmt: skip
            status, _, _ = await post(
                http, url, await offer(upstream.pc), bearer(tokens, "edge-1", "node", ["*"])
            )
            assert status == 201 and media.viewer_total == 2

            async with http.delete(
                running.url + location, headers={"Authorization": bearer(tokens, "v1", "viewer")}
            ) as r:
                assert r.status == 200
            # Still at the limit: the upstream counts as a viewer for everyone else.
            status, _, body = await post(
                http, url, await offer(second.pc), bearer(tokens, "v2", "viewer")
            )
            assert status == 503 and body["error"] == "full"
    finally:
        for peer in (first, second, upstream):
            await peer.close()
        await media.shutdown()
    assert media.sessions == {}
    assert open_peer_connections() == 0


def test_the_viewer_limit_follows_the_processes_serving_viewers() -> None:
    assert MediaSettings(max_viewers="auto", workers=0, admission="count").viewer_limit == 300
    assert MediaSettings(max_viewers="auto", workers=3, admission="count").viewer_limit == 900
    assert MediaSettings(max_viewers="auto", workers=3, admission="measured").viewer_limit == 1500
    assert MediaSettings(max_viewers=0).viewer_limit == 0
    assert MediaSettings(max_viewers=42, workers=3).viewer_limit == 42
    with pytest.raises(ValueError, match="LIVE_MEDIA_MAX_VIEWERS"):
        MediaSettings(max_viewers=-1)


async def test_fast_path_fallbacks_are_counted_in_metrics(
    node: RunningNode,
    http: aiohttp.ClientSession,
    tokens: TokenAuthority,
    media: MediaServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A pylibsrtp release the fast path was not checked on: each viewer track protects through
    # pylibsrtp's public API instead, and says so.
    monkeypatch.setattr(pylibsrtp, "__version__", "0.9.0")
    viewer = Viewer()
    try:
        async with asyncio.timeout(15):
            status, _, answer = await post(
                http, f"{node.url}/whep/r1", await offer(viewer.pc), bearer(tokens, "v", "viewer")
            )
            assert status == 201
            await accept(viewer.pc, answer)
            wanted = 'live_media_fast_path_fallbacks_total{reason="pylibsrtp_version"} 2.0'
            while True:
                async with http.get(f"{node.url}/metrics") as r:
                    text = await r.text()
                if wanted in text:
                    break
                await asyncio.sleep(0.05)
            assert 'live_media_fast_path_fallbacks_total{reason="no_gso"} 0.0' in text
    finally:
        await viewer.close()


def test_workers_fast_path_fallbacks_add_into_the_nodes() -> None:
    total = MediaStats(fast_path_fallbacks={"no_gso": 1})
    add_viewer_counters(total, {"fast_path_fallbacks": {"no_gso": 2, "no_socket": 1}})
    assert total.fast_path_fallbacks == {"no_gso": 3, "no_socket": 1}
