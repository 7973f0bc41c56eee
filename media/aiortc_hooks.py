"""Every hook into aiortc/aioice internals lives here, pinned to the versions it was checked on.

aiortc decodes what it receives and encodes what it sends. We forward instead:
- receive side: the receiver's jitter buffer assembles encoded frames and puts them on a queue read
  by a decoder thread; we put a tap in place of that queue, so frames come to us and the thread
  idles until stop (it never builds a decoder);
- send side: the sender asks its "encoder" to `pack()` anything its track returns that is not an
  `av.Frame`; we preset a packer that only packetises, so no encoder is ever built;
- keyframe requests a viewer sends (PLI/FIR) reach `RTCRtpSender._send_keyframe`; we reroute them;
- fast send path (`ForwardSender`): a viewer's RTP skips the sender's per-packet coroutine loop; we
  write headers in front of payloads cut once per room, protect with the DTLS transport's SRTP
  session (pylibsrtp, into its own buffer) and send on the nominated ICE pair's socket; the sender
  still answers RTCP: its NACK handler is rerouted to our history, its reports read our counters;
- ICE: aioice leaves loopback out of host candidates; the node's addresses are a setting.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import logging
import os
import socket
import struct
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import aioice.ice
import aiortc
import pylibsrtp
from aiortc import RTCRtpReceiver, RTCRtpSender, RTCRtpTransceiver
from aiortc import sdp as aiortc_sdp
from aiortc.codecs import h264 as aiortc_h264
from aiortc.codecs import vpx as aiortc_vpx
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtp import RtpPacket

from media.forwarder import Downtrack, DowntrackClosed
from media.frames import AUDIO_CLOCK, VIDEO_CLOCK, EncodedFrame, is_keyframe
from media.rtp_writer import (
    HeaderExtensionIds,
    PacketSink,
    RtpWriter,
    RtxParameters,
    ntp_time,
    vp8_bodies,
)

logger = logging.getLogger(__name__)

# The name-mangled attributes below were read in these releases; anything else must be re-checked.
SUPPORTED_AIORTC = ((1, 9), (1, 16))


def _version_tuple(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int("".join(ch for ch in minor if ch.isdigit()) or 0)


# The fast path writes into pylibsrtp's session buffer and calls libsrtp 2's srtp_protect itself.
SUPPORTED_PYLIBSRTP = ((0, 10), (1, 0))


def check_aiortc_version(version: str | None = None) -> None:
    """Raise RuntimeError unless aiortc's version is one these hooks were checked against."""
    found = _version_tuple(version if version is not None else aiortc.__version__)
    low, high = SUPPORTED_AIORTC
    if not low <= found <= high:
        raise RuntimeError(f"media.aiortc_hooks supports aiortc {low}..{high}, found {found}")


check_aiortc_version()

FrameSink = Callable[[EncodedFrame], None]

# Private attributes we read or replace (name-mangled in aiortc's classes).
_RECEIVER_DECODER_QUEUE = "_RTCRtpReceiver__decoder_queue"
_RECEIVER_JITTER_BUFFER = "_RTCRtpReceiver__jitter_buffer"
_RECEIVER_CODECS = "_RTCRtpReceiver__codecs"
_SENDER_ENCODER = "_RTCRtpSender__encoder"
# What RTCRtpSender._run_rtcp puts in its sender reports.
_SENDER_NTP_TIMESTAMP = "_RTCRtpSender__ntp_timestamp"
_SENDER_RTP_TIMESTAMP = "_RTCRtpSender__rtp_timestamp"
_SENDER_PACKET_COUNT = "_RTCRtpSender__packet_count"
_SENDER_OCTET_COUNT = "_RTCRtpSender__octet_count"
_ABS_SEND_TIME_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
_MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"


class _Codec(Protocol):
    mimeType: str
    payloadType: int


class MarkerJitterBuffer(JitterBuffer):
    """A video jitter buffer that releases a frame on its last packet (the RTP marker bit).

    aiortc's buffer releases a frame when the first packet of the next one arrives: a whole frame
    interval (33 ms at 30 fps) of latency on every hop, which an edge cascade pays twice. A frame
    is complete when every packet from the buffer's origin up to a marked packet is present with
    one timestamp; senders that set no marker still get aiortc's rule (timestamp change).
    """

    def __init__(self, capacity: int) -> None:
        super().__init__(capacity=capacity, is_video=True)

    def _remove_frame(self, sequence_number: int) -> JitterFrame | None:
        origin = self._origin
        if origin is None:
            return None
        packets: list[RtpPacket] = []
        for count in range(self._capacity):
            packet = self._packets[(origin + count) % self._capacity]
            if packet is None or (packets and packet.timestamp != packets[0].timestamp):
                break
            packets.append(packet)
            if packet.marker:
                self.remove(count + 1)
                data = b"".join(getattr(p, "_data", b"") for p in packets)
                return JitterFrame(data=data, timestamp=packet.timestamp)
        return super()._remove_frame(sequence_number)


