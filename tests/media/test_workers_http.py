"""WHIP/WHEP on a node whose viewers are served by two media workers: placement, metrics,
DELETE routed to the owning worker, and a worker that dies."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator

import aiohttp
import pytest
import redis.asyncio as aioredis

from core.auth import TokenAuthority
from live.app import serve
from live.http.media import MEDIA
from media import MediaServer
from tests.conftest import make_settings
from tests.media.test_whip_whep_http import bearer, post
from tests.media.test_workers import alive
from tests.support.peers import Events, Host, Viewer, accept, offer, open_peer_connections


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def whep(http: aiohttp.ClientSession, url: str, viewer: Viewer, auth: str) -> tuple[str, str]:
    """Play `viewer` over WHEP; (session id, Location)."""
    status, headers, answer = await post(http, f"{url}/whep/r1", await offer(viewer.pc), auth)
    assert status == 201, answer
    await accept(viewer.pc, answer)
    location = headers["Location"]
    return location.rsplit("/", 1)[1], location


async def test_worker_sessions_over_http(
    valkey_url: str, redis: aioredis.Redis, http: aiohttp.ClientSession, tokens: TokenAuthority
) -> None:
    host, a, b, c = Host(), Viewer(), Viewer(), Viewer()
    pids: set[int] = set()
    try:
        async with serve(make_settings(valkey_url, media_workers=2), redis) as node:
            await node.node.rooms.create(title="Room", owner="host", room_id="r1")
            media: MediaServer = node.runner.app[MEDIA]
            workers = media.workers
            assert workers is not None
            events = Events()
            media.add_listener(events)
            async with asyncio.timeout(25):
                status, _, answer = await post(
                    http, f"{node.url}/whip/r1", await offer(host.pc), bearer(tokens, "h", "host")
                )
                assert status == 201, answer
                await accept(host.pc, answer)
                await events.progress.until(lambda: events.kinds() == ["live"])
                a_id, _ = await whep(http, node.url, a, bearer(tokens, "a", "viewer"))
                b_id, b_location = await whep(http, node.url, b, bearer(tokens, "b", "viewer"))
                for v in (a, b):
                    await v.progress.until(lambda v=v: len(v.counters) >= 10)  # type: ignore[misc]
                pids = {link.pid for link in workers.links if link is not None and link.pid}
                assert len(pids) == 2

                async with http.get(f"{node.url}/metrics") as r:
                    text = await r.text()
                assert "live_media_viewers 2.0" in text
                assert 'live_media_worker_viewers{worker="0"} 1.0' in text
                assert 'live_media_worker_viewers{worker="1"} 1.0' in text

                # DELETE: someone else's is refused, the owner's ends it on its worker
                b_url = node.url + b_location
                for user, status in (("x", 403), ("b", 200), ("b", 404)):
                    auth = {"Authorization": bearer(tokens, user, "viewer")}
                    async with http.delete(b_url, headers=auth) as r:
                        assert r.status == status
                        if status == 403:
                            assert (await r.json())["error"] == "forbidden"
                assert media.session(b_id) is None and media.stats().viewers == 1

                # A worker dies: its sessions end, it is started again, new viewers play.
                viewer_a = workers.sessions[a_id]
                dead = workers.links[viewer_a.worker]
                assert dead is not None and dead.pid is not None
                os.kill(dead.pid, signal.SIGKILL)
                await workers.until(
                    lambda: (
                        media.session(a_id) is None
                        and workers.restarts[viewer_a.worker] == 1
                        and all(link is not None and link.usable for link in workers.links)
                    )
                )
                pids |= {link.pid for link in workers.links if link is not None and link.pid}
                assert media.stats().viewers == 0
                await whep(http, node.url, c, bearer(tokens, "c", "viewer"))
                await c.progress.until(lambda: len(c.counters) >= 10)
                assert media.is_live("r1")
    finally:
        for peer in (host, a, b, c):
            await peer.close()
    assert len(pids) == 3
    assert [pid for pid in pids if alive(pid)] == []
    assert open_peer_connections() == 0
