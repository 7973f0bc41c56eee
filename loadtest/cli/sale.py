"""`live loadtest sale`: a flash-sale crowd against 1 and 2 nodes, the script alone beside it.

For each node count: fresh `live serve` nodes (pinned apart from the generator) on one embedded
Valkey; for each path (`--via http socket`) a new sale, the buyer fleet, the invariants; then the
reservation script called directly on the same Valkey with the same sale settings; the JSON
document and a table.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from loadtest.cli.options import pinning_flags, refuse, show
from loadtest.plan.safety import UnsafeTarget, check_targets


def register(kinds: Any) -> None:
    """Add `live loadtest sale`."""
    sale = kinds.add_parser(
        "sale",
        help="a flash-sale crowd pressing Buy; invariants checked",
        description=__doc__,
    )
    sale.add_argument("--attempts", type=int, default=100_000, help="reservation attempts (most)")
    sale.add_argument(
        "--rate", type=float, default=0.0, help="attempts per second (0: as fast as possible)"
    )
    sale.add_argument("--duration", type=float, default=20.0, help="seconds of firing (most)")
    sale.add_argument("--users", type=int, default=5000, help="simulated buyers (distinct tokens)")
    sale.add_argument("--quantity", type=int, default=10_000, help="units in the sale")
    sale.add_argument("--per-user-limit", type=int, default=2, help="units one buyer may hold")
    sale.add_argument(
        "--concurrency", type=int, default=256, help="requests in flight, across all workers"
    )
    sale.add_argument(
        "--nodes", type=int, nargs="+", choices=[1, 2], default=[1], help="node counts to run"
    )
    sale.add_argument("--target", action="append", default=[], metavar="URL",
                      help="an already running node (repeat); nothing is started")  # fmt: skip
    sale.add_argument("--secret", default=None, help="token secret of --target nodes")
    sale.add_argument("--redis-url", default=None,
                      help="the --target nodes' Redis, for the store-side invariants")  # fmt: skip
    sale.add_argument(
        "--direct",
        choices=["auto", "redis-benchmark", "python", "none"],
        default="auto",
        help="call the reservation script directly on Valkey too (auto: redis-benchmark if found)",
    )
    sale.add_argument("--direct-calls", type=int, default=200_000, help="direct script calls")
    sale.add_argument(
        "--via", nargs="+", choices=["http", "socket"], default=["http"],
        help="how buyers reserve: http (a POST per attempt) and/or socket (Socket.IO `buy` on "
        "each buyer's joined connection); several: one run each per node count, side by side",
    )  # fmt: skip
    sale.add_argument("--workers", type=int, default=None, help="load-generator processes")
    sale.add_argument("--json", type=Path, default=None, metavar="PATH", help="write results here")
    pinning_flags(sale)
    sale.set_defaults(run=run)


async def run(args: argparse.Namespace) -> int:
    """Exit 0 when every invariant holds, 1 on a breach, 2 on bad arguments."""
    from loadtest.benches.sale import SaleSession, run_sale_session, table
    from loadtest.fleet.servers import pinning_for
    from loadtest.plan.workloads import SaleSpec, SaleWorkload

    try:
        check_targets(args.target, args.allow_remote)
        if args.redis_url:
            check_targets([args.redis_url.replace("redis://", "http://", 1)], args.allow_remote)
    except UnsafeTarget as exc:
        return refuse(str(exc))
    workload = SaleWorkload(
        users=args.users,
        attempts=args.attempts,
        rate=args.rate,
        duration_s=args.duration,
        concurrency=args.concurrency,
    )
    try:
        workload.validate()
        if not 1 <= args.quantity <= 1_000_000 or not 1 <= args.per_user_limit <= 1000:
            raise ValueError("quantity must be 1..1,000,000 and the per-user limit 1..1000")
        if not 1 <= args.direct_calls <= 10_000_000:
            raise ValueError("direct calls must be 1..10,000,000")
    except ValueError as exc:
        return refuse(str(exc))
    client_cpus = pinning_for(client_cpus=args.client_cpus or None).client_cpus
    session = SaleSession(
        workload=workload,
        sale=SaleSpec(quantity=args.quantity, per_user_limit=args.per_user_limit),
        nodes=args.nodes,
        targets=args.target,
        secret=args.secret or os.environ.get("LIVE_JWT_SECRET") if args.target else args.secret,
        redis_url=args.redis_url,
        workers=args.workers or max(1, len(client_cpus)),
        server_cpus=args.server_cpus,
        client_cpus=args.client_cpus,
        direct=args.direct,
        direct_calls=args.direct_calls,
        via=list(dict.fromkeys(args.via)),
    )
    doc = await run_sale_session(session, progress=lambda line: print(line, flush=True))
    show(table(doc), doc, args.json)
    if not doc["ok"]:
        print("live loadtest: an invariant of the sale was breached", file=sys.stderr)
        return 1
    return 0
