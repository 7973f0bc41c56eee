"""Keyframe detection from real encoder output."""

from __future__ import annotations

import fractions

import av
import numpy as np
import pytest

from media.frames import h264_nal_types, is_keyframe


def encode(codec: str, count: int) -> list[tuple[bytes, bool]]:
    ctx = av.CodecContext.create(codec, "w")
    ctx.width, ctx.height, ctx.pix_fmt = 64, 64, "yuv420p"
    ctx.time_base = fractions.Fraction(1, 30)
    ctx.framerate = fractions.Fraction(30, 1)
    ctx.gop_size = 10
    ctx.options = {"tune": "zerolatency"} if codec == "libx264" else {"lag-in-frames": "0"}
    out: list[tuple[bytes, bool]] = []
    for i in range(count):
        frame = av.VideoFrame.from_ndarray(
            np.full((64, 64, 3), i * 10 % 256, dtype=np.uint8), format="rgb24"
        ).reformat(format="yuv420p")
        frame.pts = i
        out += [(bytes(p), p.is_keyframe) for p in ctx.encode(frame)]
    out += [(bytes(p), p.is_keyframe) for p in ctx.encode(None)]
    return out


@pytest.mark.parametrize(("codec", "name"), [("libvpx", "VP8"), ("libx264", "H264")])
def test_keyframes_every_gop(codec: str, name: str) -> None:
    packets = encode(codec, 21)
    assert [is_keyframe(name, data) for data, _ in packets] == [key for _, key in packets]
    assert sum(key for _, key in packets) >= 2


def test_h264_nal_types() -> None:
    assert h264_nal_types(b"\x00\x00\x00\x01\x67ab\x00\x00\x01\x68c\x00\x00\x01\x65d") == [7, 8, 5]
    assert not is_keyframe("H264", b"\x00\x00\x01\x41xyz")
    assert is_keyframe("opus", b"\x01")
    assert not is_keyframe("VP8", b"\x10\x00")
