"""A synthetic host and decoding viewers over loopback, through the forwarding server."""

from __future__ import annotations

import asyncio
import itertools

from media import MediaServer
from tests.support.peers import Events, Host, Viewer


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


async def test_viewer_before_host_starts_at_a_keyframe(server: MediaServer, events: Events) -> None:
    host = Host(start=100)
    viewer = Viewer()
    try:
        async with asyncio.timeout(10):
            await viewer.play(server, "r1")
            assert not server.is_live("r1")
            await host.publish(server, "r1")
            await viewer.progress.until(lambda: len(viewer.counters) >= 30)
        assert viewer.counters[0] == 100  # the host's first frame is its keyframe
        assert consecutive(viewer.counters)
    finally:
        await viewer.close()
        await host.close()


async def test_host_leaves_and_rejoins_viewers_stay(server: MediaServer, events: Events) -> None:
    first, second = Host(start=0), Host(start=500)
    viewers = [Viewer(), Viewer()]
    try:
        async with asyncio.timeout(15):
            await first.publish(server, "r1")
            for v in viewers:
                await v.play(server, "r1")
            for v in viewers:
                await v.progress.until(lambda v=v: len(v.counters) >= 15)  # type: ignore[misc]
            assert first.session_id is not None
            await server.close(first.session_id)
            # `closed` follows `ended`: the host's session is over (whether or not it was live).
            await events.progress.until(lambda: events.kinds() == ["live", "ended", "closed"])
            assert not server.is_live("r1")
            await second.publish(server, "r1")
            await events.progress.until(
                lambda: events.kinds() == ["live", "ended", "closed", "live"]
            )
            for v in viewers:
                await v.progress.until(lambda v=v: v.counters[-1] >= 520)  # type: ignore[misc]
        for v in viewers:
            before = [c for c in v.counters if c < 500]
            after = [c for c in v.counters if c >= 500]
            assert consecutive(before)
            assert after[0] == 500 and consecutive(after)
    finally:
        for v in viewers:
            await v.close()
        await first.close()
        await second.close()


async def test_late_viewer_of_a_long_gop_gets_a_fresh_keyframe(
    server: MediaServer, events: Events
) -> None:
    host = Host(audio=False)
    viewer = Viewer(audio=False)
    try:
        async with asyncio.timeout(10):
            await host.publish(server, "r1")
            # Past the GOP cache bound (60 frames) the cache is dropped: a PLI brings a keyframe.
            await host.video.progress.until(lambda: host.video.sent > 75)
            room = server.rooms["r1"]
            assert room.video.gop == []
            await viewer.play(server, "r1")
            await viewer.progress.until(lambda: len(viewer.counters) >= 10)
        assert viewer.counters[0] > 75
        assert consecutive(viewer.counters)
        assert room.keyframes.sent >= 1
    finally:
        await viewer.close()
        await host.close()
