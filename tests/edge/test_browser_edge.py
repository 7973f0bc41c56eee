"""Chromium: a viewer page for region `eu` plays the stream through the `eu` edge, and moves to
the next nearest edge when that one shuts down."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, expect

from core.auth import TokenAuthority
from live.app import RunningNode
from live.http.media import MEDIA
from tests.browser.test_media_pages import assert_playing, open_page
from tests.conftest import NodeFactory
from tests.support.peers import Host, Viewer
from tests.support.waiting import eventually
from tests.support.whip_whep import whep, whip

pytestmark = pytest.mark.browser
FAST = {"node_heartbeat_s": 0.2, "node_ttl_s": 1.0, "edge_upstream_grace_s": 1.0}


def viewers(node: RunningNode) -> int:
    return node.runner.app[MEDIA].stats().viewers


async def origin_and_two_edges(
    start_node: NodeFactory, **eu: Any
) -> tuple[RunningNode, RunningNode, RunningNode]:
    """An origin (na) with room r1, an eu edge (`eu`: its settings) and a sea edge, registered."""
    origin = await start_node(node_id="origin", role="origin", region="na", **FAST)
    edges = [
        await start_node(
            node_id=f"edge-{region}", role="edge", region=region, origin_url=origin.url,
            **FAST, **overrides,
        )
        for region, overrides in (("eu", eu), ("sea", {}))
    ]  # fmt: skip
    await origin.node.rooms.create(title="Edge room", owner="host", room_id="r1")
    await eventually(origin.node.registry.nodes, lambda ns: len(ns) == 3)
    return origin, edges[0], edges[1]


async def test_viewer_page_plays_through_its_regions_edge_and_moves_on(
    start_node: NodeFactory, browser: Browser, tokens: TokenAuthority
) -> None:
    origin, eu, sea = await origin_and_two_edges(start_node)

    errors: list[str] = []
    # The host is the media tests' synthetic publisher (the studio page is tested elsewhere).
    host = Host()
    async with aiohttp.ClientSession() as http:
        token = tokens.issue(user="host", role="host", rooms=["r1"])
        await whip(http, origin.url, "r1", token, host)
    try:
        await play_and_move(browser, tokens, errors, origin, eu, sea)
    finally:
        await host.close()


async def play_and_move(
    browser: Browser,
    tokens: TokenAuthority,
    errors: list[str],
    origin: RunningNode,
    eu: RunningNode,
    sea: RunningNode,
) -> None:
    viewer = tokens.issue(user="vera", role="viewer", name="Vera", rooms=["r1"])
    page = await open_page(browser, f"{origin.url}/rooms/r1?region=eu#token={viewer}", errors)
    await assert_playing(page)
    assert await page.evaluate("window.liveEdge.node.node_id") == "edge-eu"
    assert viewers(eu) == 1  # the page's video comes from the eu edge
    assert viewers(origin) == 1  # and the origin sends one copy: the edge's

    # The eu edge shuts down (drains, closes its connections): the page asks again and moves.
    await eu.runner.cleanup()
    await page.wait_for_function("() => window.liveEdge.node.node_id === 'edge-sea'")
    await assert_playing(page)
    await expect(page.locator("#status")).to_have_text("connected")
    assert viewers(sea) == 1
    # Console errors from the dead node's refused requests are expected; nothing else.
    assert [e for e in errors if "ERR_CONNECTION_REFUSED" not in e] == []


async def test_viewer_page_refused_by_a_full_edge_plays_from_the_next(
    start_node: NodeFactory, browser: Browser, tokens: TokenAuthority
) -> None:
    origin, eu, sea = await origin_and_two_edges(start_node, media_max_viewers=1)

    errors: list[str] = []
    token = tokens.issue(user="vera", role="viewer", name="Vera", rooms=["r1"])
    # Before the show: the page picks the empty eu edge and waits for the stream.
    page = await open_page(browser, f"{origin.url}/rooms/r1?region=eu#token={token}", errors)
    await page.wait_for_function("() => window.liveEdge?.node?.node_id === 'edge-eu'")
    await expect(page.locator("#status")).to_have_text("connected")
    host, early = Host(), Viewer()
    async with aiohttp.ClientSession() as http:
        # Someone else takes the eu edge's only place, and the registry hears of it.
        other = tokens.issue(user="olaf", role="viewer", rooms=["r1"])
        await whep(http, eu.url, "r1", other, early)
        await eventually(
            origin.node.registry.nodes,
            lambda ns: any(n.node_id == "edge-eu" and not n.accepts_viewers for n in ns),
        )
        try:
            # The show starts: eu answers the page's WHEP with 503 full; it asks again, is
            # offered the nearest region's edge, and plays from there.
            await whip(http, origin.url, "r1", tokens.issue(user="host", role="host"), host)
            await page.wait_for_function("() => window.liveEdge.node.node_id === 'edge-sea'")
            await assert_playing(page)
            assert viewers(sea) == 1 and viewers(eu) == 1
        finally:
            await host.close()
            await early.close()
    # The refusal is logged by the browser as a failed request; nothing else went wrong.
    assert [e for e in errors if "503" not in e] == []
