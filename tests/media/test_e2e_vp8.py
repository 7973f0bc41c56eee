"""A synthetic host and decoding viewers over loopback, through the forwarding server."""

from __future__ import annotations

import asyncio
import itertools

from media import MediaServer
from tests.media.conftest import Events
from tests.media.peers import Host, Viewer


def consecutive(counters: list[int]) -> bool:
    return all(b == a + 1 for a, b in itertools.pairwise(counters))


async def test_viewer_after_host_sees_the_host_frames(server: MediaServer, events: Events) -> None:
    host = Host()
    viewer = Viewer()
    try:
        async with asyncio.timeout(10):
            await host.publish(server, "r1")
            await events.progress.until(lambda: events.kinds() == ["live"])
            await host.video.progress.until(lambda: host.video.sent > 20)
            await viewer.play(server, "r1")
            await viewer.progress.until(
                lambda: len(viewer.counters) >= 30 and viewer.audio_frames >= 25
            )
        assert consecutive(viewer.counters)
        assert viewer.audio_peak > 1000
    finally:
        await viewer.close()
        await host.close()
