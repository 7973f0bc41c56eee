"""A lean Socket.IO client for simulated crowds: Engine.IO v4 over a raw WebSocket, no tasks.

python-socketio's AsyncClient costs an aiohttp session, several tasks and queues per connection;
a crowd of thousands needs one `asyncio.Protocol` each, parsing frames in `data_received`. Only
what a viewer needs is spoken: the WebSocket handshake (no extensions), text frames, Engine.IO
open/ping/pong/message, Socket.IO connect, events and acknowledgements on one namespace.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import ssl
from typing import Any, Protocol, cast
from urllib.parse import urlsplit

_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_CHAT_MARK = b'"text":"lt:'


class SioError(Exception):
    """The handshake or the namespace connection failed; `kind` names how, for error counts."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


class Sink(Protocol):
    """Where a viewer reports what it receives; one sink serves every viewer of a worker."""

    def chat(self, slot: int, seq: int, sent_us: int) -> None:
        """A benchmark chat message (`lt:<seq>:<sent_us>`) reached viewer `slot`."""

    def lost(self, slot: int, reason: str) -> None:
        """The connection of viewer `slot` ended."""

    def likes_total(self, total: int) -> None:
        """A room's `likes` total reached the viewer that observes likes."""

    def gift(self, slot: int, event: bytes) -> None:
        """A `gift` room event reached viewer `slot` (the Socket.IO packet's JSON array)."""


def chat_text(seq: int, sent_us: int) -> str:
    """The text a benchmark sender puts in a chat message: its sequence number and send time."""
    return f"lt:{seq}:{sent_us}"


