"""A receive-only WHEP viewer that never decodes, for the load generator.

Its receivers carry a `media.aiortc_compat.ReceiverTap`, which takes the frames aiortc assembles
instead of its decoder: the viewer counts RTP packets, payload bytes and whole frames, notes when
the first video frame arrived, and reads loss from aiortc's receiver statistics.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import aiohttp
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from media.aiortc_compat import ReceiverTap
from media.frames import EncodedFrame

ICE_ADDRESSES = ["127.0.0.1"]  # loopback only, like every other target of the tool


class MediaViewer:
    """One receive-only WHEP session: counts what arrives, decodes nothing."""

    def __init__(self, t0: float, seconds: int) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pc.addTransceiver("video", direction="recvonly")
        self.taps = [ReceiverTap(t.receiver, t.kind, self._on_frame, epoch=0)
                     for t in self.pc.getTransceivers()]  # fmt: skip
        self.t0 = t0
        self.started = time.time()
        self.first_frame_s: float | None = None
        self.last_frame_at = 0.0  # wall clock of the last video frame (0: none yet)
        self.first_frame = asyncio.Event()
        self.frames = 0
        self.keyframes = 0
        self.frames_per_s = [0] * (seconds + 1)
        self.location: str | None = None

    def _on_frame(self, frame: EncodedFrame) -> None:
        if frame.codec == "opus":
            return
        now = time.time()
        self.last_frame_at = now
        if self.first_frame_s is None:
            self.first_frame_s = now - self.started
            self.first_frame.set()
        self.frames += 1
        self.keyframes += frame.keyframe
        second = min(max(0, int(now - self.t0)), len(self.frames_per_s) - 1)
        self.frames_per_s[second] += 1

    async def play(self, http: aiohttp.ClientSession, url: str, room: str, token: str) -> None:
        """POST the offer to `/whep/{room}`, apply the answer (raises on a refusal)."""
        self.started = time.time()
        await self.pc.setLocalDescription(await self.pc.createOffer())
        offer = self.pc.localDescription.sdp
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/sdp"}
        async with http.post(f"{url.rstrip('/')}/whep/{room}", data=offer, headers=headers) as r:
            if r.status != 201:
                raise WhepError(f"whep_{r.status}")
            answer = await r.text()
            self.location = r.headers.get("Location")
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))

    @property
    def packets(self) -> int:
        return sum(t.packets for t in self.taps)

    @property
    def bytes(self) -> int:
        return sum(t.bytes for t in self.taps)

    async def loss(self) -> tuple[int, int]:
        """(video packets received, lost) from the receiver's RTCP-side statistics."""
        received = lost = 0
        for t in self.pc.getTransceivers():
            with contextlib.suppress(Exception):
                for s in (await t.receiver.getStats()).values():
                    if s.type == "inbound-rtp":
                        received += s.packetsReceived
                        lost += max(0, s.packetsLost)
        return received, lost

    async def close(self, http: aiohttp.ClientSession, url: str, token: str) -> None:
        if self.location:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with http.delete(url.rstrip("/") + self.location,
                                       headers={"Authorization": f"Bearer {token}"}):  # fmt: skip
                    pass
        await self.pc.close()


class WhepError(Exception):
    pass
