"""A receive-only WHEP viewer that never decodes, for the load generator.

Its receivers carry a `media.aiortc_compat.ReceiverTap`, which takes the frames aiortc assembles
instead of its decoder: the viewer counts RTP packets, payload bytes and whole frames, notes when
the first video frame arrived, and reads loss from aiortc's receiver statistics.

`lean()` (once the first frame came) hands the viewer's datagrams to
`media.aiortc_compat.lean_receive` instead: each is SRTP-decrypted and its RTP header read in one
callback, far cheaper than aiortc's receive path (the media benchmark's viewers); frames are then
marker bits, loss is sequence gaps, and payload bytes and keyframes are no longer counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import aiohttp
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from media.aiortc_compat import ReceiverTap
from media.aiortc_compat.lean_receive import RtpSequence, payload_types, take_over_receive
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
        # the lean path's video packets received and lost (sequence gaps) in each second
        self.packets_per_s = [0] * (seconds + 1)
        self.lost_per_s = [0] * (seconds + 1)
        self.location: str | None = None
        self.lean_count: LeanCount | None = None  # once `lean()` took over
        # what the lean path reads (`lean_receive.LeanViewer`)
        self.undecryptable = 0
        self.first_frame_at: float | None = None

    def _on_frame(self, frame: EncodedFrame) -> None:
        if frame.codec == "opus":
            return
        self._frame(frame.keyframe)

    def _frame(self, keyframe: bool) -> None:
        now = time.time()
        self.last_frame_at = now
        if self.first_frame_s is None:
            self.first_frame_s = now - self.started
            self.first_frame.set()
        self.frames += 1
        self.keyframes += keyframe
        self.frames_per_s[self.second(now)] += 1

    def second(self, now: float) -> int:
        """The slot of the per-second counts `now` falls in."""
        return min(max(0, int(now - self.t0)), len(self.frames_per_s) - 1)

    def lean(self) -> bool:
        """Count from here on through the lean receive path (False: DTLS or ICE not there yet)."""
        if self.lean_count is not None:
            return True
        count = LeanCount(self)
        self.first_frame_at = time.monotonic()  # the lean path need not note a first frame
        kinds = payload_types(self.pc)
        streams = {pt: count for pt, kind in kinds.items() if kind == "video"}
        if not take_over_receive(self.pc, self, streams, count):
            return False
        self.lean_count = count
        return True

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
        lean = self.lean_count.received if self.lean_count is not None else 0
        return sum(t.packets for t in self.taps) + lean

    @property
    def bytes(self) -> int:
        return sum(t.bytes for t in self.taps)

    async def loss(self) -> tuple[int, int]:
        """(video packets received, lost) from the receiver's RTCP-side statistics (lean: since
        the lean path took over, from sequence gaps)."""
        if self.lean_count is not None:
            return self.lean_count.received, self.lean_count.lost
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


class LeanCount(RtpSequence):
    """The video RTP a lean viewer receives: packets and sequence gaps in each second, frames
    (marker bits)."""

    __slots__ = ("viewer",)

    def __init__(self, viewer: MediaViewer) -> None:
        super().__init__()
        self.viewer = viewer

    def add(self, seq: int, marker: int) -> None:
        viewer = self.viewer
        second = viewer.second(time.time())
        viewer.lost_per_s[second] += self.advance(seq)
        viewer.packets_per_s[second] += 1
        if marker:
            viewer._frame(False)

    @property
    def lost(self) -> int:
        return max(0, self.expected - self.received)
