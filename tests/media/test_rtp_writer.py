"""The fast send path's RTP writer: headers, extensions, picture ids, NACK history and RTX."""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence

import pytest
from aiortc.codecs import depayload
from aiortc.codecs.vpx import VpxPayloadDescriptor
from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
    RTCRtpHeaderExtensionParameters,
    RTCRtpParameters,
)
from aiortc.rtp import HeaderExtensionsMap, RtpPacket, pack_header_extensions, unwrap_rtx

from media import aiortc_compat as compat
from media.frames import VIDEO_FRAME_TICKS, EncodedFrame
from media.rtp_writer import (
    HISTORY_SIZE,
    HeaderExtensionIds,
    RtpWriter,
    RtxParameters,
    abs_send_time,
    one_byte_extensions,
)

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"
AST_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"


class ListSink:
    def __init__(self) -> None:
        self.packets: list[bytes] = []
        self.sends = 0

    def send(self, headers: Sequence[bytes], bodies: Sequence[bytes]) -> None:
        self.sends += 1
        self.packets += [h + b for h, b in zip(headers, bodies, strict=True)]


def extensions_map() -> HeaderExtensionsMap:
    m = HeaderExtensionsMap()
    m.configure(
        RTCRtpParameters(
            headerExtensions=[
                RTCRtpHeaderExtensionParameters(id=1, uri=MID_URI),
                RTCRtpHeaderExtensionParameters(id=3, uri=AST_URI),
            ]
        )
    )
    return m


def writer(sink: ListSink, codec: str = "VP8", rtx: bool = False) -> RtpWriter:
    return RtpWriter(
        codec=codec,
        ssrc=0x11223344,
        payload_type=96 if codec != "opus" else 111,
        sink=sink,
        rtx=RtxParameters(payload_type=97, ssrc=0x55667788) if rtx else None,
        mid="1",
        extension_ids=HeaderExtensionIds(mid=1, abs_send_time=3),
        clock=lambda: 1000.0,
        rng=random.Random(7),
    )


def vp8(index: int, size: int = 4000) -> EncodedFrame:
    data = bytes([index % 256]) * size
    return compat.packetize_once(EncodedFrame("VP8", data, index * VIDEO_FRAME_TICKS, index == 0))


def test_one_byte_extensions_match_aiortc() -> None:
    elements = [(1, b"0"), (3, b"\x01\x02\x03")]
    profile, value = pack_header_extensions(elements)
    assert (
        one_byte_extensions(elements)
        == profile.to_bytes(2, "big") + (len(value) // 4).to_bytes(2, "big") + value
    )
    assert one_byte_extensions([]) == b""


def test_vp8_packets_parse_and_depayload_to_the_frame() -> None:
    sink = ListSink()
    w = writer(sink)
    frames = [vp8(i) for i in range(3)]
    for f in frames:
        w.write(f)
    packets = [RtpPacket.parse(p, extensions_map()) for p in sink.packets]
    assert sink.sends == 3  # one call per frame
    assert {p.ssrc for p in packets} == {0x11223344}
    assert {p.payload_type for p in packets} == {96}
    seqs = [p.sequence_number for p in packets]
    assert all(b == (a + 1) % 65536 for a, b in itertools.pairwise(seqs))
    assert {p.extensions.mid for p in packets} == {"1"}
    assert {p.extensions.abs_send_time for p in packets} == {abs_send_time(1000.0)}
    by_ts: dict[int, list[RtpPacket]] = {}
    for p in packets:
        by_ts.setdefault(p.timestamp, []).append(p)
    stamps = list(by_ts)
    assert [(b - a) % (1 << 32) for a, b in itertools.pairwise(stamps)] == [VIDEO_FRAME_TICKS] * 2
    pids = []
    for frame, group in zip(frames, by_ts.values(), strict=True):
        assert [p.marker for p in group] == [0] * (len(group) - 1) + [1]
        assert b"".join(depayload(VP8, p.payload) for p in group) == frame.data
        descriptors = [VpxPayloadDescriptor.parse(p.payload)[0] for p in group]
        assert [d.partition_start for d in descriptors] == [1] + [0] * (len(group) - 1)
        pids.append(descriptors[0].picture_id)
        assert len(group[0].payload) <= 1300
    # picture ids count this viewer's frames
    assert [b - a for a, b in itertools.pairwise(pids)] == [1, 1]
    assert w.packets == len(packets)


def test_vp8_payloads_match_aiortcs_packetiser() -> None:
    frame = vp8(0, size=5000)
    sink = ListSink()
    writer(sink).write(frame)
    ours = [RtpPacket.parse(p, extensions_map()).payload for p in sink.packets]
    packer = compat.FramePacker()
    assert ours == packer.pack(frame)[0]


def test_h264_and_opus_payloads_are_cut_once_per_room() -> None:
    nalus = [b"\x67" + b"s" * 10, b"\x68" + b"p" * 4, b"\x65" + bytes(range(256)) * 20]
    data = b"".join(b"\x00\x00\x00\x01" + n for n in nalus)
    frame = compat.packetize_once(EncodedFrame("H264", data, 0, True))
    assert list(frame.payloads) == compat.FramePacker().pack(frame)[0]
    sink = ListSink()
    writer(sink, "H264").write(frame)
    assert [RtpPacket.parse(p).payload for p in sink.packets] == list(frame.payloads)
    audio = compat.packetize_once(EncodedFrame("opus", b"abc", 960, True))
    assert audio.payloads == (b"abc",)


def test_retransmit_from_history_plain_and_over_rtx() -> None:
    sink = ListSink()
    w = writer(sink)
    w.write(vp8(0))
    first = RtpPacket.parse(sink.packets[0])
    assert w.retransmit(first.sequence_number)
    assert sink.packets[-1] == sink.packets[0]

    sink = ListSink()
    w = writer(sink, rtx=True)
    w.write(vp8(0))
    original = sink.packets[1]
    seq = RtpPacket.parse(original).sequence_number
    assert w.retransmit(seq)
    rtx = RtpPacket.parse(sink.packets[-1], extensions_map())
    assert rtx.payload_type == 97 and rtx.ssrc == 0x55667788
    recovered = unwrap_rtx(rtx, payload_type=96, ssrc=0x11223344)
    parsed = RtpPacket.parse(original, extensions_map())
    assert recovered.sequence_number == seq
    assert recovered.payload == parsed.payload
    assert recovered.timestamp == parsed.timestamp
    assert rtx.extensions.mid == "1"


def test_history_is_bounded() -> None:
    sink = ListSink()
    w = writer(sink, "opus")
    start = w.sequence_number
    for i in range(HISTORY_SIZE + 10):
        w.write(compat.packetize_once(EncodedFrame("opus", bytes([i % 256]), i * 960, True)))
    assert not w.retransmit(start)  # overwritten
    assert w.retransmit((start + HISTORY_SIZE + 9) % 65536)
    assert not w.retransmit((start + HISTORY_SIZE + 50) % 65536)  # never sent


def test_unpacketised_h264_is_refused() -> None:
    with pytest.raises(ValueError, match="packetised by the room"):
        writer(ListSink(), "H264").write(EncodedFrame("H264", b"\x00\x00\x01\x65", 0, True))
