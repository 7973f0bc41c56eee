"""Per-viewer RTP writing for forwarded frames: the fast send path, without aiortc's sender loop.

A room splits each frame into RTP payloads once (`packetize`); every viewer's `RtpWriter` only
writes a header (its SSRC, sequence, timestamp, payload type, header extensions and, for VP8, the
4-byte payload descriptor with its own picture id) in front of the shared payload bodies and hands
both to a `PacketSink` (SRTP + UDP). Lost packets are resent from a bounded history, over RTX when
negotiated. No asyncio here: everything is a plain call, tested without sockets.
"""

from __future__ import annotations

import random
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from media.frames import EncodedFrame

# aiortc's packetisers use the same bound: a payload (descriptor included) stays under 1300 bytes.
PACKET_MAX = 1300
VP8_DESCRIPTOR = 4  # S/PID flags, X byte with I set, M bit + 15-bit picture id
HISTORY_SIZE = 128  # packets a viewer can NACK, as aiortc's sender keeps
NTP_EPOCH_OFFSET = 2_208_988_800  # seconds from 1900 (NTP) to 1970 (Unix)


class PacketSink(Protocol):
    """Where a writer's packets go (SRTP + UDP in the server; a list in tests)."""

    def send(self, headers: Sequence[bytes], bodies: Sequence[bytes]) -> None:
        """Put out one frame's RTP packets, each a header and a body, in order; ConnectionError
        once the viewer is gone."""


def vp8_bodies(data: bytes) -> tuple[bytes, ...]:
    """A VP8 frame cut into payload bodies that each fit PACKET_MAX behind a 4-byte descriptor."""
    size = PACKET_MAX - VP8_DESCRIPTOR
    return tuple(data[pos : pos + size] for pos in range(0, len(data), size)) or (b"",)


@dataclass(frozen=True, slots=True)
class HeaderExtensionIds:
    """Negotiated one-byte header extension ids a viewer's sender writes (0: not negotiated)."""

    mid: int = 0
    abs_send_time: int = 0


