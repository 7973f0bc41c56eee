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
    auth, role = settings.auth, settings.server.role
    # An edge signs the `node` token of its upstream pull with the secret: an IdP's keys do not
    # replace it there.
    if auth.secret_configured or (auth.jwks_url and role != "edge"):
        return True
    if role != "all":
        needs = "LIVE_JWT_SECRET" if role == "edge" else "LIVE_JWT_SECRET or LIVE_JWKS_URL"
        print(
            f"live serve: a {role} node needs {needs} (the secret at least 32 bytes and the "
            "same on every node: origins verify the node tokens edges sign with it)",
            file=sys.stderr,
        )
        return False
    log.warning(
        "LIVE_JWT_SECRET is not set: this node signs and verifies with a random secret, so "
        "only tokens it issues itself (none survive a restart) are accepted"
    )
    return True
