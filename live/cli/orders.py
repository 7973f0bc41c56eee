"""Run the reference core order system: consume the purchase stream (consumer group `orders`)
and confirm each reservation through the REST API, or cancel a chosen share of them; book gifts
(`gift.sent`, `wallet.credited`, `wallet.refunded`) into each host's earnings, printed at exit.

Needs the nodes' Redis (`REDIS_URL`) and either `--token` (role orders) or `LIVE_JWT_SECRET`."""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Any

import aiohttp

from core import logs
from core.auth import TokenAuthority
from core.store import redis_client
from live.settings import Settings

log = logging.getLogger(__name__)


def register(sub: Any) -> None:
    p = sub.add_parser("orders", help="reference order system: confirm/cancel reservations, "
                       "book gifts",
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
    logs.configure(settings.log.level, json=settings.log.json_lines)
    store = settings.store
    if not store.redis_url:
        print("live orders: set REDIS_URL to the Redis the nodes use")
        return 2
    if not 0.0 <= args.failure_rate <= 1.0:
        print("live orders: --failure-rate must be between 0 and 1")
        return 2
    from commerce.orders import ReferenceOrderSystem

    secret = settings.auth.jwt_secret.get_secret_value()
    ttl = settings.auth.token_max_ttl_s
    token = args.token or TokenAuthority(secret, max_ttl_s=ttl).issue(
        user="orders", role="orders", ttl_s=ttl
    )
    url = args.url or settings.server.public_url or "http://127.0.0.1:8080"
    async with (
        redis_client(store.redis_url, cluster=store.redis_cluster) as redis,
        aiohttp.ClientSession() as session,
    ):
        stream = settings.commerce.purchase_stream
        orders = ReferenceOrderSystem(
            redis, session, stream=stream, base_url=url, token=token,
            failure_rate=args.failure_rate, group=args.group, consumer=args.consumer,
        )  # fmt: skip
        print(f"orders: consuming {stream} as {args.group}/{args.consumer}, "
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
        hosts = ", ".join(f"{h} {c}" for h, c in orders.earnings.most_common(10)) or "none"
        print(f"orders: gifts {orders.gifts} ({orders.gift_credits} credits net of refunds; "
              f"host earnings: {hosts}; platform {orders.platform}), top-ups {orders.topups}, "
              f"refunds {orders.refunds}", flush=True)  # fmt: skip
    return 0
