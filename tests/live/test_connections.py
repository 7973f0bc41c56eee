"""HTTP connection limits: idle and half-sent requests time out, a client address holds at most
`max_connections_per_ip` connections, and every decision is counted."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

import aiohttp

from loadtest.report.scrape import metric
from tests.conftest import NodeFactory

HALF_REQUEST = b"GET /healthz HTTP/1.1\r\nHost: node\r\nX-Slow: "


async def _open(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    return await asyncio.open_connection(parts.hostname, parts.port)


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> bytes:
    """Everything the server sent until it closed the connection (fails if it does not)."""
    async with asyncio.timeout(seconds):
        return await reader.read()


async def _metric(url: str, sample: str) -> float:
    async with aiohttp.ClientSession() as http:
        return await metric(http, url, sample) or 0.0


def _limit(limit: str, decision: str) -> str:
    return f'live_http_connection_limits_total{{decision="{decision}",limit="{limit}"}}'


async def test_half_sent_requests_are_closed_at_the_header_timeout(
    start_node: NodeFactory,
) -> None:
    node = await start_node(header_timeout_s=0.5, keepalive_timeout_s=60)
    sockets = [await _open(node.url) for _ in range(30)]
    started = time.monotonic()
    for _, writer in sockets:
        writer.write(HALF_REQUEST)
    for reader, writer in sockets:
        assert await _closed_within(reader, 3) == b""
        writer.close()
    assert time.monotonic() - started < 3
    assert await _metric(node.url, _limit("header_timeout", "closed")) == 30


async def test_idle_and_half_sent_later_requests_end_at_the_keepalive_timeout(
    start_node: NodeFactory,
) -> None:
    node = await start_node(header_timeout_s=0, keepalive_timeout_s=0.5)
    idle, half = await _open(node.url), await _open(node.url)
    for reader, writer in (idle, half):
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: node\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
    half[1].write(HALF_REQUEST)  # a second request that never finishes its head
    silent = await _open(node.url)  # never sends a byte
    for reader, writer in (idle, half, silent):
        await _closed_within(reader, 3)
        writer.close()


async def test_connections_per_address_are_capped(start_node: NodeFactory) -> None:
    node = await start_node(max_connections_per_ip=5, header_timeout_s=0)
    held = [await _open(node.url) for _ in range(5)]
    for _, writer in held:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: node\r\n\r\n")
    for reader, _ in held:
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
    reader, writer = await _open(node.url)
    refusal = await _closed_within(reader, 3)
    writer.close()
    assert refusal.startswith(b"HTTP/1.1 429 ")
    assert refusal.endswith(b'"detail":"too many connections from your address"}')
    # A connection that ends frees its place.
    held[0][1].close()
    await held[0][1].wait_closed()
    async with asyncio.timeout(3):
        while True:  # the server may see the close a moment after this side
            reader, writer = await _open(node.url)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: node\r\nConnection: close\r\n\r\n")
            answer = await reader.read()
            writer.close()
            if answer.startswith(b"HTTP/1.1 200"):
                break
            assert answer.startswith(b"HTTP/1.1 429 ")
    for _, writer in held[1:]:
        writer.close()
    assert await _metric(node.url, _limit("per_ip", "refused")) >= 1
    assert await _metric(node.url, _limit("per_ip", "allowed")) >= 7
