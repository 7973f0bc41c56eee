"""The hooks into aiortc internals: version pinning, the start-up check of every private name,
packetising, codec choice, PLI, ICE."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import aioice.ice
import aiortc
import pytest
from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.codecs import depayload
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RTCP_PSFB_FIR, RTCP_PSFB_PLI, RtcpPsfbPacket, RtpPacket
from pylibsrtp import Policy, Session

from media import aiortc_compat as compat
from media.aiortc_compat import fast_path, ice
from media.aiortc_compat.internals import INTERNALS, SENDER_ENCODER, AiortcInternalsError
from media.frames import EncodedFrame
from media.rtp_writer import RtpWriter
from tests.conftest import NodeFactory
from tests.media.test_rtp_path import Link


def test_supported_versions() -> None:
    compat.check_aiortc_version()
    compat.check_aiortc_version("1.9.0")
    for version in ("1.8.0", "1.17.0", "2.0.0"):
        with pytest.raises(RuntimeError, match="supports aiortc"):
            compat.check_aiortc_version(version)


async def test_every_listed_internal_is_in_the_installed_releases() -> None:
    compat.check_internals()
    assert len({(i.owner, i.name) for i in INTERNALS}) == len(INTERNALS)


async def test_a_node_refuses_to_start_without_an_internal(
    start_node: NodeFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(RTCRtpReceiver, "_send_rtcp_pli")
    with pytest.raises(AiortcInternalsError) as refused:
        await start_node()
    assert "aiortc.RTCRtpReceiver._send_rtcp_pli" in str(refused.value)
    assert f"aiortc {aiortc.__version__}" in str(refused.value)


async def test_a_missing_instance_attribute_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    # Name-mangled attributes are set in __init__: the check reads them on a sender it builds.
    init = RTCRtpSender.__init__

    def without_encoder_slot(self: RTCRtpSender, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        delattr(self, SENDER_ENCODER)

    monkeypatch.setattr(RTCRtpSender, "__init__", without_encoder_slot)
    with pytest.raises(AiortcInternalsError, match=f"RTCRtpSender.{SENDER_ENCODER}"):
        compat.check_internals()


@pytest.mark.parametrize("size", [1, 1200, 5000])
def test_vp8_packer_round_trip(size: int) -> None:
    data = bytes(range(256)) * (size // 256 + 1)
    frame = EncodedFrame("VP8", data[:size], 3000, False)
    packer = compat.FramePacker()
    payloads, ts = packer.pack(frame)
    codec = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
    assert ts == 3000
    assert b"".join(depayload(codec, p) for p in payloads) == frame.data
    assert all(len(p) <= 1300 for p in payloads)


def test_h264_packer_round_trip() -> None:
    nalus = [b"\x67" + b"s" * 10, b"\x68" + b"p" * 4, b"\x65" + bytes(range(256)) * 20]
    data = b"".join(b"\x00\x00\x00\x01" + n for n in nalus)
    payloads, _ = compat.FramePacker().pack(EncodedFrame("H264", data, 0, True))
    codec = RTCRtpCodecParameters(mimeType="video/H264", clockRate=90000, payloadType=96)
    assert b"".join(depayload(codec, p) for p in payloads) == data


def test_opus_packer_passes_through() -> None:
    assert compat.FramePacker().pack(EncodedFrame("opus", b"abc", 960, True)) == ([b"abc"], 960)


def test_packer_refuses_to_encode() -> None:
    with pytest.raises(RuntimeError):
        compat.FramePacker().encode(object())


async def test_viewer_pli_and_fir_reach_the_room() -> None:
    asked: list[int] = []
    sender = RTCRtpSender("video", Link().sender_end)
    compat.attach_sender(sender, lambda: asked.append(1))
    for fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
        await sender._handle_rtcp_packet(RtcpPsfbPacket(fmt=fmt, ssrc=1, media_ssrc=2))
    assert asked == [1, 1]


async def test_restrict_codecs_keeps_preference_order_and_rtx() -> None:
    client = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    server = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        client.addTransceiver("video", direction="recvonly")
        await client.setLocalDescription(await client.createOffer())
        assert client.localDescription is not None
        await server.setRemoteDescription(
            RTCSessionDescription(sdp=client.localDescription.sdp, type="offer")
        )
        (transceiver,) = server.getTransceivers()
        assert compat.restrict_codecs(transceiver, ["H264"]) == "H264"
        names = [c.mimeType for c in transceiver._codecs]
        assert set(names) == {"video/H264", "video/rtx"} and names[0] == "video/H264"
        assert compat.negotiated_codec(transceiver) == "H264"
        assert compat.restrict_codecs(transceiver, ["VP8"]) is None
    finally:
        await client.close()
        await server.close()


def test_offer_media_lists_sections() -> None:
    sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendonly\r\n"
    sdp += "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"
    assert compat.offer_media(sdp) == [("audio", "sendonly")]
    with pytest.raises(ValueError, match="unparsable"):
        compat.offer_media("v=0\r\nm=application 9 x 5000\r\n")


def test_ice_addresses_setting() -> None:
    try:
        compat.set_ice_addresses(["127.0.0.1", "::1"])
        assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False) == ["127.0.0.1"]
        assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True) == ["127.0.0.1", "::1"]
        compat.set_ice_addresses([])
        assert aioice.ice.get_host_addresses is ice._original_get_host_addresses
    finally:
        compat.set_ice_addresses(["127.0.0.1"])


async def test_candidates_are_the_configured_addresses() -> None:
    compat.set_ice_addresses(["127.0.0.1"])
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        pc.addTransceiver("audio")
        await pc.setLocalDescription(await pc.createOffer())
        assert pc.localDescription is not None
        candidates = [
            line for line in pc.localDescription.sdp.splitlines() if "a=candidate" in line
        ]
        assert candidates and all(" 127.0.0.1 " in c for c in candidates)
    finally:
        await pc.close()


@contextlib.asynccontextmanager
async def udp_viewer(session: Any) -> AsyncIterator[tuple[Any, socket.socket]]:
    """(a DTLS transport as SrtpUdpSink reads it, sending on a UDP socket, the viewer's socket)."""
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(2)
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
    )
    try:
        pair = SimpleNamespace(
            remote_addr=receiver.getsockname(), protocol=SimpleNamespace(transport=transport)
        )
        dtls = SimpleNamespace(
            _tx_srtp=session,
            transport=SimpleNamespace(_connection=SimpleNamespace(_nominated={1: pair})),
        )
        yield dtls, receiver
    finally:
        transport.close()
        receiver.close()


