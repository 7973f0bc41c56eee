"""Direct WebSocket writes for room broadcasts: one shared frame, one `transport.write` each.

Server-to-client WebSocket frames are unmasked, so without permessage-deflate a broadcast's
frame is the same bytes for every recipient. Engine.IO's own path costs a queue hand-off, a
writer-task wake-up (`asyncio.wait_for` makes a task per packet on Python 3.11) and an aiohttp
frame build per recipient; when a connection's writer is idle, writing the shared frame on its
transport delivers the same bytes in the same order.

Every engine.io and aiohttp internal the chat layer touches is in this module:

- engine.io's aiohttp driver table (`AsyncServer._async["websocket"]`), replaced per server by a
  subclass of its `WebSocket` that turns off compression and records each connection;
- the engine.io socket behind a connection (the driver's `handler.__self__`): `sid`, `queue`,
  `upgraded`, `upgrading`, `closing`, `closed`;
- `asyncio.Queue._queue` and `._getters`: packets not yet taken, and whether the writer task is
  parked in `queue.get()` (then everything it took has been written to the transport);
- `WebSocketResponse._writer` and that writer's `transport`, `compress` and `_closing`.

`install()` checks them (and the versions they were read from) and returns None when anything
differs, so the caller keeps the stock queue path.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from aiohttp import WSCloseCode, web

log = logging.getLogger(__name__)

# Read from python-engineio 4.15 and aiohttp 3.14; the structure checks below catch drift
# inside these ranges, the ranges catch rewrites.
ENGINEIO_VERSIONS = ((4, 9), (5, 0))
AIOHTTP_VERSIONS = ((3, 9), (4, 0))
# Above this many bytes waiting in a transport's buffer the client is treated as slow: its
# packets go through its bounded queue (and it is dropped when that fills), never piled here.
WRITE_BUFFER_LIMIT = 64 * 1024

_OP_TEXT = 0x81  # FIN + text opcode


def text_frame(payload: str) -> bytes:
    """An unmasked, uncompressed, unfragmented WebSocket text frame (RFC 6455 section 5.2)."""
    data = payload.encode()
    n = len(data)
    if n < 126:
        return struct.pack("!BB", _OP_TEXT, n) + data
    if n < 65536:
        return struct.pack("!BBH", _OP_TEXT, 126, n) + data
    return struct.pack("!BBQ", _OP_TEXT, 127, n) + data


class Link:
    """One WebSocket connection's engine.io socket and transport, for direct writes."""

    __slots__ = (
        "_buffered",
        "_dirty",
        "_getters",
        "_out",
        "_out_size",
        "_queued",
        "_ready",
        "_socket",
        "_transport",
        "_writer",
        "limit",
    )

    def __init__(self, socket: Any, writer: Any, limit: int, dirty: list[Link]) -> None:
        self._socket = socket
        self._queued = socket.queue._queue
        self._getters = socket.queue._getters
        self._writer = writer
        self._transport: asyncio.Transport = writer.transport
        self._buffered: Callable[[], int] = self._transport.get_write_buffer_size
        self._ready = False
        self._dirty = dirty
        self._out: list[bytes] = []  # frames taken this loop iteration, written by the flush
        self._out_size = 0
        self.limit = limit

    def write(self, frame: bytes) -> bool:
        """Take `frame` if nothing is queued or in flight before it; False to use the queue.

        Taken frames are written by `DirectWrites.flush`, which the caller schedules with
        `flush_soon()` before it yields: it runs ahead of any writer wake-up that follows.
        """
        # The writer task parked in queue.get() with nothing queued has written every packet it
        # took; any other state (a batch being sent, a drain, a wake-up pending) keeps order by
        # going through the queue. A closing transport is left to the flush, which skips it.
        if self._queued or not self._getters:
            return False
        socket = self._socket
        if socket.closing or socket.closed or self._writer._closing:
            return False
        if not self._ready:  # polling until the upgrade completes; it happens once
            if socket.upgrading or not socket.upgraded:
                return False
            self._ready = True
        if self._buffered() + self._out_size > self.limit:
            return False
        if not self._out:
            self._dirty.append(self)
        self._out.append(frame)
        self._out_size += len(frame)
        return True

    def flush(self) -> None:
        out = self._out
        if not self._transport.is_closing():
            self._transport.write(out[0] if len(out) == 1 else b"".join(out))
        out.clear()
        self._out_size = 0

    def stalled(self) -> bool:
        """Whether more than `limit` bytes wait to be sent: the peer is not reading."""
        return self._buffered() + self._out_size > self.limit

    def abort(self) -> None:
        """Drop the connection at once: a graceful close would wait behind the stalled bytes."""
        self._transport.abort()

    def close(self) -> None:
        """Close the connection once what is buffered is sent (the client may not close it)."""
        self._transport.close()


