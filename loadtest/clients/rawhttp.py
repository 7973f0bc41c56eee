"""A lean HTTP/1.1 keep-alive client for load generators: one request at a time per connection.

aiohttp's client costs about as much CPU per request as the server under test spends on it, so a
one-core generator would cap the benchmark near the server's speed. This one writes prebuilt
request bytes and reads `Content-Length` framed answers (what our server sends), nothing else.
"""

from __future__ import annotations

import asyncio
from typing import cast
from urllib.parse import urlsplit

MAX_HEAD = 64 * 1024


class HttpError(Exception):
    """The answer could not be read (closed connection, unframed or oversized answer)."""


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes, bool]] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses; they behave as one.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        try:
            answer = self._parse()
        except HttpError as exc:
            waiter.set_exception(exc)
            return
        if answer is not None:
            waiter.set_result(answer)

    def _parse(self) -> tuple[int, bytes, bool] | None:
        buf = self.buffer
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > MAX_HEAD:
                raise HttpError("answer head too large")
            return None
        head = bytes(buf[:end]).decode("latin-1").split("\r\n")
        status = int(head[0].split(" ", 2)[1])
        length = -1
        close = False
        for line in head[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "connection":
                close = value.strip().lower() == "close"
        if length < 0:
            raise HttpError("answer without Content-Length")
        total = end + 4 + length
        if len(buf) < total:
            return None
        body = bytes(buf[end + 4 : total])
        del buf[:total]
        return status, body, close

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(HttpError(f"connection closed: {exc or 'by the server'}"))

    async def request(self, data: bytes) -> tuple[int, bytes, bool]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return await self.waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class Pool:
    """Up to `limit` keep-alive connections to one `http://host:port` origin."""

    def __init__(self, origin: str, limit: int) -> None:
        parts = urlsplit(origin)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"only http:// origins: {origin!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.host_header = parts.netloc.encode()
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(limit)

    def build_post(self, path: str, body: bytes, headers: dict[str, str]) -> bytes:
        lines = [f"POST {path} HTTP/1.1", f"Host: {self.host_header.decode()}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}", "", ""]
        return "\r\n".join(lines).encode() + body

    async def send(self, data: bytes) -> tuple[int, bytes]:
        """One request (prebuilt bytes) on an idle or new connection; (status, body)."""
        async with self._slots:
            conn = self._idle.pop() if self._idle else None
            if conn is None or conn.closed:
                _, conn = await asyncio.get_running_loop().create_connection(
                    _Connection, self.host, self.port
                )
            try:
                status, body, close = await conn.request(data)
            except BaseException:
                conn.close()
                raise
            if close:
                conn.close()
            else:
                self._idle.append(conn)
            return status, body

    def close(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()
