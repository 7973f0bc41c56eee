"""Run the reference core order system: consume the purchase stream (consumer group `orders`)
and confirm each reservation through the REST API, or cancel a chosen share of them.

Needs the nodes' Redis (`REDIS_URL`) and either `--token` (role orders) or `LIVE_JWT_SECRET`."""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Any

import aiohttp

from core import logs
from core.auth import TokenAuthority
from core.config import Settings
from core.store import redis_client

log = logging.getLogger(__name__)


def register(sub: Any) -> None:
    p = sub.add_parser("orders", help="reference order system: confirm/cancel reservations",
                       description=__doc__)  # fmt: skip
    p.add_argument("--url", help="a node's URL (default LIVE_PUBLIC_URL or http://127.0.0.1:8080)")
    p.add_argument("--failure-rate", type=float, default=0.0,
                   help="share of reservations to cancel, 0..1 (default 0)")  # fmt: skip
    p.add_argument("--group", default="orders", help="consumer group (default orders)")
    p.add_argument("--consumer", default="orders-1", help="consumer name in the group")
    p.add_argument("--token", help="an `orders` token (default: signed with LIVE_JWT_SECRET)")
    p.set_defaults(run=run)


async def run(args: argparse.Namespace) -> int:
    settings = Settings()
    logs.configure(settings.log_level, json=settings.log_json)
    if not settings.redis_url:
        print("live orders: set REDIS_URL to the Redis the nodes use")
        return 2
    if not 0.0 <= args.failure_rate <= 1.0:
        print("live orders: --failure-rate must be between 0 and 1")
        return 2
    from commerce.orders import ReferenceOrderSystem

    secret = settings.jwt_secret.get_secret_value()
    token = args.token or TokenAuthority(secret).issue(user="orders", role="orders", ttl_s=86400)
    url = args.url or settings.public_url or "http://127.0.0.1:8080"
    async with (
        redis_client(settings.redis_url, cluster=settings.redis_cluster) as redis,
        aiohttp.ClientSession() as session,
    ):
        orders = ReferenceOrderSystem(
            redis, session, stream=settings.purchase_stream, base_url=url, token=token,
            failure_rate=args.failure_rate, group=args.group, consumer=args.consumer,
        )  # fmt: skip
        print(f"orders: consuming {settings.purchase_stream} as {args.group}/{args.consumer}, "
              f"confirming via {url} (failure rate {args.failure_rate})", flush=True)  # fmt: skip
        task = asyncio.ensure_future(orders.run())
        try:
            from live.app import wait_for_shutdown

            await wait_for_shutdown()
        finally:
            task.cancel()
            await asyncio.wait([task], timeout=5)
        print(f"orders: confirmed {orders.confirmed}, cancelled {orders.cancelled}, "
              f"refused {orders.refused}", flush=True)  # fmt: skip
    return 0
