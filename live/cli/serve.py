"""Run one node: REST API, Socket.IO chat, web pages (and media, per role).

With no REDIS_URL the node starts an embedded Valkey under --data-dir.
"""

from __future__ import annotations

import argparse
import asyncio

from core import logs
from live.app import serve, shared_store, wait_for_shutdown
from live.cli.options import settings_from


async def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    logs.configure(settings.log.level, settings.log.json_lines)
    async with shared_store(settings) as redis, serve(settings, redis) as running:
        print(f"node {settings.server.node_id} listening on {running.url}", flush=True)
        await wait_for_shutdown()
        # Drain: selection stops offering this node while its viewers still play.
        await running.node.registry.drain()
        await asyncio.sleep(settings.server.drain_s)
    return 0
