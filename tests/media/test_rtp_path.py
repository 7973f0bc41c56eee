"""The forwarding path at the RTP level, over an in-memory transport pair with loss and reordering.

publisher frames -> Downtrack -> ForwardTrack -> aiortc RTCRtpSender (FramePacker)
  -> Link (drop / swap / NACK+RTX) -> aiortc RTCRtpReceiver (ReceiverTap) -> frames out
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from aiortc import RTCRtpReceiver, RTCRtpSender
from aiortc.codecs.vpx import VpxPayloadDescriptor
from aiortc.rtcrtpparameters import (
    RTCRtcpParameters,
    RTCRtpCodecParameters,
    RTCRtpDecodingParameters,
    RTCRtpReceiveParameters,
    RTCRtpRtxParameters,
    RTCRtpSendParameters,
)
from aiortc.rtcrtpreceiver import RemoteStreamTrack
from aiortc.rtp import RTCP_RTPFB_NACK, RtcpPacket, RtcpRtpfbPacket, RtpPacket, is_rtcp

from media.aiortc_compat import ForwardTrack, ReceiverTap, attach_sender
from media.forwarder import Downtrack
from media.frames import VIDEO_FRAME_TICKS, EncodedFrame
from tests.support.peers import Signal

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=100)
RTX = RTCRtpCodecParameters(
    mimeType="video/rtx", clockRate=90000, payloadType=101, parameters={"apt": 100}
)


def vp8_frame(index: int, key: bool, size: int = 3000, epoch: int = 1) -> EncodedFrame:
    """A frame with a VP8 header and a body naming its index: several packets long."""
    header = bytes([0x10, 0, 0, 0x9D, 0x01, 0x2A]) if key else bytes([0x11, 0, 0, 0, 0, 0])
    body = index.to_bytes(4, "big") * (size // 4)
    return EncodedFrame("VP8", header + body, index * VIDEO_FRAME_TICKS, key, epoch)


def index_of(data: bytes) -> int:
    return int.from_bytes(data[6:10], "big")


class _End:
    state = "connected"
    _stats_id = "transport"

    def __init__(self, link: Link) -> None:
        self.link = link

    def _register_rtp_sender(self, *args: Any) -> None: ...
    def _unregister_rtp_sender(self, *args: Any) -> None: ...
    def _register_rtp_receiver(self, *args: Any) -> None: ...
    def _unregister_rtp_receiver(self, *args: Any) -> None: ...
    def _get_stats(self) -> dict[str, Any]:
        return {}


class _SenderEnd(_End):
    async def _send_rtp(self, data: bytes) -> None:
        await self.link.from_sender(data)


class _ReceiverEnd(_End):
    async def _send_rtp(self, data: bytes) -> None:
        await self.link.from_receiver(data)


class Link:
    """Carries one viewer's RTP to a receiver: drops or swaps the n-th first transmissions."""

    def __init__(self, drop: set[int] | None = None, swap: set[int] | None = None) -> None:
        self.drop = drop or set()
        self.swap = swap or set()  # packet n is delivered after packet n + 1
        self.sender_end = _SenderEnd(self)
        self.receiver_end = _ReceiverEnd(self)
        self.sent: list[RtpPacket] = []
        self.nacked: list[int] = []
        self.sender: RTCRtpSender | None = None
        self.receiver: RTCRtpReceiver | None = None
        self._held: RtpPacket | None = None
        self._count = 0

    async def from_sender(self, data: bytes) -> None:
        if is_rtcp(data):
            return  # sender reports are not under test
        packet = RtpPacket.parse(data)
        self.sent.append(packet)
        if packet.payload_type == RTX.payloadType:
            await self._deliver(packet)
            return
        n = self._count
        self._count += 1
        if n in self.drop:
            return
        if n in self.swap:
            self._held = packet
            return
        await self._deliver(packet)
        if self._held is not None:
            held, self._held = self._held, None
            await self._deliver(held)

    async def _deliver(self, packet: RtpPacket) -> None:
        assert self.receiver is not None
        await self.receiver._handle_rtp_packet(packet, arrival_time_ms=0)

    async def from_receiver(self, data: bytes) -> None:
        assert self.sender is not None
        for packet in RtcpPacket.parse(data):
            if isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
                self.nacked.extend(packet.lost)
            await self.sender._handle_rtcp_packet(packet)