class ReceiverTap:
    """Takes the encoded frames one RTCRtpReceiver assembles; asks the publisher for keyframes.

    It stands in for the receiver's decoder queue: frames go to `sink`, the `None` that ends the
    decoder thread goes on to the real queue so stop() still joins it.
    """

    def __init__(self, receiver: RTCRtpReceiver, kind: str, sink: FrameSink, epoch: int) -> None:
        self._receiver = receiver
        self._kind = kind
        self._sink = sink
        self._epoch = epoch
        self._decoder_queue: Any = getattr(receiver, _RECEIVER_DECODER_QUEUE)
        self._media_ssrc: int | None = None
        self._primary_pts: set[int] = set()
        self.frames = 0
        self.packets = 0
        self.bytes = 0
        setattr(receiver, _RECEIVER_DECODER_QUEUE, self)
        if kind == "audio":
            # Every Opus packet is a whole frame: do not hold four back as aiortc does for playout.
            setattr(receiver, _RECEIVER_JITTER_BUFFER, JitterBuffer(capacity=16, prefetch=0))
        else:
            setattr(receiver, _RECEIVER_JITTER_BUFFER, MarkerJitterBuffer(capacity=512))
        self._handle_rtp: Callable[[RtpPacket, int], Awaitable[None]] = receiver._handle_rtp_packet
        receiver._handle_rtp_packet = self._on_rtp  # type: ignore[method-assign]

    async def _on_rtp(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        # Learn the media SSRC (not the RTX one) so keyframe requests name the right stream.
        self.packets += 1
        self.bytes += len(packet.payload)
        if not self._primary_pts:
            codecs: dict[int, _Codec] = getattr(self._receiver, _RECEIVER_CODECS)
            self._primary_pts = {
                pt for pt, c in codecs.items() if not c.mimeType.lower().endswith("/rtx")
            }
        if packet.payload_type in self._primary_pts:
            self._media_ssrc = packet.ssrc
        await self._handle_rtp(packet, arrival_time_ms)

    # The decoder queue interface (`queue.Queue.put`), called from the event loop.
    def put(self, item: tuple[_Codec, JitterFrame] | None) -> None:
        if item is None:
            self._decoder_queue.put(None)
            return
        codec, jitter_frame = item
        name = codec.mimeType.split("/")[1].upper()
        if name == "OPUS":
            name = "opus"
        data: bytes = jitter_frame.data
        if not data:
            return
        self.frames += 1
        self._sink(
            EncodedFrame(
                codec=name,
                data=data,
                timestamp=jitter_frame.timestamp,
                keyframe=is_keyframe(name, data),
                epoch=self._epoch,
            )
        )

    def get(self) -> object:
        # Read by aiortc's decoder thread when the tap went in before receive(): it only ever
        # gets the None that ends it.
        return self._decoder_queue.get()

    @property
    def media_ssrc(self) -> int | None:
        return self._media_ssrc

    async def request_keyframe(self) -> bool:
        """Send a PLI to the publisher; False when its SSRC is not known yet."""
        if self._kind != "video" or self._media_ssrc is None:
            return False
        await self._receiver._send_rtcp_pli(self._media_ssrc)
        return True


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
    if not hasattr(sender, _SENDER_ENCODER):
        raise RuntimeError("aiortc's RTCRtpSender has no encoder slot: check SUPPORTED_AIORTC")
    packer = FramePacker()
    setattr(sender, _SENDER_ENCODER, packer)
    sender._send_keyframe = on_keyframe_request  # type: ignore[method-assign]
    return packer


def _codec_name(codec: _Codec) -> str:
    name = codec.mimeType.split("/")[1].upper()
    return "opus" if name == "OPUS" else name


def negotiated_codec(transceiver: RTCRtpTransceiver) -> str | None:
    """The codec name the sender will use (first negotiated), as EncodedFrame.codec spells it."""
    codecs: list[Any] = transceiver._codecs
    return _codec_name(codecs[0]) if codecs else None


def restrict_codecs(transceiver: RTCRtpTransceiver, preferred: Sequence[str]) -> str | None:
    """Keep only the `preferred` codecs (and their RTX) negotiated by setRemoteDescription, in
    that order, so the answer names only what we can forward; returns the codec used, or None.

    Done after setRemoteDescription because aiortc builds the answerer's transceivers there.
    """
    codecs: list[Any] = transceiver._codecs
    kept: list[Any] = []
    for name in preferred:
        for codec in codecs:
            if _codec_name(codec) == name:
                kept.append(codec)
                kept.extend(
                    c
                    for c in codecs
                    if _codec_name(c) == "RTX" and c.parameters.get("apt") == codec.payloadType
                )
    transceiver._codecs = kept
    return _codec_name(kept[0]) if kept else None


def offer_media(sdp: str) -> list[tuple[str, str]]:
    """(kind, direction) of each audio/video section of an SDP offer; ValueError if unparsable."""
    try:
        description = aiortc_sdp.SessionDescription.parse(sdp)
    except (AssertionError, ValueError, IndexError, KeyError, TypeError) as exc:
        # aiortc's parser asserts on malformed lines
        raise ValueError(f"unparsable SDP: {exc}") from exc
    return [
        (m.kind, m.direction or "sendrecv")
        for m in description.media
        if m.kind in ("audio", "video")
    ]


def clock_rate(kind: str) -> int:
    return AUDIO_CLOCK if kind == "audio" else VIDEO_CLOCK


_original_get_host_addresses = aioice.ice.get_host_addresses
_ice_addresses: list[str] = []


def _configured_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    return [a for a in _ice_addresses if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]


def set_ice_addresses(addresses: list[str]) -> None:
    """Offer exactly `addresses` as ICE host candidates in this process; [] restores aioice's own.

    Process-wide because a node has one set of addresses and aioice looks the function up globally.
    """
    _ice_addresses[:] = addresses
    if addresses:
        aioice.ice.get_host_addresses = _configured_host_addresses
    else:
        aioice.ice.get_host_addresses = _original_get_host_addresses


# -- fast send path -----------------------------------------------------------------------------


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


class IdleTrack(MediaStreamTrack):
    """A sender's track that never yields: the sender's own RTP loop idles, ForwardSender sends."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self._ended: asyncio.Future[None] | None = None

    async def recv(self) -> EncodedFrame:  # type: ignore[override]
        if self.readyState != "ended":
            self._ended = asyncio.get_running_loop().create_future()
            await self._ended
        raise MediaStreamError

    def stop(self) -> None:
        super().stop()
        if self._ended is not None and not self._ended.done():
            self._ended.set_result(None)


def _pylibsrtp_version() -> tuple[int, int]:
    return _version_tuple(getattr(pylibsrtp, "__version__", "0.0"))


class SrtpUdpSink:
    """Protects RTP with a viewer's SRTP session and sends it on the viewer's ICE socket.

    libsrtp protects each packet in place in our own buffer, packets laid end to end; a frame's
    packets (all the same size but the last) leave in one `sendmsg` with UDP GSO (`UDP_SEGMENT`),
    one datagram each on the wire. A full socket buffer drops the packets as the network would.
    """

    _TRAILER = 144  # libsrtp's SRTP_MAX_TRAILER_LEN
    _BATCH_BYTES = 60_000  # a GSO send stays under 64 KiB
    _BATCH_PACKETS = 64  # the kernel's UDP_MAX_SEGMENTS

    def __init__(self, dtls: Any, gso: bool = True) -> None:
        session = dtls._tx_srtp
        pair = dtls.transport._connection._nominated.get(1)
        if session is None or pair is None or pair.protocol.transport is None:
            raise ConnectionError("the viewer's DTLS/ICE is not connected")
        self._addr: tuple[str, int] = pair.remote_addr
        self._transport: Any = pair.protocol.transport
        self._session: Any = session
        self._sock, self._own_sock = _udp_socket(self._transport)
        binding: Any = getattr(pylibsrtp, "_binding", None)
        low, high = SUPPORTED_PYLIBSRTP
        self._direct = (
            binding is not None
            and hasattr(session, "_srtp")
            and low <= _pylibsrtp_version() <= high
            and self._sock is not None
        )
        self._gso = gso and self._direct and hasattr(socket, "SOL_UDP")
        if self._direct:
            self._cdata, self._view, self._length = _shared_buffer(binding)
            self._srtp: Any = session._srtp[0]
            self._protect: Any = binding.lib.srtp_protect
        self.dropped = 0
        self.sends = 0

    def send(self, headers: Sequence[bytes], bodies: Sequence[bytes]) -> None:
        if not self._direct:
            for header, body in zip(headers, bodies, strict=True):
                self._send_datagram(self._session.protect(header + body))
            return
        if self._own_sock is None and self._transport.is_closing():
            raise ConnectionError("the viewer's socket is closed")
        view = self._view
        cdata = self._cdata
        length = self._length
        protect = self._protect
        srtp = self._srtp
        gso = self._gso
        limit = self._BATCH_BYTES
        # held packets: [0, offset), `count` of them, all `segment` bytes but maybe the last
        offset = count = segment = 0
        short = False
        for header, body in zip(headers, bodies, strict=True):
            h = offset + len(header)
            n = h + len(body)
            if n - offset > PACKET_MAX_DATAGRAM:
                raise ValueError("RTP packet too long")
            view[offset:h] = header
            view[h:n] = body
            length[0] = n - offset
            if protect(srtp, cdata + offset, length) != 0:
                raise ConnectionError("SRTP protect failed")
            size = length[0]
            if not gso:
                self._send_datagram(view[offset : offset + size])
                continue
            if count and (size > segment or short):
                # Not a GSO continuation: send what is held, move this packet to the front.
                self._send_held(offset, count, segment)
                view[0:size] = view[offset : offset + size]
                offset = count = 0
                short = False
            if count == 0:
                segment = size
            elif size < segment:
                short = True
            count += 1
            offset += size
            if offset >= limit or count >= self._BATCH_PACKETS:
                self._send_held(offset, count, segment)
                offset = count = 0
                short = False
        if count:
            self._send_held(offset, count, segment)

    def _send_held(self, end: int, count: int, segment: int) -> None:
        data = self._view[:end]
        if count == 1:
            self._send_datagram(data)
            return
        try:
            self.sends += 1
            self._sock.sendmsg(
                [data], [(socket.SOL_UDP, UDP_SEGMENT, struct.pack("=H", segment))], 0, self._addr
            )
        except (BlockingIOError, InterruptedError):
            self.dropped += count
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.EIO, errno.ENOPROTOOPT, errno.EOPNOTSUPP):
                raise ConnectionError(str(exc)) from None
            # No UDP GSO on this socket or device: send them one by one from now on.
            self._gso = False
            for pos in range(0, end, segment):
                self._send_datagram(data[pos : min(end, pos + segment)])

    def _send_datagram(self, data: Any) -> None:
        sock = self._sock
        self.sends += 1
        if sock is None:
            self._transport.sendto(bytes(data), self._addr)
            return
        try:
            sock.sendto(data, self._addr)
        except (BlockingIOError, InterruptedError):
            self.dropped += 1
        except OSError as exc:
            raise ConnectionError(str(exc)) from None

    def congested(self) -> bool:
        """Whether the transport already holds unsent datagrams (asyncio/uvloop buffering)."""
        return bool(self._transport.get_write_buffer_size() > 256 * 1024)

    def close(self) -> None:
        if self._own_sock is not None:
            self._own_sock.close()
            self._own_sock = None
        self._sock = None
        self._direct = False


_SHARED_BUFFER: tuple[Any, memoryview, Any] | None = None


def _shared_buffer(binding: Any) -> tuple[Any, memoryview, Any]:
    """One send buffer for every sink of the process: `send` fills, protects and sends without
    yielding, and aiortc runs on one event loop thread, so sinks never overlap (a buffer per
    viewer was 2 x 63 KB of RSS)."""
    global _SHARED_BUFFER
    if _SHARED_BUFFER is None:
        size = SrtpUdpSink._BATCH_BYTES + 2 * (PACKET_MAX_DATAGRAM + SrtpUdpSink._TRAILER)
        cdata = binding.ffi.new("char[]", size)
        _SHARED_BUFFER = (cdata, memoryview(binding.ffi.buffer(cdata)), binding.ffi.new("int *"))
    return _SHARED_BUFFER


# The largest datagram a writer makes: header, extensions, descriptor, payload, SRTP trailer.
PACKET_MAX_DATAGRAM = 1500
UDP_SEGMENT = 103  # linux/udp.h; not exported by Python's socket module


def _udp_socket(transport: Any) -> tuple[Any, Any]:
    """(socket to send on, socket we own and must close) for an aioice datagram transport."""
    sock = getattr(transport, "_sock", None)
    if isinstance(sock, socket.socket):
        return sock, None  # asyncio's selector transport
    # uvloop: its transport wraps the file descriptor; send on a duplicate of it.
    extra = transport.get_extra_info("socket")
    if extra is None:
        return None, None
    own = socket.socket(fileno=os.dup(extra.fileno()))
    own.setblocking(False)
    return own, own


def _extension_ids(transceiver: RTCRtpTransceiver) -> HeaderExtensionIds:
    mid = abs_send_time = 0
    for ext in transceiver._headerExtensions:
        if ext.uri == _MID_URI:
            mid = ext.id
        elif ext.uri == _ABS_SEND_TIME_URI:
            abs_send_time = ext.id
    return HeaderExtensionIds(mid=mid, abs_send_time=abs_send_time)


def _rtx_parameters(sender: RTCRtpSender, codecs: list[Any]) -> RtxParameters | None:
    for codec in codecs[1:]:
        if _codec_name(codec) == "RTX" and codec.parameters.get("apt") == codecs[0].payloadType:
            return RtxParameters(payload_type=codec.payloadType, ssrc=sender._rtx_ssrc)
    return None


# aiortc sends a report every 0.5 to 1.5 s; its figures may lag by this much.
SENDER_REPORT_REFRESH_S = 0.2


class ForwardSender:
    """A viewer's track on the fast path: drains its Downtrack into an RtpWriter at each frame.

    The aiortc sender stays for RTCP: PLI/FIR (rerouted by attach_sender), NACK (rerouted here to
    the writer's history) and sender reports (fed from the writer's counters).
    """

    def __init__(
        self,
        transceiver: RTCRtpTransceiver,
        downtrack: Downtrack,
        on_first_frame: Callable[[Downtrack], None] | None = None,
        sink: PacketSink | None = None,
        gso: bool = True,
    ) -> None:
        sender = transceiver.sender
        codecs: list[Any] = transceiver._codecs
        if not codecs:
            raise ConnectionError("no codec negotiated")
        self._udp = SrtpUdpSink(sender.transport, gso=gso) if sink is None else None
        self._sink: PacketSink = sink if sink is not None else self._udp  # type: ignore[assignment]
        self._congested: Callable[[], bool] = getattr(self._sink, "congested", lambda: False)
        self.writer = RtpWriter(
            codec=_codec_name(codecs[0]),
            ssrc=sender._ssrc,
            payload_type=codecs[0].payloadType,
            sink=self._sink,
            rtx=_rtx_parameters(sender, codecs),
            mid=transceiver.mid,
            extension_ids=_extension_ids(transceiver),
        )
        self.sender = sender
        self.downtrack = downtrack
        self._on_first_frame = on_first_frame
        self.closed = False
        self._reported_at = 0.0
        sender._retransmit = self._retransmit  # type: ignore[method-assign]
        downtrack.set_listener(self.drain)

    def drain(self) -> None:
        """Write every queued frame now (a plain call from the room's fan-out)."""
        downtrack = self.downtrack
        writer = self.writer
        wrote = False
        while not self.closed and not self._congested():
            item = downtrack.pop()
            if item is None:
                break
            try:
                writer.write(*item)
            except ConnectionError:
                self.close()
                break
            wrote = True
            if downtrack.frames_out == 1 and self._on_first_frame is not None:
                self._on_first_frame(downtrack)
        if wrote and writer.last_sent_at - self._reported_at >= SENDER_REPORT_REFRESH_S:
            # What the sender's next report says: a (wall clock, RTP timestamp) pair and counts.
            self._reported_at = writer.last_sent_at
            sender = self.sender
            setattr(sender, _SENDER_NTP_TIMESTAMP, ntp_time(writer.last_sent_at))
            setattr(sender, _SENDER_RTP_TIMESTAMP, writer.last_rtp_timestamp)
            setattr(sender, _SENDER_PACKET_COUNT, writer.packets)
            setattr(sender, _SENDER_OCTET_COUNT, writer.octets)

    async def _retransmit(self, sequence_number: int) -> None:
        if self.closed:
            return
        try:
            self.writer.retransmit(sequence_number)
        except ConnectionError:
            self.close()

    def close(self) -> None:
        self.closed = True
        self.downtrack.set_listener(None)
        if self._udp is not None:
            self._udp.close()


SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)  # Linux; lets root pass rmem_max


def enlarge_receive_buffers(receiver: RTCRtpReceiver, size: int) -> int:
    """Give the ICE sockets under `receiver` a `size`-byte receive buffer; returns how many.

    A publisher's keyframe arrives as one burst (hundreds of KB at 1.5 Mbps): with the default
    buffer a busy fan-out loses its tail and the room stalls until the next keyframe.
    """
    connection = receiver.transport.transport._connection
    done = 0
    for protocol in getattr(connection, "_protocols", []):
        transport = getattr(protocol, "transport", None)
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is None:
            continue
        for option in (SO_RCVBUFFORCE, socket.SO_RCVBUF):
            try:
                sock.setsockopt(socket.SOL_SOCKET, option, size)
            except OSError:
                continue
            done += 1
            break
    return done
