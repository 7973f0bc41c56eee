"""aiortc peers for the media tests: a synthetic host and decoding viewers, all on loopback."""

from __future__ import annotations

import asyncio
import fractions
import gc
import math
from collections.abc import Callable

import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import AUDIO_PTIME, MediaStreamError
from av import AudioFrame, VideoFrame

from devtools.synthetic import SyntheticVideoTrack, counter_bits, read_counter
from media import MediaEvent, MediaServer


class Signal:
    """Something tests wait on: `until(condition)` re-checks whenever `notify()` is called."""

    def __init__(self) -> None:
        self._changed = asyncio.Event()

    def notify(self) -> None:
        self._changed.set()

    async def until(self, condition: Callable[[], bool]) -> None:
        """Return once `condition()` holds; callers bound the wait with asyncio.timeout."""
        while not condition():
            self._changed.clear()
            await self._changed.wait()


class CounterVideoTrack(SyntheticVideoTrack):
    """30 fps counter-stamped frames (devtools.synthetic) numbered from `start`, bounded by `limit`
    frames; `progress` is notified as each leaves."""

    def __init__(self, start: int = 0, limit: int = 100_000) -> None:
        self.progress = Signal()
        super().__init__(
            counter_bits, start=start, limit=limit, on_frame=lambda _: self.progress.notify()
        )


class ToneAudioTrack(MediaStreamTrack):
    """A 440 Hz tone in 20 ms frames."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._samples = 0
        self._t0: float | None = None

    async def recv(self) -> AudioFrame:
        loop = asyncio.get_running_loop()
        if self._t0 is None:
            self._t0 = loop.time()
        rate = 48000
        n = int(rate * AUDIO_PTIME)
        wait = self._t0 + self._samples / rate - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        t = (np.arange(n) + self._samples) / rate
        pcm = (np.sin(2 * math.pi * 440 * t) * 8000).astype(np.int16).reshape(1, -1)
        frame = AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = rate
        frame.pts = self._samples
        frame.time_base = fractions.Fraction(1, rate)
        self._samples += n
        return frame


async def offer(pc: RTCPeerConnection) -> str:
    """Create and set the local offer (aiortc gathers candidates first: no trickle)."""
    await pc.setLocalDescription(await pc.createOffer())
    assert pc.localDescription is not None
    return str(pc.localDescription.sdp)


async def accept(pc: RTCPeerConnection, answer: str) -> None:
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))


def _prefer(pc: RTCPeerConnection, kind: str, mime: str) -> None:
    caps = RTCRtpSender.getCapabilities(kind)
    for t in pc.getTransceivers():
        if t.kind == kind:
            t.setCodecPreferences(
                [c for c in caps.codecs if c.mimeType.lower() in (mime.lower(), f"{kind}/rtx")]
            )


class Host:
    """A WHIP publisher: counter video (VP8 or H264) and a tone."""

    def __init__(self, codec: str = "VP8", start: int = 0, audio: bool = True) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.video = CounterVideoTrack(start)
        self.pc.addTransceiver(self.video, direction="sendonly")
        _prefer(self.pc, "video", f"video/{codec}")
        if audio:
            self.pc.addTransceiver(ToneAudioTrack(), direction="sendonly")
        self.session_id: str | None = None

    async def publish(self, server: MediaServer, room: str) -> str:
        self.session_id, answer = await server.publish(room, await offer(self.pc))
        await accept(self.pc, answer)
        return self.session_id

    async def close(self) -> None:
        await self.pc.close()


class Viewer:
    """A WHEP player that decodes what it receives and reads the counters off the pictures."""

    def __init__(self, audio: bool = True) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pc.addTransceiver("video", direction="recvonly")
        if audio:
            self.pc.addTransceiver("audio", direction="recvonly")
        self.counters: list[int] = []
        self.audio_frames = 0
        self.audio_peak = 0
        self.session_id: str | None = None
        self.progress = Signal()
        self._tasks: list[asyncio.Task[None]] = []
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        self._tasks.append(asyncio.ensure_future(self._consume(track)))

    async def _consume(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                if isinstance(frame, VideoFrame):
                    self.counters.append(read_counter(frame))
                elif isinstance(frame, AudioFrame):
                    self.audio_frames += 1
                    self.audio_peak = max(self.audio_peak, int(np.abs(frame.to_ndarray()).max()))
                self.progress.notify()
        except MediaStreamError:
            pass

    async def play(self, server: MediaServer, room: str) -> str:
        self.session_id, answer = await server.play(room, await offer(self.pc))
        await accept(self.pc, answer)
        return self.session_id

    async def close(self) -> None:
        await self.pc.close()
        for task in self._tasks:
            task.cancel()


def open_peer_connections() -> int:
    return sum(
        1
        for o in gc.get_objects()
        if isinstance(o, RTCPeerConnection) and o.connectionState != "closed"
    )


class Events:
    """Collects MediaEvents."""

    def __init__(self) -> None:
        self.items: list[MediaEvent] = []
        self.progress = Signal()

    def __call__(self, event: MediaEvent) -> None:
        self.items.append(event)
        self.progress.notify()

    def kinds(self) -> list[str]:
        return [e.kind for e in self.items]