def srtp_sessions() -> tuple[Session, Session]:
    key = bytes(range(30))
    tx = Session(Policy(key=key, ssrc_type=Policy.SSRC_ANY_OUTBOUND))
    rx = Session(Policy(key=key, ssrc_type=Policy.SSRC_ANY_INBOUND))
    return tx, rx


def received_frame(receiver: socket.socket, rx: Session, frame: EncodedFrame) -> bytes:
    got = [rx.unprotect(receiver.recv(2048)) for _ in frame.payloads]
    codec = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
    return b"".join(depayload(codec, p[12:]) for p in got)


async def test_srtp_udp_sink_batches_a_frame_and_each_datagram_decrypts() -> None:
    tx, rx = srtp_sessions()
    async with udp_viewer(tx) as (dtls, receiver):
        sink = compat.SrtpUdpSink(dtls)
        writer = RtpWriter(codec="VP8", ssrc=1, payload_type=96, sink=sink)
        frame = compat.packetize_once(EncodedFrame("VP8", bytes(range(256)) * 30, 0, True))
        writer.write(frame)
        assert received_frame(receiver, rx, frame) == frame.data
        # one sendmsg for the frame's packets when the kernel has UDP GSO, else one each
        assert sink.sends in (1, len(frame.payloads))
        sink.close()


