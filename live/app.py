"""Composition root: builds a node's aiohttp application and runs it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass

import redis.asyncio as aioredis
from aiohttp import web

from core.store import embedded_valkey, redis_client
from live.http import commerce as api_commerce
from live.http import edge as api_edge
from live.http import media as media_http
from live.http import openapi, pages
from live.http import privacy as api_privacy
from live.http import rooms as api_rooms
from live.http import wallet as api_wallet
from live.http.common import AUTH, METRICS, error_middleware, token_keys
from live.http.connections import ConnectionGuard, GuardedSite
from live.node import NODE, Node
from live.settings import Settings

log = logging.getLogger(__name__)


def build_app(node: Node) -> web.Application:
    # The key-fetching middleware only where OIDC is on: every request pays for a middleware.
    middlewares = (
        [error_middleware, token_keys] if node.auth.keys is not None else [error_middleware]
    )
    app = web.Application(middlewares=middlewares, client_max_size=256 * 1024)
    app[NODE] = node
    app[METRICS] = node.metrics
    app[AUTH] = node.auth
    # Commerce first: aiohttp tries the routes under one prefix (`/api/rooms`) in registration
    # order, and a flash-sale crowd's reservations should not be matched against rooms' first.
    app.add_routes(api_commerce.routes)
    app.add_routes(api_wallet.routes)
    app.add_routes(api_privacy.routes)
    app.add_routes(api_rooms.routes)
    media_http.setup(app, node)
    api_edge.setup(app, node)
    pages.setup(app)
    openapi.setup(app)
    node.chat.attach(app)
    app.on_startup.append(node.start)
    app.on_shutdown.append(node.chat.close_connections)
    app.on_cleanup.append(node.stop)
    return app


@dataclass
class RunningNode:
    node: Node
    runner: web.AppRunner
    url: str


@contextlib.asynccontextmanager
async def serve(settings: Settings, redis: aioredis.Redis) -> AsyncIterator[RunningNode]:
    """Run a node on `settings.server.host:port` (port 0 picks a free one) until the block exits."""
    node = Node(settings, redis)
    # Clients were told to go in on_shutdown; do not wait long for their handlers to end.
    server = settings.server
    runner = web.AppRunner(
        build_app(node),
        handle_signals=False,
        access_log=None,
        shutdown_timeout=2.0,
        keepalive_timeout=server.keepalive_timeout_s,
    )
    await runner.setup()
    guard = ConnectionGuard(
        server.max_connections_per_ip,
        server.header_timeout_s,
        node.metrics.http_connection_limits,
    )
    site = GuardedSite(runner, server.host, server.port, backlog=server.listen_backlog, guard=guard)
    await site.start()
    sockets = getattr(site._server, "sockets", None) or []
    port = sockets[0].getsockname()[1] if sockets else server.port
    host = f"[{server.host}]" if ":" in server.host else server.host
    url = f"http://{host}:{port}"
    if server.public_url is None:
        node.settings = settings.replace(public_url=url)
    node.registry.wake()  # register now that the URL is known
    log.info("node %s serving on %s (role %s)", server.node_id, url, server.role)
    try:
        yield RunningNode(node, runner, url)
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def shared_store(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    """The configured Redis, or an embedded Valkey for the lifetime of the block."""
    with contextlib.ExitStack() as stack:
        store = settings.store
        url = store.redis_url or stack.enter_context(
            embedded_valkey(store.data_dir, store.valkey_appendfsync)
        )
        async with redis_client(url, cluster=store.redis_cluster) as redis:
            yield redis


async def wait_for_shutdown() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
