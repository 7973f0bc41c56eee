"""H.264 and Opus through the forwarder, and proof that the server neither decodes nor encodes."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

import aiortc.rtcrtpreceiver
import aiortc.rtcrtpsender
import pytest

from media import MediaServer
from tests.support.peers import Events, Host, Viewer


def consecutive(counters: list[int]) -> bool:
    return all(b == a + 1 for a, b in itertools.pairwise(counters))


async def test_h264_and_opus(server: MediaServer, events: Events) -> None:
    host = Host(codec="H264")
    viewer = Viewer()
    try:
        async with asyncio.timeout(15):
            await host.publish(server, "r1")
            await host.video.progress.until(lambda: host.video.sent > 10)
            await viewer.play(server, "r1")
            await viewer.progress.until(
                lambda: len(viewer.counters) >= 30 and viewer.audio_frames >= 25
            )
        assert server.rooms["r1"].video_codec == "H264"
        assert consecutive(viewer.counters)
        assert viewer.audio_peak > 1000
        assert "H264" in (viewer.pc.remoteDescription.sdp if viewer.pc.remoteDescription else "")
    finally:
        await viewer.close()
        await host.close()


def _counting(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> list[str]:
    calls: list[str] = []
    original: Callable[[Any], Any] = getattr(module, name)

    def wrapper(codec: Any) -> Any:
        calls.append(codec.mimeType)
        return original(codec)

    monkeypatch.setattr(module, name, wrapper)
    return calls


async def test_server_runs_no_decoder_and_no_encoder(
    server: MediaServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoders = _counting(monkeypatch, aiortc.rtcrtpreceiver, "get_decoder")
    encoders = _counting(monkeypatch, aiortc.rtcrtpsender, "get_encoder")
    host = Host()
    viewers = [Viewer(), Viewer(), Viewer()]
    try:
        async with asyncio.timeout(10):
            await host.publish(server, "r1")
            for v in viewers:
                await v.play(server, "r1")
            for v in viewers:
                await v.progress.until(
                    lambda v=v: len(v.counters) >= 10 and v.audio_frames >= 10  # type: ignore[misc]
                )
    finally:
        for v in viewers:
            await v.close()
        await host.close()
    # Only the test's own peers code: the host encodes its 2 tracks, each viewer decodes its 2.
    assert sorted(encoders) == ["audio/opus", "video/VP8"]
    assert len(decoders) == 2 * len(viewers)
    stats = server.stats()
    assert stats.frames_out > 0 and stats.frames_in > 0