class Path:
    """Downtrack -> aiortc sender -> Link -> aiortc receiver -> collected frames."""

    def __init__(self, link: Link, max_queue: int = 100) -> None:
        self.link = link
        self.keyframe_requests = 0
        self.downtrack = Downtrack("video", max_queue, codec="VP8", on_need_keyframe=self._kf)
        self.sender = RTCRtpSender(ForwardTrack(self.downtrack), link.sender_end)
        attach_sender(self.sender, self._kf)
        self.receiver = RTCRtpReceiver("video", link.receiver_end)
        self.receiver._track = RemoteStreamTrack(kind="video")
        self.frames: list[EncodedFrame] = []
        self.progress = Signal()
        self.tap = ReceiverTap(self.receiver, "video", self._on_frame, epoch=1)
        link.sender, link.receiver = self.sender, self.receiver

    def _kf(self) -> None:
        self.keyframe_requests += 1

    def _on_frame(self, frame: EncodedFrame) -> None:
        self.frames.append(frame)
        self.progress.notify()

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

    async def stop(self) -> None:
        await self.sender.stop()
        await self.receiver.stop()


def media_packets(link: Link) -> list[RtpPacket]:
    return [p for p in link.sent if p.payload_type == VP8.payloadType]


def timestamp_steps(packets: list[RtpPacket]) -> list[int]:
    """Differences between successive frames' RTP timestamps (modulo 2**32)."""
    stamps = list(dict.fromkeys(p.timestamp for p in packets))
    return [(b - a) % (1 << 32) for a, b in itertools.pairwise(stamps)]


async def test_frames_cross_loss_and_reordering_intact() -> None:
    link = Link(drop={5, 17}, swap={9, 30})
    path = Path(link)
    await path.start()
    try:
        frames = [vp8_frame(i, key=i == 0) for i in range(21)]
        for frame in frames:
            path.downtrack.offer(frame)
        async with asyncio.timeout(5):
            # the receiver emits a frame on its marked last packet: the last one needs no successor
            await path.progress.until(lambda: len(path.frames) >= 21)
    finally:
        await path.stop()
    assert [index_of(f.data) for f in path.frames] == list(range(21))
    assert [f.data for f in path.frames] == [f.data for f in frames]
    assert path.frames[0].keyframe and not any(f.keyframe for f in path.frames[1:])
    # the losses were repaired by NACK from the sender's per-viewer history, via RTX
    assert len(link.nacked) >= 2
    assert any(p.payload_type == RTX.payloadType for p in link.sent)


async def test_sequence_and_timestamps_stay_continuous_across_a_keyframe_skip() -> None:
    link = Link()
    path = Path(link, max_queue=4)
    # The viewer stalls (sender not started): its queue overflows and it skips to a keyframe.
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
    # one RTP timestamp per frame, advancing by the publisher's frame spacing
    assert timestamp_steps(packets) == [VIDEO_FRAME_TICKS] * 3
    # VP8 picture ids count the frames this viewer got, without holes
    pids = []
    for p in packets:
        descriptor, _ = VpxPayloadDescriptor.parse(p.payload)
        if descriptor.partition_start:
            pids.append(descriptor.picture_id)
    assert [b - a for a, b in itertools.pairwise(pids)] == [1, 1, 1]
    assert packets[-1].marker == 1


async def test_publisher_change_continues_the_viewer_timeline() -> None:
    link = Link()
    path = Path(link)
    await path.start()
    try:
        for i in range(3):
            path.downtrack.offer(vp8_frame(100 + i, key=i == 0, epoch=1))
        # The second publisher's clock starts at zero again.
        for i in range(3):
            frame = vp8_frame(i, key=i == 0, epoch=2)
            path.downtrack.offer(frame)
        async with asyncio.timeout(5):
            await path.progress.until(lambda: len(path.frames) >= 5)
    finally:
        await path.stop()
    assert timestamp_steps(media_packets(link)) == [VIDEO_FRAME_TICKS] * 5
