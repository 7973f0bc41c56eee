"""Webhook operations. `replay`: re-send the dead letters (LIVE_DEAD_LETTER_STREAM) to
LIVE_WEBHOOK_URL (or --url), signed with LIVE_WEBHOOK_SECRET; each one delivered is removed, so a
second replay re-sends only what failed again. Needs the nodes' Redis (REDIS_URL)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import aiohttp

from commerce.config import WEBHOOK_SECRET_MIN_BYTES
from commerce.webhooks import WebhookSender, replay
from core.store import redis_client
from live.settings import Settings


def register(sub: Any) -> None:
    p = sub.add_parser("webhooks", help="webhook operations (replay dead letters)",
                       description=__doc__)  # fmt: skip
    ops = p.add_subparsers(dest="operation", required=True, metavar="OPERATION")
    r = ops.add_parser("replay", help="re-send the dead-lettered webhooks", description=__doc__)
    r.add_argument("--url", help="where to send them (default LIVE_WEBHOOK_URL)")
    r.add_argument("--attempts", type=int, default=1,
                   help="attempts per event, with the usual backoff (default 1)")  # fmt: skip
    r.set_defaults(run=run_replay)


async def run_replay(args: argparse.Namespace) -> int:
    settings = Settings()
    commerce, store = settings.commerce, settings.store
    url = args.url or commerce.webhook_url
    secret = commerce.webhook_secret.get_secret_value() if commerce.webhook_secret else ""
    problem = (
        "set REDIS_URL to the Redis the nodes use" if not store.redis_url
        else "set LIVE_WEBHOOK_URL or give --url" if not url
        else f"set LIVE_WEBHOOK_SECRET (at least {WEBHOOK_SECRET_MIN_BYTES} bytes)"
        if len(secret.encode()) < WEBHOOK_SECRET_MIN_BYTES
        else "--attempts must be at least 1" if args.attempts < 1
        else ""
    )  # fmt: skip
    if problem or not store.redis_url or not url:
        print(f"live webhooks replay: {problem}", file=sys.stderr)
        return 2
    async with (
        redis_client(store.redis_url, cluster=store.redis_cluster) as redis,
        aiohttp.ClientSession() as session,
    ):
        sender = WebhookSender(
            redis, session, url=url, secret=secret, dead_letter_stream=commerce.dead_letter_stream,
            max_attempts=args.attempts, backoff_s=commerce.webhook_backoff_s,
            backoff_max_s=commerce.webhook_backoff_max_s, timeout_s=commerce.webhook_timeout_s,
        )  # fmt: skip
        done = await replay(redis, sender, commerce.dead_letter_stream)
    print(f"webhooks: delivered {done.delivered}, failed {done.failed} (kept), "
          f"duplicates {done.duplicates} (removed)", flush=True)  # fmt: skip
    return 0 if done.failed == 0 else 1
