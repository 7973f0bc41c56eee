"""Fast send path (`ForwardSender`): a viewer's RTP skips the sender's per-packet coroutine loop; we
write headers in front of payloads cut once per room, protect with the DTLS transport's SRTP
session (pylibsrtp, into its own buffer) and send on the nominated ICE pair's socket; the sender
still answers RTCP: its NACK handler is rerouted to our history, its reports read our counters."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import struct
from collections.abc import Callable, Sequence
from typing import Any

import pylibsrtp
from aiortc import RTCRtpSender, RTCRtpTransceiver
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from media.aiortc_compat.internals import (
    SENDER_NTP_TIMESTAMP,
    SENDER_OCTET_COUNT,
    SENDER_PACKET_COUNT,
    SENDER_RTP_TIMESTAMP,
)
from media.aiortc_compat.sdp import codec_name, extension_ids
from media.aiortc_compat.version import SUPPORTED_PYLIBSRTP, pylibsrtp_version
from media.forwarder import Downtrack
from media.frames import EncodedFrame
from media.rtp_writer import PacketSink, RtpWriter, RtxParameters, ntp_time

logger = logging.getLogger(__name__)


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


# Why a viewer's sink left the direct path (libsrtp into our buffer, UDP GSO): each is logged once
# per process and counted per node (MediaStats.fast_path_fallbacks).
FALLBACK_REASONS = {
    "pylibsrtp_internals": "pylibsrtp lacks _binding or Session._srtp: each packet is copied "
    "through Session.protect and sent alone",
    "pylibsrtp_version": f"pylibsrtp is not in {SUPPORTED_PYLIBSRTP}: each packet is copied "
    "through Session.protect and sent alone",
    "no_socket": "the ICE transport exposes no socket: each packet is copied through "
    "Session.protect and the transport's sendto",
    "no_gso": "no UDP GSO on this socket or device: one sendto per packet",
}
FallbackListener = Callable[[str], None]
_logged_fallbacks: set[str] = set()


class SrtpUdpSink:
    """Protects RTP with a viewer's SRTP session and sends it on the viewer's ICE socket.

    libsrtp protects each packet in place in our own buffer, packets laid end to end; a frame's
    packets (all the same size but the last) leave in one `sendmsg` with UDP GSO (`UDP_SEGMENT`),
    one datagram each on the wire. A full socket buffer drops the packets as the network would.
    """

    _TRAILER = 144  # libsrtp's SRTP_MAX_TRAILER_LEN
    _BATCH_BYTES = 60_000  # a GSO send stays under 64 KiB
    _BATCH_PACKETS = 64  # the kernel's UDP_MAX_SEGMENTS

    def __init__(
        self, dtls: Any, gso: bool = True, on_fallback: FallbackListener | None = None
    ) -> None:
        session = dtls._tx_srtp
        pair = dtls.transport._connection._nominated.get(1)
        if session is None or pair is None or pair.protocol.transport is None:
            raise ConnectionError("the viewer's DTLS/ICE is not connected")
        self._addr: tuple[str, int] = pair.remote_addr
        self._transport: Any = pair.protocol.transport
        self._session: Any = session
        self._sock, self._own_sock = _udp_socket(self._transport)
        self._on_fallback = on_fallback
        binding: Any = getattr(pylibsrtp, "_binding", None)
        low, high = SUPPORTED_PYLIBSRTP
        fallback = None
        if binding is None or not hasattr(session, "_srtp"):
            fallback = "pylibsrtp_internals"
        elif not low <= pylibsrtp_version() <= high:
            fallback = "pylibsrtp_version"
        elif self._sock is None:
            fallback = "no_socket"
        if fallback is not None:
            self._fall_back(fallback)
        self._direct = fallback is None
        self._gso = gso and self._direct and hasattr(socket, "SOL_UDP")
        if gso and self._direct and not self._gso:
            self._fall_back("no_gso")
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
            self._fall_back("no_gso")
            for pos in range(0, end, segment):
                self._send_datagram(data[pos : min(end, pos + segment)])

    def _fall_back(self, reason: str) -> None:
        if reason not in _logged_fallbacks:
            _logged_fallbacks.add(reason)
            logger.warning(
                "SRTP fast path: %s (once per process; counted in /metrics as "
                'live_media_fast_path_fallbacks_total{reason="%s"})',
                FALLBACK_REASONS[reason],
                reason,
            )
        if self._on_fallback is not None:
            self._on_fallback(reason)

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


def _rtx_parameters(sender: RTCRtpSender, codecs: list[Any]) -> RtxParameters | None:
    for codec in codecs[1:]:
        if codec_name(codec) == "RTX" and codec.parameters.get("apt") == codecs[0].payloadType:
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
        on_fallback: FallbackListener | None = None,
    ) -> None:
        sender = transceiver.sender
        codecs: list[Any] = transceiver._codecs
        if not codecs:
            raise ConnectionError("no codec negotiated")
        self._udp = (
            SrtpUdpSink(sender.transport, gso=gso, on_fallback=on_fallback)
            if sink is None
            else None
        )
        self._sink: PacketSink = sink if sink is not None else self._udp  # type: ignore[assignment]
        self._congested: Callable[[], bool] = getattr(self._sink, "congested", lambda: False)
        self.writer = RtpWriter(
            codec=codec_name(codecs[0]),
            ssrc=sender._ssrc,
            payload_type=codecs[0].payloadType,
            sink=self._sink,
            rtx=_rtx_parameters(sender, codecs),
            mid=transceiver.mid,
            extension_ids=extension_ids(transceiver),
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
            setattr(sender, SENDER_NTP_TIMESTAMP, ntp_time(writer.last_sent_at))
            setattr(sender, SENDER_RTP_TIMESTAMP, writer.last_rtp_timestamp)
            setattr(sender, SENDER_PACKET_COUNT, writer.packets)
            setattr(sender, SENDER_OCTET_COUNT, writer.octets)

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