def one_byte_extensions(elements: list[tuple[int, bytes]]) -> bytes:
    """An RFC 8285 one-byte header extension block (profile, length, elements, padding)."""
    if not elements:
        return b""
    body = b"".join(bytes([(x_id << 4) | (len(value) - 1)]) + value for x_id, value in elements)
    body += b"\x00" * (-len(body) % 4)
    return struct.pack("!HH", 0xBEDE, len(body) // 4) + body


def abs_send_time(now: float) -> int:
    """abs-send-time: NTP seconds in 6.18 fixed point, 24 bits."""
    return int((now + NTP_EPOCH_OFFSET) * (1 << 18)) & 0xFFFFFF


def ntp_time(now: float) -> int:
    """A 64-bit NTP timestamp (32.32 fixed point) for sender reports."""
    return int((now + NTP_EPOCH_OFFSET) * (1 << 32)) & 0xFFFFFFFFFFFFFFFF


@dataclass(frozen=True, slots=True)
class RtxParameters:
    payload_type: int
    ssrc: int


class RtpWriter:
    """Writes one viewer's RTP stream for one track; sequence numbers and picture ids continuous."""

    def __init__(
        self,
        *,
        codec: str,
        ssrc: int,
        payload_type: int,
        sink: PacketSink,
        rtx: RtxParameters | None = None,
        mid: str | None = None,
        extension_ids: HeaderExtensionIds | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        rng = rng or random.Random()
        self.codec = codec
        self.ssrc = ssrc
        self.payload_type = payload_type
        self._sink = sink
        self._rtx = rtx
        self._clock = clock
        # Random origins as aiortc's sender picks them (sequence in the lower half: no early wrap).
        self.sequence_number = rng.getrandbits(16) % 32768
        self._rtx_sequence_number = rng.getrandbits(16) % 32768
        self._timestamp_origin = rng.getrandbits(32)
        self._picture_id = 0
        ids = extension_ids or HeaderExtensionIds()
        self._mid_element = (
            [(ids.mid, mid.encode())] if ids.mid and mid and 0 < len(mid) <= 16 else []
        )
        self._abs_send_time_id = ids.abs_send_time
        # The block is the same for every frame but abs-send-time's 3 bytes: split around them.
        template = self._extensions(0)
        if self._abs_send_time_id:
            at = template.index(bytes([(self._abs_send_time_id << 4) | 2, 0, 0, 0])) + 1
            self._ext_prefix, self._ext_suffix = template[:at], template[at + 3 :]
        else:
            self._ext_prefix, self._ext_suffix = template, b""
        extension_length = len(template)
        self._first_byte = 0x90 if extension_length else 0x80
        vp8 = codec == "VP8"
        # One struct per writer: header, extension block and (VP8) descriptor packed in one call.
        self._header = struct.Struct(f"!BBHII{extension_length}s" + ("BBH" if vp8 else ""))
        self._vp8 = vp8
        self._history_header: list[bytes | None] = [None] * HISTORY_SIZE
        self._history_body: list[bytes] = [b""] * HISTORY_SIZE
        # what a sender report states
        self.packets = 0
        self.octets = 0
        self.last_rtp_timestamp = 0
        self.last_sent_at = 0.0  # wall clock (time.time) when last_rtp_timestamp went out
        self.retransmitted = 0

    def _extensions(self, abs_send_time_value: int) -> bytes:
        elements = list(self._mid_element)
        if self._abs_send_time_id:
            elements.append((self._abs_send_time_id, abs_send_time_value.to_bytes(3, "big")))
        return one_byte_extensions(elements)

    def write(self, frame: EncodedFrame, timestamp: int | None = None) -> None:
        """Send `frame` as RTP packets at `timestamp` on this viewer's timeline (default: the
        frame's own)."""
        bodies = frame.payloads or packetize(frame)
        now = self._clock()
        if timestamp is None:
            timestamp = frame.timestamp
        timestamp = (self._timestamp_origin + timestamp) & 0xFFFFFFFF
        if self._abs_send_time_id:
            extensions = self._ext_prefix + abs_send_time(now).to_bytes(3, "big") + self._ext_suffix
        else:
            extensions = self._ext_prefix
        pack = self._header.pack
        payload_type = self.payload_type
        ssrc = self.ssrc
        seq = self.sequence_number
        count = len(bodies)
        first = self._first_byte
        if self._vp8:
            picture_id = 0x8000 | self._picture_id
            self._picture_id = (self._picture_id + 1) & 0x7FFF
            headers = [
                pack(
                    first,
                    payload_type,
                    (seq + i) & 0xFFFF,
                    timestamp,
                    ssrc,
                    extensions,
                    0x80,
                    0x80,
                    picture_id,
                )
                for i in range(count)
            ]
            headers[0] = pack(
                first, payload_type, seq, timestamp, ssrc, extensions, 0x90, 0x80, picture_id
            )
            last = count - 1
            headers[last] = pack(
                first,
                payload_type | 0x80,
                (seq + last) & 0xFFFF,
                timestamp,
                ssrc,
                extensions,
                0x90 if last == 0 else 0x80,
                0x80,
                picture_id,
            )
            octets = sum(map(len, bodies)) + count * VP8_DESCRIPTOR
        else:
            headers = [
                pack(first, payload_type, (seq + i) & 0xFFFF, timestamp, ssrc, extensions)
                for i in range(count - 1)
            ]
            headers.append(
                pack(
                    first,
                    payload_type | 0x80,
                    (seq + count - 1) & 0xFFFF,
                    timestamp,
                    ssrc,
                    extensions,
                )
            )
            octets = sum(map(len, bodies))
        self._sink.send(headers, bodies)
        history_header = self._history_header
        history_body = self._history_body
        for i in range(count):
            slot = (seq + i) & (HISTORY_SIZE - 1)
            history_header[slot] = headers[i]
            history_body[slot] = bodies[i]
        seq = (seq + count) & 0xFFFF
        self.sequence_number = seq
        self.packets += len(bodies)
        self.octets += octets
        self.last_rtp_timestamp = timestamp
        self.last_sent_at = now

    def retransmit(self, sequence_number: int) -> bool:
        """Resend a packet a viewer NACKed, over RTX when negotiated; False if it is too old."""
        slot = sequence_number & (HISTORY_SIZE - 1)
        header = self._history_header[slot]
        if header is None or struct.unpack_from("!H", header, 2)[0] != sequence_number:
            return False
        body = self._history_body[slot]
        if self._rtx is not None:
            # RFC 4588: the RTX payload is the original sequence number then the original payload
            # (for VP8 the descriptor, which sits in our header after the extension block).
            fixed = self._header.size - (VP8_DESCRIPTOR if self._vp8 else 0)
            rtx_header = (
                struct.pack(
                    "!BBHII",
                    header[0],
                    (header[1] & 0x80) | self._rtx.payload_type,
                    self._rtx_sequence_number,
                    struct.unpack_from("!I", header, 4)[0],
                    self._rtx.ssrc,
                )
                + header[12:fixed]
                + struct.pack("!H", sequence_number)
                + header[fixed:]
            )
            self._rtx_sequence_number = (self._rtx_sequence_number + 1) & 0xFFFF
            header = rtx_header
        self._sink.send((header,), (body,))
        self.retransmitted += 1
        return True


def packetize(frame: EncodedFrame) -> tuple[bytes, ...]:
    """The payload bodies of `frame` for a writer: VP8 without its descriptor, Opus as is.

    H.264 needs aiortc's FU-A/STAP-A packetiser, so rooms fill `frame.payloads` through
    `media.aiortc_compat.packetize_once`; this fallback covers VP8 and audio only.
    """
    if frame.codec == "VP8":
        return vp8_bodies(frame.data)
    if frame.codec == "opus":
        return (frame.data,)
    raise ValueError(f"{frame.codec} frames must be packetised by the room")