class Viewer(asyncio.Protocol):
    """One simulated viewer on one namespace of one node."""

    def __init__(
        self, slot: int, host: str, path: str, namespace: str, auth: dict[str, Any], sink: Sink
    ) -> None:
        self.slot = slot
        self._host = host
        self._path = path
        self._auth = auth
        self._sink = sink
        ns = b"" if namespace == "/" else namespace.encode() + b","
        self._ns = ns
        self._event_prefix = b"42" + ns
        self._chat_prefix = b"42" + ns + b'["chat",'
        self._likes_prefix: bytes | None = None
        self._gift_prefix = b"42" + ns + b'["gift",'
        self._key = base64.b64encode(os.urandom(16))
        self._transport: asyncio.Transport | None = None
        self._upgraded = False
        self._buf = b""
        self._fragments: list[bytes] = []
        self._acks: dict[int, asyncio.Future[Any]] = {}
        self._next_ack = 0
        self.connected: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        request = (
            f"GET {self._path} HTTP/1.1\r\nHost: {self._host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {self._key.decode()}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        )
        self._transport.write(request.encode())

    def data_received(self, data: bytes) -> None:
        if self._buf:
            data = self._buf + data
            self._buf = b""
        if not self._upgraded:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                self._buf = data
                return
            self._check_upgrade(data[:end])
            data = data[end + 4 :]
            if self.closed:
                return
        self._parse_frames(data)

    def connection_lost(self, exc: Exception | None) -> None:
        was_closed = self.closed
        self.closed = True
        reason = type(exc).__name__ if exc else "closed"
        if not self.connected.done():
            self.connected.set_exception(SioError("connection_lost", reason))
        for fut in self._acks.values():
            if not fut.done():
                fut.set_exception(SioError("connection_lost", reason))
        self._acks.clear()
        if not was_closed:
            self._sink.lost(self.slot, reason)

    def observe_likes(self, on: bool) -> None:
        """Report the room's `likes` totals to the sink (one viewer per crowd is enough)."""
        self._likes_prefix = self._event_prefix + b'["likes",' if on else None

    # Sending
    def emit(self, event: str, data: Any) -> None:
        self._send(b"42" + self._ns + _dumps([event, data]))

    def call(self, event: str, data: Any) -> asyncio.Future[Any]:
        """Emit with an acknowledgement; the future resolves to the ack's first argument."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.closed:
            fut.set_exception(SioError("not_connected"))
            return fut
        self._next_ack += 1
        ack_id = self._next_ack
        self._acks[ack_id] = fut
        fut.add_done_callback(lambda _: self._acks.pop(ack_id, None))
        self._send(b"42" + self._ns + str(ack_id).encode() + _dumps([event, data]))
        return fut

    def close(self) -> None:
        if self._transport is not None and not self.closed:
            self.closed = True  # a deliberate close is not reported as lost
            self._send_frame(0x8, b"\x03\xe8")
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self.closed = True
            self._transport.abort()

    # WebSocket
    def _check_upgrade(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        if b" 101 " not in lines[0] + b" ":
            self._fail("handshake", lines[0].decode(errors="replace"))
            return
        expected = base64.b64encode(hashlib.sha1(self._key + _WS_GUID).digest())
        headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(b":") for ln in lines)}
        if headers.get(b"sec-websocket-accept") != expected:
            self._fail("handshake", "bad Sec-WebSocket-Accept")
            return
        self._upgraded = True

    def _parse_frames(self, data: bytes) -> None:
        pos, size = 0, len(data)
        while size - pos >= 2:
            b0, b1 = data[pos], data[pos + 1]
            length, head = b1 & 0x7F, 2
            if length == 126:
                if size - pos < 4:
                    break
                length, head = int.from_bytes(data[pos + 2 : pos + 4], "big"), 4
            elif length == 127:
                if size - pos < 10:
                    break
                length, head = int.from_bytes(data[pos + 2 : pos + 10], "big"), 10
            mask = b""
            if b1 & 0x80:  # servers do not mask, but accept it
                mask = data[pos + head : pos + head + 4]
                head += 4
            end = pos + head + length
            if end > size:
                break
            payload = data[pos + head : end]
            pos = end
            if mask:
                payload = _xor(payload, mask)
            self._frame(b0, payload)
            if self.closed:
                return
        if pos < size:
            self._buf = data[pos:]

    def _frame(self, b0: int, payload: bytes) -> None:
        opcode, fin = b0 & 0x0F, b0 & 0x80
        if opcode in (0x1, 0x2, 0x0):
            if not fin or self._fragments:
                self._fragments.append(payload)
                if not fin:
                    return
                payload = b"".join(self._fragments)
                self._fragments.clear()
            self._message(payload)
        elif opcode == 0x9:
            self._send_frame(0xA, payload)
        elif opcode == 0x8:
            self._fail("server_closed", payload[2:].decode(errors="replace"))

    def _send(self, text: bytes) -> None:
        self._send_frame(0x1, text)

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        if self._transport is None or self._transport.is_closing():
            return
        n = len(payload)
        if n < 126:
            head = bytes((0x80 | opcode, 0x80 | n))
        elif n < 65536:
            head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
        else:
            head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
        mask = os.urandom(4)
        self._transport.write(head + mask + _xor(payload, mask))

    # Engine.IO and Socket.IO
    def _message(self, msg: bytes) -> None:
        if msg.startswith(self._chat_prefix):
            i = msg.find(_CHAT_MARK)
            if i >= 0:
                j = msg.find(b'"', i + 11)
                seq, _, sent = msg[i + 11 : j].partition(b":")
                if seq.isdigit() and sent.isdigit():
                    self._sink.chat(self.slot, int(seq), int(sent))
            return
        if msg.startswith(self._gift_prefix):
            self._sink.gift(self.slot, msg[len(self._event_prefix) :])
            return
        if self._likes_prefix is not None and msg.startswith(self._likes_prefix):
            with contextlib.suppress(ValueError, TypeError, KeyError, IndexError):
                self._sink.likes_total(int(json.loads(msg[len(self._event_prefix) :])[1]["total"]))
            return
        kind = msg[:1]
        if kind == b"4":
            self._socketio(msg[1:])
        elif kind == b"2":
            self._send(b"3" + msg[1:])
        elif kind == b"0":
            self._send(b"40" + self._ns + _dumps(self._auth))
        elif kind == b"1":
            self._fail("server_closed", "engine.io close")

    def _socketio(self, pkt: bytes) -> None:
        kind, body = pkt[:1], pkt[1:]
        if self._ns:
            if not body.startswith(self._ns):
                return  # another namespace
            body = body[len(self._ns) :]
        if kind == b"3":
            digits = len(body) - len(body.lstrip(b"0123456789"))
            fut = self._acks.get(int(body[:digits] or b"0"))
            if fut is not None and not fut.done():
                args = json.loads(body[digits:] or b"[]")
                fut.set_result(args[0] if args else None)
        elif kind == b"0":
            if not self.connected.done():
                self.connected.set_result(None)
        elif kind == b"4":
            detail = body.decode(errors="replace")
            if not self.connected.done():
                self.connected.set_exception(SioError("connect_refused", detail))
            self.close()
        elif kind == b"1":
            self._fail("server_disconnect", "socket.io disconnect")

    def _fail(self, kind: str, detail: str) -> None:
        if not self.connected.done():
            self.connected.set_exception(SioError(kind, detail))
        was_closed = self.closed
        self.closed = True
        if self._transport is not None:
            self._transport.close()
        if not was_closed:
            self._sink.lost(self.slot, kind)


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _xor(payload: bytes, mask: bytes) -> bytes:
    n = len(payload)
    if n == 0:
        return payload
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


async def open_viewer(
    slot: int, url: str, namespace: str, auth: dict[str, Any], sink: Sink, limit_s: float
) -> Viewer:
    """Connect one viewer to `url`'s Socket.IO endpoint and its namespace; raise SioError."""
    parts = urlsplit(url)
    secure = parts.scheme == "https"
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (443 if secure else 80)
    path = parts.path.rstrip("/") + "/socket.io/?EIO=4&transport=websocket"
    loop = asyncio.get_running_loop()
    host_header = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        async with asyncio.timeout(limit_s):
            _, viewer = await loop.create_connection(
                lambda: Viewer(slot, host_header, path, namespace, auth, sink),
                host,
                port,
                ssl=ssl.create_default_context() if secure else None,
            )
            try:
                await viewer.connected
            except BaseException:
                viewer.abort()
                raise
    except TimeoutError:
        raise SioError("connect_timeout") from None
    except OSError as exc:
        raise SioError("connect_" + (exc.__class__.__name__.lower()), str(exc)) from None
    return viewer
