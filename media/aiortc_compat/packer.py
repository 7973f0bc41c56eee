"""Send side through aiortc's sender: it asks its "encoder" to `pack()` anything its track returns
that is not an `av.Frame`; we preset a packer that only packetises, so no encoder is ever built.
Keyframe requests a viewer sends (PLI/FIR) reach `RTCRtpSender._send_keyframe`; we reroute them."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from aiortc import RTCRtpSender
from aiortc.codecs import h264 as aiortc_h264
from aiortc.codecs import vpx as aiortc_vpx
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from media.aiortc_compat.internals import SENDER_ENCODER
from media.forwarder import Downtrack, DowntrackClosed
from media.frames import EncodedFrame
from media.rtp_writer import vp8_bodies


class FramePacker:
    """Stands in for a sender's encoder: packetises forwarded frames, never encodes."""

    def __init__(self) -> None:
        # One picture id sequence per viewer keeps it continuous across skipped frames.
        self._picture_id = 0

    def pack(self, frame: EncodedFrame) -> tuple[list[bytes], int]:
        if frame.codec == "VP8":
            payloads = aiortc_vpx.Vp8Encoder._packetize(frame.data, self._picture_id)
            self._picture_id = (self._picture_id + 1) % (1 << 15)
        elif frame.codec == "H264":
            nalus = aiortc_h264.H264Encoder._split_bitstream(frame.data)
            payloads = aiortc_h264.H264Encoder._packetize(nalus)
        else:
            payloads = [frame.data]
        return payloads, frame.timestamp

    def encode(self, frame: object, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        raise RuntimeError("forwarded media is never encoded")


class ForwardTrack(MediaStreamTrack):
    """A track whose recv() hands the sender already-encoded frames from a Downtrack."""

    def __init__(
        self, downtrack: Downtrack, on_first_frame: Callable[[Downtrack], None] | None = None
    ) -> None:
        super().__init__()
        self.kind = downtrack.kind
        self.downtrack = downtrack
        self._on_first_frame = on_first_frame

    # The sender packs whatever is not an av.Frame: here our frames, through FramePacker.
    async def recv(self) -> EncodedFrame:  # type: ignore[override]
        try:
            frame = await self.downtrack.next()
        except DowntrackClosed:
            self.stop()
            raise MediaStreamError from None
        if self.downtrack.frames_out == 1 and self._on_first_frame is not None:
            self._on_first_frame(self.downtrack)
        return frame


def attach_sender(sender: RTCRtpSender, on_keyframe_request: Callable[[], None]) -> FramePacker:
    """Make `sender` packetise forwarded frames and pass the viewer's PLI/FIR to us."""
    if not hasattr(sender, SENDER_ENCODER):
        raise RuntimeError("aiortc's RTCRtpSender has no encoder slot: check SUPPORTED_AIORTC")
    packer = FramePacker()
    setattr(sender, SENDER_ENCODER, packer)
    sender._send_keyframe = on_keyframe_request  # type: ignore[method-assign]
    return packer


def packetize_once(frame: EncodedFrame) -> EncodedFrame:
    """`frame` with its RTP payload bodies cut, once per room, for every viewer's RtpWriter."""
    if frame.codec == "VP8":
        payloads = vp8_bodies(frame.data)
    elif frame.codec == "H264":
        nalus = aiortc_h264.H264Encoder._split_bitstream(frame.data)
        payloads = tuple(aiortc_h264.H264Encoder._packetize(nalus))
    else:
        payloads = (frame.data,)
    return dataclasses.replace(frame, payloads=payloads)
