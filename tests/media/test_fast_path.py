"""The fast send path (ForwardSender + RtpWriter) at the RTP level, over the in-memory Link with
loss and reordering: the same properties as the aiortc sender path in test_rtp_path.

Downtrack -> ForwardSender (RtpWriter) -> sink -> Link (drop / swap / NACK+RTX)
  -> aiortc RTCRtpReceiver (ReceiverTap) -> frames out
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

from aiortc import RTCRtpReceiver, RTCRtpSender
from aiortc.codecs.vpx import VpxPayloadDescriptor
from aiortc.rtcrtpparameters import (
    RTCRtcpParameters,
    RTCRtpDecodingParameters,
    RTCRtpReceiveParameters,
    RTCRtpRtxParameters,
    RTCRtpSendParameters,
)
from aiortc.rtcrtpreceiver import RemoteStreamTrack

from media.aiortc_compat import ForwardSender, IdleTrack, ReceiverTap, attach_sender, packetize_once
from media.forwarder import Downtrack
from media.frames import VIDEO_FRAME_TICKS, EncodedFrame
from tests.media.test_rtp_path import RTX, VP8, Link, index_of, media_packets, timestamp_steps
from tests.support.peers import Signal


class LinkSink:
    """A PacketSink onto the Link, in order, through one pump task (the Link is async)."""

    def __init__(self, link: Link) -> None:
        self.link = link
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.task = asyncio.ensure_future(self._pump())

    def send(self, headers: Sequence[bytes], bodies: Sequence[bytes]) -> None:
        for header, body in zip(headers, bodies, strict=True):
            self.queue.put_nowait(header + body)

    async def _pump(self) -> None:
        while True:
            data = await self.queue.get()
            await self.link.from_sender(data)


def vp8_frame(index: int, key: bool, size: int = 3000, epoch: int = 1) -> EncodedFrame:
    header = bytes([0x10, 0, 0, 0x9D, 0x01, 0x2A]) if key else bytes([0x11, 0, 0, 0, 0, 0])
    body = index.to_bytes(4, "big") * (size // 4)
    frame = EncodedFrame("VP8", header + body, index * VIDEO_FRAME_TICKS, key, epoch)
    return packetize_once(frame)


class FastPath:
    def __init__(self, link: Link, max_queue: int = 100) -> None:
        self.link = link
        self.keyframe_requests = 0
        self.downtrack = Downtrack("video", max_queue, codec="VP8", on_need_keyframe=self._kf)
        self.sender = RTCRtpSender(IdleTrack("video"), link.sender_end)
        attach_sender(self.sender, self._kf)
        self.receiver = RTCRtpReceiver("video", link.receiver_end)
        self.receiver._track = RemoteStreamTrack(kind="video")
        self.frames: list[EncodedFrame] = []
        self.progress = Signal()
        self.tap = ReceiverTap(self.receiver, "video", self._on_frame, epoch=1)
        link.sender, link.receiver = self.sender, self.receiver
        self.sink: LinkSink | None = None
        self.forward: ForwardSender | None = None
        self.first_frames = 0

    def _kf(self) -> None:
        self.keyframe_requests += 1

    def _on_frame(self, frame: EncodedFrame) -> None:
        self.frames.append(frame)
        self.progress.notify()

    def _first(self, downtrack: Downtrack) -> None:
        self.first_frames += 1

    async def start(self) -> None:
        self.receiver._set_rtcp_ssrc(1234)
        await self.receiver.receive(
            RTCRtpReceiveParameters(
                codecs=[VP8, RTX],
                encodings=[
                    RTCRtpDecodingParameters(
                        ssrc=self.sender._ssrc,
                        payloadType=VP8.payloadType,
                        rtx=RTCRtpRtxParameters(ssrc=self.sender._rtx_ssrc),
                    )
                ],
                muxId="0",
            )
        )
        await self.sender.send(
            RTCRtpSendParameters(codecs=[VP8, RTX], muxId="0", rtcp=RTCRtcpParameters(cname="t"))
        )
        # What the server does once the viewer's DTLS is up.
        self.sink = LinkSink(self.link)
        transceiver: Any = SimpleNamespace(
            sender=self.sender, _codecs=[VP8, RTX], mid="0", _headerExtensions=[]
        )
        self.forward = ForwardSender(transceiver, self.downtrack, self._first, sink=self.sink)

    async def stop(self) -> None:
        if self.forward is not None:
            self.forward.close()
        if self.sink is not None:
            self.sink.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.sink.task
        await self.sender.stop()
        await self.receiver.stop()


async def test_frames_cross_loss_and_reordering_intact() -> None:
    link = Link(drop={5, 17}, swap={9, 30})
    path = FastPath(link)
    await path.start()
    try:
        frames = [vp8_frame(i, key=i == 0) for i in range(41)]
        for frame in frames[:21]:
            path.downtrack.offer(frame)
        # The writer sends a burst before any NACK comes back, so repairs arrive after it; as in a
        # live stream, later frames push the repaired ones out of the receiver's jitter buffer.
        async with asyncio.timeout(5):
            for frame in frames[21:]:
                if len(path.frames) >= 20:
                    break
                await asyncio.sleep(0.05)
                path.downtrack.offer(frame)
            await path.progress.until(lambda: len(path.frames) >= 20)
    finally:
        await path.stop()
    assert [index_of(f.data) for f in path.frames[:20]] == list(range(20))
    assert [f.data for f in path.frames[:20]] == [f.data for f in frames[:20]]
    assert path.frames[0].keyframe and not any(f.keyframe for f in path.frames[1:])
    # the losses were repaired by NACK from the writer's per-viewer history, via RTX
    assert len(link.nacked) >= 2
    assert any(p.payload_type == RTX.payloadType for p in link.sent)
    assert path.first_frames == 1


async def test_sequence_and_timestamps_stay_continuous_across_a_keyframe_skip() -> None:
    link = Link()
    path = FastPath(link, max_queue=4)
    # The viewer is not connected yet: its queue overflows and it skips to a keyframe.
    for i in range(10):
        path.downtrack.offer(vp8_frame(i, key=i == 0))
    assert path.downtrack.waiting_keyframe and path.keyframe_requests == 1
    for i in range(10, 13):
        path.downtrack.offer(vp8_frame(i, key=i == 10))
    await path.start()
    try:
        path.downtrack.offer(vp8_frame(13, key=False))
        async with asyncio.timeout(5):
            await path.progress.until(lambda: len(path.frames) >= 4)
    finally:
        await path.stop()
    assert [index_of(f.data) for f in path.frames] == [10, 11, 12, 13]
    packets = media_packets(link)
    seqs = [p.sequence_number for p in packets]
    assert all(b == (a + 1) % 65536 for a, b in itertools.pairwise(seqs))
    assert timestamp_steps(packets) == [VIDEO_FRAME_TICKS] * 3
    pids = []
    for p in packets:
        descriptor, _ = VpxPayloadDescriptor.parse(p.payload)
        if descriptor.partition_start:
            pids.append(descriptor.picture_id)
    assert [b - a for a, b in itertools.pairwise(pids)] == [1, 1, 1]
    assert packets[-1].marker == 1


async def test_publisher_change_continues_the_viewer_timeline() -> None:
    link = Link()
    path = FastPath(link)
    await path.start()
    try:
        for i in range(3):
            path.downtrack.offer(vp8_frame(100 + i, key=i == 0, epoch=1))
        for i in range(3):
            path.downtrack.offer(vp8_frame(i, key=i == 0, epoch=2))
        async with asyncio.timeout(5):
            await path.progress.until(lambda: len(path.frames) >= 5)
    finally:
        await path.stop()
    assert timestamp_steps(media_packets(link)) == [VIDEO_FRAME_TICKS] * 5


async def test_sender_reports_carry_the_writers_counts() -> None:
    path = FastPath(Link())
    await path.start()
    try:
        path.downtrack.offer(vp8_frame(0, key=True))
        forward = path.forward
        assert forward is not None
        stats = await path.sender.getStats()
        (outbound,) = [s for s in stats.values() if s.type == "outbound-rtp"]
        assert outbound.packetsSent == forward.writer.packets > 0
    finally:
        await path.stop()


async def test_closed_sender_stops_draining() -> None:
    path = FastPath(Link())
    await path.start()
    try:
        forward = path.forward
        assert forward is not None
        forward.close()
        path.downtrack.offer(vp8_frame(0, key=True))
        assert forward.writer.packets == 0 and path.downtrack.queued == 1
    finally:
        await path.stop()
