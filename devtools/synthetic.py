"""Synthetic media for the benchmarks and the tests: no camera, no file.

`SyntheticVideoTrack` makes raw pictures at a fixed rate for aiortc to encode (320x240, 30 fps by
default): a moving bar (`moving_bar`) or a frame counter spelt in binary columns (`counter_bits`,
read back by `read_counter` after lossy coding, so latency and order can be measured end to end).
`ReplayTrack` replays packets encoded beforehand (`encode_vp8`, `encode_opus`), so a publisher
costs no encoding. Both are paced by the event loop's clock (`PacedTrack`).
"""

from __future__ import annotations

import asyncio
import fractions
from collections.abc import Callable
from typing import Any

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import VIDEO_CLOCK_RATE, VIDEO_TIME_BASE, MediaStreamError

WIDTH, HEIGHT, FPS = 320, 240, 30
BITS = 10  # counter bits, one column each (32 pixels wide at 320)
VIDEO_TB = fractions.Fraction(1, 90000)
AUDIO_TB = fractions.Fraction(1, 48000)

Plane = np.ndarray[Any, np.dtype[np.uint8]]
# A picture's luma plane (height x width) for frame `counter`; chroma stays grey.
Picture = Callable[[int, int, int], Plane]


def moving_bar(counter: int, width: int, height: int) -> Plane:
    """Grey, with a light bar 16 lines high moving down 4 lines a frame."""
    y = np.full((height, width), 128, dtype=np.uint8)
    bar = (counter * 4) % (height - 16)
    y[bar : bar + 16, :] = 235
    return y


def counter_bits(counter: int, width: int, height: int) -> Plane:
    """Dark, with the columns spelling `counter` (modulo 2**BITS) in binary light: robust to lossy
    coding. A moving bar makes consecutive frames differ beyond the bits."""
    y = np.full((height, width), 16, dtype=np.uint8)
    value = counter % (1 << BITS)
    column = width // BITS
    for bit in range(BITS):
        if value >> bit & 1:
            y[:, bit * column : (bit + 1) * column] = 235
    bar = (value * 7) % (height - 8)
    y[bar : bar + 8, :] = 128
    return y


def read_counter(frame: av.VideoFrame) -> int:
    """The counter (modulo 2**BITS) a decoded `counter_bits` picture spells."""
    gray = frame.to_ndarray(format="gray")
    column = gray.shape[1] // BITS
    value = 0
    for bit in range(BITS):
        strip = gray[:, bit * column + column // 4 : (bit + 1) * column - column // 4]
        if float(np.median(strip)) > 128:
            value |= 1 << bit
    return value


class PacedTrack(MediaStreamTrack):
    """Frames at `rate` a second, paced by the loop clock; at most `limit` (then the track ends).

    `resume_when_late`: after falling more than three frames behind (a starved, shared core),
    carry on at the rate instead of bursting to catch up."""

    def __init__(
        self, kind: str, rate: float, *, limit: int | None = None, resume_when_late: bool = False
    ) -> None:
        super().__init__()
        self.kind = kind
        self.sent = 0
        self._rate = rate
        self._limit = limit
        self._resume_when_late = resume_when_late
        self._t0: float | None = None

    async def _next_slot(self) -> None:
        """Wait for the next frame's time; MediaStreamError once `limit` frames went out."""
        loop = asyncio.get_running_loop()
        if self._t0 is None:
            self._t0 = loop.time()
        if self._limit is not None and self.sent >= self._limit:
            raise MediaStreamError
        wait = self._t0 + self.sent / self._rate - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        elif self._resume_when_late and wait < -3 / self._rate:
            self._t0 -= wait


class SyntheticVideoTrack(PacedTrack):
    """Raw `picture`s numbered from `start`, for aiortc to encode; `on_frame(counter)` is called
    as each leaves (after it is made: a capture time)."""

    def __init__(
        self,
        picture: Picture = moving_bar,
        *,
        start: int = 0,
        limit: int | None = None,
        fps: int = FPS,
        width: int = WIDTH,
        height: int = HEIGHT,
        on_frame: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__("video", fps, limit=limit)
        self.counter = start
        self._picture = picture
        self._fps = fps
        self._size = (width, height)
        self._on_frame = on_frame

    async def recv(self) -> av.VideoFrame:
        await self._next_slot()
        width, height = self._size
        yuv = np.full((height * 3 // 2, width), 128, dtype=np.uint8)
        yuv[:height] = self._picture(self.counter, width, height)
        frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        frame.pts = int(self.sent * VIDEO_CLOCK_RATE / self._fps)
        frame.time_base = VIDEO_TIME_BASE
        counter = self.counter
        self.counter += 1
        self.sent += 1
        if self._on_frame is not None:
            self._on_frame(counter)
        return frame


class ReplayTrack(PacedTrack):
    """Replays encoded `packets` in a loop at `rate` a second, `ticks` of its clock apart; the
    sender packs them (no encoder). A late start resumes at the rate."""

    def __init__(self, kind: str, packets: list[bytes], rate: float, ticks: int) -> None:
        super().__init__(kind, rate, resume_when_late=True)
        self._packets = packets
        self._ticks = ticks

    async def recv(self) -> av.Packet:  # type: ignore[type-arg]
        await self._next_slot()
        packet = av.Packet(self._packets[self.sent % len(self._packets)])
        packet.pts = self.sent * self._ticks
        packet.time_base = VIDEO_TB if self.kind == "video" else AUDIO_TB
        self.sent += 1
        return packet


def encode_vp8(frames: int, width: int = 640, height: int = 480) -> list[tuple[bytes, bool]]:
    """A changing picture (noise scrolling sideways) encoded once, VP8 at ~1.5 Mbit/s and 30 fps
    in libvpx's realtime mode: (packet, is keyframe) in order."""
    ctx = av.CodecContext.create("libvpx", "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
    ctx.time_base = fractions.Fraction(1, 30)
    ctx.framerate = fractions.Fraction(30, 1)
    ctx.bit_rate = 1_500_000
    ctx.gop_size = 60
    ctx.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    out: list[tuple[bytes, bool]] = []
    for i in range(frames):
        img = np.roll(noise, i * 4, axis=1)
        frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        out += [(bytes(p), p.is_keyframe) for p in ctx.encode(frame)]
    return out


def encode_opus(frames: int) -> list[bytes]:
    """A 440 Hz tone in 20 ms stereo Opus packets at 64 kbit/s."""
    ctx = av.CodecContext.create("libopus", "w")
    ctx.sample_rate, ctx.format, ctx.layout = 48000, "s16", "stereo"
    ctx.bit_rate = 64000
    out: list[bytes] = []
    for i in range(frames):
        t = (np.arange(960) + i * 960) / 48000
        pcm = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(np.repeat(pcm, 2).reshape(1, -1), layout="stereo")
        frame.sample_rate, frame.pts = 48000, i * 960
        out += [bytes(p) for p in ctx.encode(frame)]
    return out
