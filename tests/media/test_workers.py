"""Viewers served by two media worker processes fed from this process's ingest."""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterator

import pytest
from aiortc import RTCRtpReceiver

from media import MediaConfig, MediaServer
from tests.support.peers import Events, Host, Viewer, open_peer_connections


def consecutive(counters: list[int]) -> bool:
    return all(b == a + 1 for a, b in itertools.pairwise(counters))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def worker_pids(server: MediaServer) -> list[int]:
    assert server.workers is not None
    return [link.pid for link in server.workers.links if link is not None and link.pid]


@pytest.fixture
async def server() -> AsyncIterator[MediaServer]:
    srv = MediaServer(MediaConfig(ice_addresses=["127.0.0.1"], workers=2))
    await srv.start()
    started = worker_pids(srv)
    assert len(started) == 2
    yield srv
    pids = set(started + worker_pids(srv))
    await srv.shutdown()
    assert [pid for pid in pids if alive(pid)] == []
    assert open_peer_connections() == 0


@pytest.fixture
def events(server: MediaServer) -> Events:
    e = Events()
    server.add_listener(e)
    return e


def video_receiver(viewer: Viewer) -> RTCRtpReceiver:
    return next(t.receiver for t in viewer.pc.getTransceivers() if t.kind == "video")


async def test_viewers_on_two_workers_see_the_host_and_ask_for_keyframes_once(
    server: MediaServer, events: Events
) -> None:
    host = Host(start=100)
    early, late = [Viewer(), Viewer()], [Viewer(), Viewer()]
    try:
        async with asyncio.timeout(20):
            for v in early:
                await v.play(server, "r1")
            await host.publish(server, "r1")
            await events.progress.until(lambda: events.kinds() == ["live"])
            await host.video.progress.until(lambda: host.video.sent > 20)
            for v in late:
                await v.play(server, "r1")
            for v in early + late:
                await v.progress.until(
                    lambda v=v: len(v.counters) >= 30 and v.audio_frames >= 25  # type: ignore[misc]
                )
            stats = server.stats()
            assert stats.viewers == 4 and [w.viewers for w in stats.workers] == [2, 2]
            assert server.workers is not None
            await server.workers.until(lambda: server.stats().frames_out >= 4 * 30)

            # Every viewer asks for a keyframe twice at once: the host gets one now, one later.
            pli_at_host = 0

            def count_pli() -> None:
                nonlocal pli_at_host
                pli_at_host += 1

            sender = next(t.sender for t in host.pc.getTransceivers() if t.kind == "video")
            sender._send_keyframe = count_pli  # type: ignore[method-assign]
            room = server.rooms["r1"]
            sent, coalesced = room.keyframes.sent, room.keyframes.coalesced
            for v in early + late:
                receiver = video_receiver(v)
                ssrc = receiver.getSynchronizationSources()[0].source
                for _ in range(2):
                    await receiver._send_rtcp_pli(ssrc)
            await host.video.progress.until(lambda: pli_at_host >= 2)
        assert room.keyframes.sent - sent == 2
        assert room.keyframes.coalesced - coalesced >= 1
        assert pli_at_host == 2
        for v in early:
            assert v.counters[0] == 100  # the host's first frame, a keyframe
        for v in early + late:
            assert consecutive(v.counters[:30])
            assert v.audio_peak > 1000
    finally:
        for v in early + late:
            await v.close()
        await host.close()