class DirectWrites:
    """The direct-write links of one engine.io server, by engine.io sid, and their flush.

    Frames taken during one event-loop iteration go out together, one `transport.write` per
    connection: a broadcast alone costs one write per recipient, several broadcasts landing in
    the same iteration (a backlog, a burst) still cost one.
    """

    def __init__(self) -> None:
        self.links: dict[str, Link] = {}
        self._dirty: list[Link] = []
        self._scheduled = False

    def link(self, socket: Any, writer: Any, limit: int) -> Link:
        return Link(socket, writer, limit, self._dirty)

    def flush_soon(self) -> None:
        """Schedule the flush of taken frames; call before yielding to the loop."""
        if not self._scheduled and self._dirty:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        dirty = self._dirty
        for link in dirty:
            link.flush()
        dirty.clear()


def _version(dist: str) -> tuple[int, ...] | None:
    try:
        return tuple(int(part) for part in version(dist).split(".")[:2])
    except (PackageNotFoundError, ValueError):
        return None


def _supported(eio: Any) -> bool:
    engineio_v, aiohttp_v = _version("python-engineio"), _version("aiohttp")
    if engineio_v is None or not ENGINEIO_VERSIONS[0] <= engineio_v < ENGINEIO_VERSIONS[1]:
        return False
    if aiohttp_v is None or not AIOHTTP_VERSIONS[0] <= aiohttp_v < AIOHTTP_VERSIONS[1]:
        return False
    table = getattr(eio, "_async", None)
    if not isinstance(table, dict) or not isinstance(getattr(eio, "sockets", None), dict):
        return False
    try:
        from engineio.async_drivers.aiohttp import WebSocket
        from engineio.async_socket import AsyncSocket
    except ImportError:
        return False
    if table.get("websocket") is not WebSocket:
        return False  # not the aiohttp driver, or someone else replaced it
    queue: asyncio.Queue[Any] = asyncio.Queue()
    if not hasattr(queue, "_queue") or not hasattr(queue, "_getters"):
        return False
    if not all(hasattr(AsyncSocket, name) for name in ("_websocket_handler", "poll")):
        return False
    ws = web.WebSocketResponse()
    return hasattr(ws, "_writer") and all(hasattr(WebSocket, n) for n in ("send", "wait"))


def _link(
    direct: DirectWrites, socket: Any, response: web.WebSocketResponse, limit: int
) -> Link | None:
    """A Link for a prepared response, or None if anything is not as expected."""
    writer: Any = getattr(response, "_writer", None)
    # A compressing connection would need its own frame (and its deflate context kept in step).
    compress: object = getattr(writer, "compress", None)
    if compress != 0 or getattr(writer, "_closing", True) is not False:
        return None
    transport = getattr(writer, "transport", None)
    queue = getattr(socket, "queue", None)
    if (
        transport is None
        or not isinstance(queue, asyncio.Queue)
        or not all(hasattr(socket, n) for n in ("upgraded", "upgrading", "closing", "closed"))
    ):
        return None
    return direct.link(socket, writer, limit)


def install(
    eio: Any, limit: int = WRITE_BUFFER_LIMIT, on_oversize: Callable[[], None] | None = None
) -> DirectWrites | None:
    """Hook `eio` (an engineio AsyncServer) to record its WebSocket connections by engine.io sid;
    `on_oversize` is called for each connection aiohttp closed for a frame over its size cap.

    Returns their `DirectWrites` (links leave when their connection ends), or None if this
    engine.io/aiohttp is not the one this module was written against.
    """
    if not _supported(eio):
        log.warning("direct WebSocket writes disabled: engine.io/aiohttp internals differ")
        return None
    from engineio.async_drivers.aiohttp import WebSocket

    direct = DirectWrites()
    links = direct.links

    class DirectWebSocket(WebSocket):  # type: ignore[misc]
        # Chat payloads are small and a broadcast is one frame for everyone only uncompressed;
        # per-connection deflate would also cost a zlib context per viewer.
        async def __call__(self, environ: dict[str, Any]) -> web.WebSocketResponse:
            request = environ["aiohttp.request"]
            self._sock = web.WebSocketResponse(
                max_msg_size=self.server.max_http_buffer_size, compress=False
            )
            await self._sock.prepare(request)
            self.environ = environ
            socket = getattr(self.handler, "__self__", None)
            sid = getattr(socket, "sid", None)
            link = _link(direct, socket, self._sock, limit) if isinstance(sid, str) else None
            if sid is not None and link is not None:
                links[sid] = link
            try:
                await self.handler(self)
            finally:
                if sid is not None and link is not None and links.get(sid) is link:
                    del links[sid]
                error = self._sock.exception()
                if on_oversize and getattr(error, "code", None) == WSCloseCode.MESSAGE_TOO_BIG:
                    on_oversize()
            return self._sock

    eio._async = {**eio._async, "websocket": DirectWebSocket}
    return direct