async def test_srtp_fast_path_fallback_is_logged_once_and_reported(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(fast_path, "_logged_fallbacks", set())
    reasons: list[str] = []
    frame = compat.packetize_once(EncodedFrame("VP8", bytes(range(256)) * 30, 0, True))
    with caplog.at_level(logging.WARNING, logger=fast_path.__name__):
        for _ in range(2):
            # Fresh sessions each time: a second writer starts at another random sequence number,
            # which the receiving session's replay window would refuse as too old.
            tx, rx = srtp_sessions()
            # Without pylibsrtp's private srtp_t the sink protects through the public API.
            public_only = SimpleNamespace(protect=tx.protect)
            async with udp_viewer(public_only) as (dtls, receiver):
                sink = compat.SrtpUdpSink(dtls, on_fallback=reasons.append)
                RtpWriter(codec="VP8", ssrc=1, payload_type=96, sink=sink).write(frame)
                assert received_frame(receiver, rx, frame) == frame.data
                assert sink.sends == len(frame.payloads)
                sink.close()
    assert reasons == ["pylibsrtp_internals"] * 2
    logged = [r.getMessage() for r in caplog.records if r.name == fast_path.__name__]
    assert len(logged) == 1 and 'reason="pylibsrtp_internals"' in logged[0]


async def test_publisher_sockets_get_a_large_receive_buffer() -> None:
    import os
    import socket

    from aiortc import RTCPeerConnection as PC

    a, b = PC(RTCConfiguration(iceServers=[])), PC(RTCConfiguration(iceServers=[]))
    try:
        compat.set_ice_addresses(["127.0.0.1"])
        a.addTransceiver("audio", direction="sendonly")
        await a.setLocalDescription(await a.createOffer())
        assert a.localDescription is not None
        await b.setRemoteDescription(a.localDescription)
        await b.setLocalDescription(await b.createAnswer())
        (transceiver,) = b.getTransceivers()
        assert compat.enlarge_receive_buffers(transceiver.receiver, 1 << 20) >= 1
        connection = transceiver.receiver.transport.transport._connection
        sock = connection._protocols[0].transport.get_extra_info("socket")
        # without root the kernel caps it at net.core.rmem_max
        expected = 1 << 20 if os.geteuid() == 0 else 1
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) >= expected
    finally:
        await a.close()
        await b.close()


def _video_packet(seq: int, timestamp: int, marker: bool) -> RtpPacket:
    packet = RtpPacket(payload_type=96, sequence_number=seq, timestamp=timestamp, marker=marker)
    packet._data = f"{seq};".encode()  # type: ignore[attr-defined]  # what aiortc's depayload sets
    return packet


def test_marker_jitter_buffer_releases_a_frame_on_its_last_packet() -> None:
    buffer = compat.MarkerJitterBuffer(capacity=512)
    assert buffer.add(_video_packet(65534, 9000, False)) == (False, None)
    _, frame = buffer.add(_video_packet(65535, 9000, False))
    assert frame is None
    _, frame = buffer.add(_video_packet(0, 9000, True))  # wraps; no next frame needed
    assert frame is not None
    assert (frame.data, frame.timestamp) == (b"65534;65535;0;", 9000)


def test_marker_jitter_buffer_waits_for_a_reordered_packet() -> None:
    buffer = compat.MarkerJitterBuffer(capacity=512)
    buffer.add(_video_packet(10, 3000, False))
    _, frame = buffer.add(_video_packet(12, 3000, True))  # 11 is late: the frame is not whole
    assert frame is None
    _, frame = buffer.add(_video_packet(11, 3000, False))
    assert frame is not None and frame.data == b"10;11;12;"
    _, frame = buffer.add(_video_packet(13, 6000, True))  # the next frame starts clean
    assert frame is not None and (frame.data, frame.timestamp) == (b"13;", 6000)


def test_marker_jitter_buffer_falls_back_to_timestamp_change_without_markers() -> None:
    buffer = compat.MarkerJitterBuffer(capacity=512)
    buffer.add(_video_packet(1, 3000, False))
    _, frame = buffer.add(_video_packet(2, 3000, False))
    assert frame is None
    _, frame = buffer.add(_video_packet(3, 6000, False))
    assert frame is not None and (frame.data, frame.timestamp) == (b"1;2;", 3000)
