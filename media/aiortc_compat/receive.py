"""Receive side: the receiver's jitter buffer assembles encoded frames and puts them on a queue
read by a decoder thread; we put a tap in place of that queue, so frames come to us and the thread
idles until stop (it never builds a decoder)."""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from typing import Any

from aiortc import RTCRtpReceiver
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtp import RtpPacket

from media.aiortc_compat.internals import (
    RECEIVER_CODECS,
    RECEIVER_DECODER_QUEUE,
    RECEIVER_JITTER_BUFFER,
)
from media.aiortc_compat.sdp import Codec, codec_name
from media.frames import EncodedFrame, is_keyframe

FrameSink = Callable[[EncodedFrame], None]


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
        self._decoder_queue: Any = getattr(receiver, RECEIVER_DECODER_QUEUE)
        self._media_ssrc: int | None = None
        self._primary_pts: set[int] = set()
        self.frames = 0
        self.packets = 0
        self.bytes = 0
        setattr(receiver, RECEIVER_DECODER_QUEUE, self)
        if kind == "audio":
            # Every Opus packet is a whole frame: do not hold four back as aiortc does for playout.
            setattr(receiver, RECEIVER_JITTER_BUFFER, JitterBuffer(capacity=16, prefetch=0))
        else:
            setattr(receiver, RECEIVER_JITTER_BUFFER, MarkerJitterBuffer(capacity=512))
        self._handle_rtp: Callable[[RtpPacket, int], Awaitable[None]] = receiver._handle_rtp_packet
        receiver._handle_rtp_packet = self._on_rtp  # type: ignore[method-assign]

    async def _on_rtp(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        # Learn the media SSRC (not the RTX one) so keyframe requests name the right stream.
        self.packets += 1
        self.bytes += len(packet.payload)
        if not self._primary_pts:
            codecs: dict[int, Codec] = getattr(self._receiver, RECEIVER_CODECS)
            self._primary_pts = {
                pt for pt, c in codecs.items() if not c.mimeType.lower().endswith("/rtx")
            }
        if packet.payload_type in self._primary_pts:
            self._media_ssrc = packet.ssrc
        await self._handle_rtp(packet, arrival_time_ms)

    # The decoder queue interface (`queue.Queue.put`), called from the event loop.
    def put(self, item: tuple[Codec, JitterFrame] | None) -> None:
        if item is None:
            self._decoder_queue.put(None)
            return
        codec, jitter_frame = item
        name = codec_name(codec)
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

    async def request_keyframe(self) -> bool:
        """Send a PLI to the publisher; False when its SSRC is not known yet."""
        if self._kind != "video" or self._media_ssrc is None:
            return False
        await self._receiver._send_rtcp_pli(self._media_ssrc)
        return True


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
