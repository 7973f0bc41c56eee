"""Chromium: a viewer page on the eu edge, the edge `kill -9`ed (real `live serve` processes,
the registry's default TTL of 3 s): the page presents video again from another node within 5 s,
every run, and chat sent during the outage is shown after it (nothing missed, in order).
Prints the recovery times and their p95."""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis
from playwright.async_api import Browser, Page

from core.auth import TokenAuthority
from core.rooms import RoomStore
from devtools.spawn import NodeProcess, child_env, stop_all
from media import aiortc_compat
from tests.browser.test_media_pages import assert_playing, open_page
from tests.conftest import SECRET, Client
from tests.edge.test_cluster import NODE_ENV, ROOM, Cluster, _spawn, free_port, print_logs
from tests.support.peers import Host
from tests.support.waiting import eventually
from tests.support.whip_whep import whip

pytestmark = pytest.mark.browser
AUTH = TokenAuthority(SECRET)
RUNS = 5
DEAD_NODE = re.compile(r"ERR_CONNECTION_(REFUSED|RESET)")  # the browser logs the dead node's
DONE_MS = 5000  # the issue's bound: video again within 5 s of the kill
# The registry as deployed (heartbeat 1 s, TTL 3 s): the page must not wait for the TTL.
# The talker sends 5 messages a run, 25 in well under the default 30 s window of 20.
ENV = {
    **NODE_ENV,
    "LIVE_NODE_HEARTBEAT_S": "1.0",
    "LIVE_NODE_TTL_S": "3.0",
    "LIVE_CHAT_RATE_COUNT": "100",
}


@pytest.fixture
async def cluster(valkey_url: str, tmp_path: Path) -> AsyncIterator[Cluster]:
    aiortc_compat.set_ice_addresses(["127.0.0.1"])
    client = aioredis.Redis.from_url(valkey_url)
    await client.flushall()
    await RoomStore(client).create(title="Failover room", owner="host", room_id=ROOM)
    await client.aclose()
    env = child_env(valkey_url, SECRET, {**ENV, "LIVE_DATA_DIR": str(tmp_path)})
    c = Cluster(env, tmp_path, free_port(), None, {})  # type: ignore[arg-type]
    try:
        origin, eu, sea = await asyncio.gather(
            _spawn(c, "origin", "origin", "na", c.origin_port),
            _spawn(c, "edge-eu-0", "edge", "eu"),
            _spawn(c, "edge-sea", "edge", "sea"),
        )
        c.origin, c.edges = origin, {"eu": eu, "sea": sea}
        yield c
    finally:
        await stop_all([n for n in c.nodes if n is not None], grace_s=5)
        print_logs(tmp_path)


async def node_ids(http: aiohttp.ClientSession, cluster: Cluster) -> set[str]:
    async with http.get(f"{cluster.origin.url}/api/nodes") as r:
        return {n["node_id"] for n in (await r.json())["nodes"]}


async def shown(page: Page, message_id: str) -> None:
    await page.wait_for_selector(f'#messages li[data-id="{message_id}"]', state="attached")


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]  # nearest rank


async def fail_over_once(page: Page, eu: NodeProcess, talker: Client) -> tuple[float, str]:
    """Kill `eu` under the playing page; the milliseconds from the kill to the first frame the
    page presents from another node, and that node's id."""
    await assert_playing(page)
    assert await page.evaluate("window.liveEdge.node.node_id") == eu.node_id
    before = await talker.call("chat", {"room": ROOM, "text": "before"})
    assert before.get("ok"), before
    await shown(page, before["id"])

    killed_at = time.time() * 1000
    eu.kill()  # SIGKILL: no drain, no goodbye to the registry or the sockets' peers
    await eu.proc.wait()
    during = [await talker.call("chat", {"room": ROOM, "text": f"during {i}"}) for i in range(3)]
    assert all(ack.get("ok") for ack in during), during
    await page.wait_for_function(
        """([killed, dead]) => window.liveMedia.firstFrameAt > killed
            && window.liveEdge.node && window.liveEdge.node.node_id !== dead""",
        arg=[killed_at, eu.node_id],
        timeout=20_000,
    )
    first_frame = await page.evaluate("window.liveMedia.firstFrameAt")
    node = await page.evaluate("window.liveEdge.node.node_id")
    await assert_playing(page)

    after = await talker.call("chat", {"room": ROOM, "text": "after"})
    ids = [before["id"], *(m["id"] for m in during), after["id"]]
    await shown(page, after["id"])
    listed = await page.eval_on_selector_all(
        "#messages li", "items => items.map((li) => li.dataset.id)"
    )
    assert [i for i in listed if i in ids] == ids  # nothing missed, nothing twice, in order
    return first_frame - killed_at, node


async def test_killed_edge_viewer_page_plays_again_within_5_s(
    cluster: Cluster, browser: Browser
) -> None:
    host = Host()
    errors: list[str] = []
    times: list[float] = []
    async with aiohttp.ClientSession() as http:
        talker = await Client(
            cluster.origin.url, AUTH.issue(user="tom", role="viewer", rooms=[ROOM])
        ).connect()
        try:
            want = {n.node_id for n in cluster.nodes}
            await eventually(lambda: node_ids(http, cluster), lambda got: got == want)
            await whip(http, cluster.origin.url, ROOM, AUTH.issue(user="host", role="host"), host)
            await talker.join(ROOM)
            for run in range(RUNS):
                eu = cluster.edges["eu"]
                viewer = AUTH.issue(user=f"vera{run}", role="viewer", name="Vera", rooms=[ROOM])
                page = await open_page(
                    browser, f"{cluster.origin.url}/rooms/{ROOM}?region=eu#token={viewer}", errors
                )
                elapsed, node = await fail_over_once(page, eu, talker)
                times.append(elapsed)
                print(f"run {run + 1}: {eu.node_id} killed, video again from {node} after "
                      f"{elapsed:.0f} ms")  # fmt: skip
                await page.close()
                # A new eu edge for the next run, once the dead one has left the registry.
                cluster.edges["eu"] = await _spawn(cluster, f"edge-eu-{run + 1}", "edge", "eu")
                now = {cluster.origin.node_id, "edge-sea", cluster.edges["eu"].node_id}
                await eventually(
                    lambda: node_ids(http, cluster), lambda got, w=now: got == w, within=10
                )
        finally:
            await talker.close()
            await host.close()
    print(
        f"kill -9 to next presented frame over {len(times)} runs: "
        f"p50 {sorted(times)[len(times) // 2]:.0f} ms, p95 {p95(times):.0f} ms, "
        f"max {max(times):.0f} ms"
    )
    assert max(times) < DONE_MS, times
    # The dead node's refused requests are logged by the browser; nothing else went wrong.
    assert [e for e in errors if not DEAD_NODE.search(e)] == []
