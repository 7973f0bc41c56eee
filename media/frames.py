"""Encoded media frames as they are forwarded, and how to tell a keyframe from its bytes."""

from __future__ import annotations

from dataclasses import dataclass

VIDEO_CLOCK = 90_000
AUDIO_CLOCK = 48_000

# What a viewer's timeline advances by when the publisher changes (one frame at 30 fps, 20 ms).
VIDEO_FRAME_TICKS = VIDEO_CLOCK // 30
AUDIO_FRAME_TICKS = AUDIO_CLOCK // 50

H264_NAL_IDR = 5


@dataclass(slots=True, frozen=True)
class EncodedFrame:
    """One whole encoded frame of the publisher, shared read-only by every viewer.

    `timestamp` is in the codec's clock, counted from the publisher's first frame (never wraps);
    `epoch` changes with each publisher so viewers can rebase their timeline.
    """

    codec: str  # "VP8", "H264" or "opus"
    data: bytes
    timestamp: int
    keyframe: bool
    epoch: int = 0
    # RTP payload bodies, cut once per room for every viewer's writer (see media.rtp_writer).
    payloads: tuple[bytes, ...] = ()

    @property
    def kind(self) -> str:
        return "audio" if self.codec == "opus" else "video"


def is_vp8_keyframe(data: bytes) -> bool:
    # RFC 6386 9.1: the inverse key frame flag is bit 0; key frames carry the start code 9d 01 2a.
    return len(data) >= 6 and not data[0] & 1 and data[3:6] == b"\x9d\x01\x2a"


def h264_nal_types(data: bytes) -> list[int]:
    """NAL unit types of an Annex B access unit."""
    types = []
    pos = data.find(b"\x00\x00\x01")
    while pos != -1 and pos + 3 < len(data):
        types.append(data[pos + 3] & 0x1F)
        pos = data.find(b"\x00\x00\x01", pos + 3)
    return types


def is_h264_keyframe(data: bytes) -> bool:
    return H264_NAL_IDR in h264_nal_types(data)


def is_keyframe(codec: str, data: bytes) -> bool:
    """Whether a decoder can start at this frame (audio frames always can)."""
    if codec == "VP8":
        return is_vp8_keyframe(data)
    if codec == "H264":
        return is_h264_keyframe(data)
    return True
