"""A lean receive path for the media benchmark's viewers, on aiortc and aioice internals.

A lean viewer lets aiortc do ICE and DTLS, then takes over the datagrams of its ICE pair: each is
SRTP-decrypted and its RTP header read in one plain callback, nothing decoded. That needs names
aiortc and aioice keep private (listed in `internals.py` and checked when a node starts):

- `RTCDtlsTransport._rx_srtp` (the receive SRTP session) and `RTCDtlsTransport.transport`
- `RTCIceTransport._connection` (aioice's `Connection`) and its `_nominated` pair of component 1
- the pair's `protocol` (aioice's datagram protocol): its `datagram_received`, replaced on that one
  instance, and its transport's socket (given a deep receive buffer)
- `RTCRtpTransceiver._codecs` (the negotiated payload types)
"""

from __future__ import annotations

import contextlib
import socket
import struct
import time
from collections.abc import Mapping
from typing import Any, Protocol

from aiortc import RTCPeerConnection

SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
RECEIVE_BUFFER = 4 << 20


class RtpCount(Protocol):
    """Counts one RTP stream."""

    def add(self, seq: int, marker: int) -> None: ...


class LeanViewer(Protocol):
    """What the lean receive path updates besides the stream counts."""

    undecryptable: int
    first_frame_at: float | None


class RtpSequence:
    """One RTP stream's packets received and extended highest sequence number: the sequence
    numbers it skipped are its losses (first transmissions; retransmissions come on their own
    payload type)."""

    __slots__ = ("first", "highest", "received")

    def __init__(self) -> None:
        self.first: int | None = None
        self.highest = 0
        self.received = 0

    def advance(self, seq: int) -> int:
        """Count a packet; how many sequence numbers it skipped (0 in order or late)."""
        self.received += 1
        if self.first is None:
            self.first = self.highest = seq
            return 0
        delta = (seq - self.highest) & 0xFFFF
        if delta >= 0x8000:
            return 0  # late (reordered)
        self.highest += delta
        return max(0, delta - 1)

    @property
    def expected(self) -> int:
        return 0 if self.first is None else self.highest - self.first + 1


def payload_types(pc: RTCPeerConnection) -> dict[int, str]:
    """The kind ("video", "audio") of each negotiated payload type, retransmissions left out."""
    kinds: dict[int, str] = {}
    for t in pc.getTransceivers():
        for codec in t._codecs:
            if codec.payloadType is not None and not codec.mimeType.lower().endswith("/rtx"):
                kinds[codec.payloadType] = t.kind
    return kinds


def take_over_receive(
    pc: RTCPeerConnection, viewer: LeanViewer, streams: Mapping[int, RtpCount], video: RtpCount
) -> bool:
    """From now on each SRTP datagram of `pc` is decrypted and counted in `streams` (by payload
    type; the first marker bit of `video` sets `viewer.first_frame_at`); anything else still goes
    to aioice. False when DTLS or the nominated pair is not there yet (try again later)."""
    transceivers = pc.getTransceivers()
    dtls = transceivers[0].receiver.transport
    pair = dtls.transport._connection._nominated.get(1)
    if pair is None or dtls._rx_srtp is None:
        return False
    protocol = pair.protocol
    # These viewers share one core: a deep receive buffer stands in for a client's own CPU
    # keeping up (kernel drops on a full buffer would count as loss).
    sock = protocol.transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER)
    original = protocol.datagram_received
    unprotect = dtls._rx_srtp.unprotect
    unpack = struct.Struct("!BBH").unpack_from

    def datagram_received(data: bytes | str, addr: tuple[Any, ...]) -> None:
        # RTP: version 2 and not an RTCP packet type (RFC 5761); anything else goes to aioice.
        if (
            isinstance(data, bytes)
            and 127 < data[0] < 192
            and len(data) > 12
            and not 191 < data[1] < 224
        ):
            try:
                data = unprotect(data)
            except Exception:
                viewer.undecryptable += 1
                return
            _, second, seq = unpack(data)
            count = streams.get(second & 0x7F)
            if count is not None:
                count.add(seq, second >> 7)
                if count is video and second >> 7 and viewer.first_frame_at is None:
                    viewer.first_frame_at = time.monotonic()
            return
        original(data, addr)

    # Replacing the bound method on this one protocol instance is the point of the lean
    # viewer (aioice calls it for every datagram); mypy forbids assigning to methods.
    protocol.datagram_received = datagram_received  # type: ignore[method-assign]
    return True
