"""The channel between a node's ingest and a media worker: length-prefixed records on a Unix
stream socket.

A record is a 4-byte big-endian length (of what follows), a type byte and a body:
- FRAME: a fixed header (room id length, codec, flags, epoch, timestamp), the room id and the
  encoded frame's bytes. Encoded once per frame: the same bytes go to every worker that needs them.
- CONTROL: a msgpack map with an `op` (requests, replies, notices; see media.workers.link and
  media.worker_process).
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable
from typing import Any, cast

import msgpack

from media.frames import EncodedFrame

logger = logging.getLogger(__name__)

FRAME = 1
CONTROL = 2

_LENGTH = struct.Struct("!I")
# room id length, codec, flags (bit 0: keyframe), epoch, timestamp
_FRAME = struct.Struct("!BBBIQ")
_CODECS = ("VP8", "H264", "opus")
_CODEC_IDS = {name: i for i, name in enumerate(_CODECS)}
_KEYFRAME = 1

# A record larger than this is a broken peer, not a frame (a 4K keyframe is a few MB).
MAX_RECORD = 64 << 20

Control = dict[str, Any]


def frame_record(room_id: str, frame: EncodedFrame) -> bytes:
    """One FRAME record; the payload cuts are not sent (the receiving room cuts them again)."""
    room = room_id.encode()
    header = _FRAME.pack(
        len(room),
        _CODEC_IDS[frame.codec],
        _KEYFRAME if frame.keyframe else 0,
        frame.epoch,
        frame.timestamp,
    )
    size = 1 + len(header) + len(room) + len(frame.data)
    return b"".join((_LENGTH.pack(size), bytes((FRAME,)), header, room, frame.data))


def control_record(message: Control) -> bytes:
    body: bytes = msgpack.packb(message, use_bin_type=True)
    return _LENGTH.pack(1 + len(body)) + bytes((CONTROL,)) + body


def parse_frame(buffer: bytearray, start: int, end: int) -> tuple[str, EncodedFrame]:
    """The FRAME record body at `buffer[start:end]` (after its type byte)."""
    room_len, codec, flags, epoch, timestamp = _FRAME.unpack_from(buffer, start)
    start += _FRAME.size
    room = buffer[start : start + room_len].decode()
    with memoryview(buffer) as view:
        data = bytes(view[start + room_len : end])
    return room, EncodedFrame(
        codec=_CODECS[codec],
        data=data,
        timestamp=timestamp,
        keyframe=bool(flags & _KEYFRAME),
        epoch=epoch,
    )


FrameHandler = Callable[[str, EncodedFrame], None]
ControlHandler = Callable[[Control], None]
LostHandler = Callable[[Exception | None], None]


class ChannelProtocol(asyncio.Protocol):
    """Reads records off the channel and hands them on in order; writes go to `transport`."""

    def __init__(
        self, on_frame: FrameHandler, on_control: ControlHandler, on_lost: LostHandler
    ) -> None:
        self._on_frame = on_frame
        self._on_control = on_control
        self._on_lost = on_lost
        self._buffer = bytearray()
        self.transport: asyncio.WriteTransport | None = None
        self.records_in = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not derive from asyncio's classes; both have these methods.
        self.transport = cast(asyncio.WriteTransport, transport)
        # No flow control on this side's writes: the sender bounds its backlog itself.
        self.transport.set_write_buffer_limits(high=MAX_RECORD)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        offset = 0
        try:
            while len(buffer) - offset >= _LENGTH.size:
                (size,) = _LENGTH.unpack_from(buffer, offset)
                if size < 1 or size > MAX_RECORD:
                    raise ValueError(f"bad record length {size}")
                end = offset + _LENGTH.size + size
                if len(buffer) < end:
                    break
                kind = buffer[offset + _LENGTH.size]
                start = offset + _LENGTH.size + 1
                offset = end
                self.records_in += 1
                if kind == FRAME:
                    room_id, frame = parse_frame(buffer, start, end)
                    self._dispatch(self._on_frame, room_id, frame)
                elif kind == CONTROL:
                    message = msgpack.unpackb(bytes(buffer[start:end]), raw=False)
                    self._dispatch(self._on_control, message)
                else:
                    raise ValueError(f"unknown record type {kind}")
        except Exception:
            logger.exception("media channel: broken record, closing")
            if self.transport is not None:
                self.transport.abort()
            return
        del buffer[:offset]

    @staticmethod
    def _dispatch(handler: Callable[..., None], *args: Any) -> None:
        # A handler's failure is the handler's bug: the channel itself is still in step.
        try:
            handler(*args)
        except Exception:
            logger.exception("media channel: handling a record failed")

    def connection_lost(self, exc: Exception | None) -> None:
        self._on_lost(exc)

    def write(self, record: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(record)

    @property
    def backlog(self) -> int:
        """Bytes written but not yet taken by the socket."""
        if self.transport is None:
            return 0
        return self.transport.get_write_buffer_size()
