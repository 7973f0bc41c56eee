"""`live loadtest chat`: a crowd in one chat room, measured end to end, optionally against Node.

Starts an embedded Valkey and 1 or 2 `live serve` nodes (unless --target is given), pinned to CPUs
apart from the load generator, connects N simulated viewers, sends a room-wide chat rate for the
duration, and reports deliveries, losses, latency percentiles, server RSS per connection and CPU.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from loadtest.cli.options import pinning_flags, refuse, show
from loadtest.plan.safety import UnsafeTarget, check_targets
from loadtest.plan.workloads import MAX_VIEWERS, ChatWorkload, senders_for


def register(kinds: Any) -> None:
    """Add `live loadtest chat`."""
    chat = kinds.add_parser(
        "chat", help="N viewers in one room at a room-wide chat rate", description=__doc__
    )
    chat.add_argument(
        "--viewers",
        type=int,
        nargs="+",
        default=[1000],
        help="simulated viewers (several values run one after another)",
    )
    chat.add_argument("--rate", type=float, default=20.0, help="room-wide chat messages per second")
    chat.add_argument("--duration", type=float, default=20.0, help="seconds of sending")
    chat.add_argument(
        "--nodes",
        type=int,
        nargs="+",
        choices=[1, 2, 3],
        default=[1],
        help="server nodes to start and split the viewers over (1, 2, 3, or several in turn)",
    )
    chat.add_argument(
        "--target",
        action="append",
        default=[],
        metavar="URL",
        help="an already running node (repeat); nothing is started",
    )
    chat.add_argument(
        "--secret", default=None, help="token secret of --target nodes (default LIVE_JWT_SECRET)"
    )
    chat.add_argument(
        "--reference",
        action="store_true",
        help="also run the Node.js reference server with the same workload",
    )
    chat.add_argument("--json", type=Path, default=None, metavar="PATH", help="write results here")
    chat.add_argument(
        "--workers",
        type=int,
        default=None,
        help="load-generator processes (default: one per generator CPU)",
    )
    chat.add_argument(
        "--senders",
        type=int,
        default=None,
        help="viewers that send (default: enough to stay under the rate limit)",
    )
    chat.add_argument(
        "--sender-role",
        choices=["viewer", "moderator"],
        default="viewer",
        help="token role of senders; moderators are exempt from the rate limit",
    )
    chat.add_argument(
        "--drain",
        type=float,
        default=10.0,
        help="seconds to wait for late deliveries after sending ends",
    )
    chat.add_argument(
        "--warmup", type=float, default=2.0, help="seconds of unmeasured sending first"
    )
    chat.add_argument(
        "--connect-rate", type=float, default=1000.0, help="new connections per second"
    )
    pinning_flags(chat)
    chat.set_defaults(run=run)


async def run(args: argparse.Namespace) -> int:
    from loadtest.benches.chat import Session, run_session, table
    from loadtest.fleet.servers import pinning_for

    try:
        check_targets(args.target, args.allow_remote)
    except UnsafeTarget as exc:
        return refuse(str(exc))
    if any(not 1 <= v <= MAX_VIEWERS for v in args.viewers):
        return refuse(f"--viewers must be between 1 and {MAX_VIEWERS}")
    if args.target and args.reference:
        return refuse("--reference starts its own servers; drop --target")
    smallest = min(args.viewers)
    workload = ChatWorkload(
        viewers=smallest,
        rate=args.rate,
        duration_s=args.duration,
        room="",
        senders=min(args.senders or senders_for(args.rate, smallest), smallest),
        drain_s=args.drain,
        warmup_s=args.warmup,
        connect_rate=args.connect_rate,
        sender_role=args.sender_role,
    )
    try:
        workload.validate()
    except ValueError as exc:
        return refuse(str(exc))
    client_cpus = pinning_for(client_cpus=args.client_cpus or None).client_cpus
    session = Session(
        workload=workload,
        viewers=args.viewers,
        nodes=args.nodes,
        reference=args.reference,
        targets=args.target,
        secret=args.secret or os.environ.get("LIVE_JWT_SECRET") if args.target else args.secret,
        workers=args.workers or max(1, len(client_cpus)),
        server_cpus=args.server_cpus,
        client_cpus=args.client_cpus,
    )
    doc = await run_session(session, progress=lambda line: print(line, flush=True))
    show(table(doc), doc, args.json)
    return 0
