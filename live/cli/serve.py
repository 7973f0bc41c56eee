"""Run one node: REST API, Socket.IO chat, web pages (and media, per role).

With no REDIS_URL the node starts an embedded Valkey under --data-dir.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from core import logs
from live.app import serve, shared_store, wait_for_shutdown
from live.cli.options import settings_from
from live.settings import Settings

log = logging.getLogger(__name__)


async def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    logs.configure(settings.log.level, settings.log.json_lines)
    if not secret_checked(settings):
        return 2
    async with shared_store(settings) as redis, serve(settings, redis) as running:
        print(f"node {settings.server.node_id} listening on {running.url}", flush=True)
        await wait_for_shutdown()
        # Drain: selection stops offering this node while its viewers still play.
        await running.node.registry.drain()
        await asyncio.sleep(settings.server.drain_s)
    return 0


def secret_checked(settings: Settings) -> bool:
    """False (and why, on stderr) when this node must not start with the secret it has.

    Origins and edges of one deployment must verify the same tokens: a random secret per node
    would accept only tokens nobody else can issue. A single `all` node may run on one (a trial).
    """
    auth = settings.auth
    if auth.secret_configured or auth.jwks_url:
        return True
    if settings.server.role != "all":
        print(
            f"live serve: a {settings.server.role} node needs LIVE_JWT_SECRET (at least 32 "
            "bytes, the same on every node) or LIVE_JWKS_URL",
            file=sys.stderr,
        )
        return False
    log.warning(
        "LIVE_JWT_SECRET is not set: this node signs and verifies with a random secret, so "
        "only tokens it issues itself (none survive a restart) are accepted"
    )
    return True
