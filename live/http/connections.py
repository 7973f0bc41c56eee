"""Connection-level limits aiohttp lacks: connections per client address and a deadline for the
first request's head (slowloris). Idle and half-sent later requests end at aiohttp's keep-alive
timeout, which also fires while a request's head is incomplete.

`GuardedSite` listens like `web.TCPSite` but wraps each connection's protocol in `_Guarded`,
which refuses a connection over its address's cap at accept time (a 429, then close) and
forwards everything else to aiohttp's own protocol untouched.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiohttp import web
from prometheus_client import Counter

# Answered to a connection over its address's cap, before anything is read from it.
_BODY = b'{"error":"rate_limited","detail":"too many connections from your address"}'
REFUSAL = (
    b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
    b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(_BODY), _BODY)
)
_HEAD_END = b"\r\n\r\n"


class ConnectionGuard:
    """Open connections per client address and the decisions taken, for one node."""

    def __init__(self, per_ip: int, header_timeout_s: float, decisions: Counter) -> None:
        self.per_ip = per_ip  # 0: no cap
        self.header_timeout_s = header_timeout_s  # 0: no deadline
        self.open: dict[str, int] = {}
        self._admitted = decisions.labels("per_ip", "allowed")
        self._refused = decisions.labels("per_ip", "refused")
        self._timed_out = decisions.labels("header_timeout", "closed")

    def admit(self, address: str) -> bool:
        count = self.open.get(address, 0)
        if self.per_ip and count >= self.per_ip:
            self._refused.inc()
            return False
        self.open[address] = count + 1
        self._admitted.inc()
        return True

    def release(self, address: str) -> None:
        count = self.open.get(address, 0) - 1
        if count > 0:
            self.open[address] = count
        else:
            self.open.pop(address, None)

    def timed_out(self) -> None:
        self._timed_out.inc()

    def factory(self, inner: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        return lambda: _Guarded(self, inner)


class _Guarded(asyncio.Protocol):
    """aiohttp's protocol for one connection, created only once the connection is admitted."""

    __slots__ = ("_address", "_deadline", "_guard", "_inner", "_make", "_tail", "_transport")

    def __init__(self, guard: ConnectionGuard, make: Callable[[], asyncio.Protocol]) -> None:
        self._guard = guard
        self._make = make
        self._inner: asyncio.Protocol | None = None
        self._address: str | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._tail = b""
        self._transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        if not self._guard.admit(address):
            # Duck-typed: uvloop's TCP transport writes but is no asyncio.WriteTransport.
            write = getattr(transport, "write", None)
            if write is not None:
                write(REFUSAL)
            transport.close()
            return
        self._address = address
        self._transport = transport
        if self._guard.header_timeout_s > 0:
            loop = asyncio.get_running_loop()
            self._deadline = loop.call_later(self._guard.header_timeout_s, self._too_slow)
        self._inner = self._make()
        self._inner.connection_made(transport)

    def _too_slow(self) -> None:
        self._deadline = None
        if self._transport is not None and not self._transport.is_closing():
            self._guard.timed_out()
            self._transport.close()

    def data_received(self, data: bytes) -> None:
        if self._deadline is not None:
            # Until the first request's head has arrived: look for its end across chunks.
            window = self._tail + data
            if _HEAD_END in window:
                self._deadline.cancel()
                self._deadline = None
                self._tail = b""
            else:
                self._tail = window[-3:]
        if self._inner is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if self._address is not None:
            self._guard.release(self._address)
            self._address = None
        if self._inner is not None:
            self._inner.connection_lost(exc)
            self._inner = None
        self._transport = None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()


class GuardedSite(web.BaseSite):
    """`web.TCPSite` whose connections pass `guard` first."""

    def __init__(
        self, runner: web.BaseRunner, host: str, port: int, *, backlog: int,
        guard: ConnectionGuard,
    ) -> None:  # fmt: skip
        super().__init__(runner, backlog=backlog)
        self._host = host
        self._port = port
        self._guard = guard

    @property
    def name(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            self._guard.factory(server), self._host, self._port, backlog=self._backlog,
            reuse_address=True,
        )  # fmt: skip
