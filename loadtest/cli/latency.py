"""`live loadtest latency`: glass-to-glass latency on an origin and through an edge node."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from loadtest.cli.options import missing_extra, refuse, warn_unless_loopback_only, write_json

_LATENCY_HELP = """\
Edge hop latency and origin egress: Valkey, an origin node (region na) and an edge node (region
eu) as `live serve` processes; a synthetic host publishes counter-stamped VP8 video to the
origin over WHIP; --viewers viewers on the origin and as many on the edge play it over WHEP and
decode every frame. Latency per frame = decode time - capture time (one process clock), as p50,
p95 and mean for each side after 2 s of warm-up; the edge hop is the edge viewers' latency minus
the origin viewers' minus the one-way delay origin -> edge. Also the origin's forwarded kbit/s.

No pinning: everything shares the machine's CPUs (run it on an otherwise idle one).

WebRTC: run it loopback-only (scripts/loopback-only; as root or in a user namespace):

    scripts/loopback-only .venv/bin/live loadtest latency --viewers 4 --seconds 10

With --wan (root, not under scripts/loopback-only: it builds its own network namespaces, see
edge/wan.py) the nodes sit in namespaces with the na-eu delay between them; the host and the
viewers are on the host's end of the WAN, next to both nodes, so only the origin -> edge path
carries the inter-region delay."""


def register(kinds: Any) -> None:
    """Add `live loadtest latency`."""
    latency = kinds.add_parser(
        "latency",
        help="glass-to-glass latency through an edge node (loopback-only)",
        description=_LATENCY_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    latency.add_argument("--viewers", type=int, default=4, help="viewers on each node")
    latency.add_argument("--seconds", type=float, default=10.0, help="measured seconds")
    latency.add_argument(
        "--wan", action="store_true", help="nodes in network namespaces with delays (root)"
    )
    latency.add_argument("--json", type=Path, default=None, metavar="PATH",
                         help="write the results here")  # fmt: skip
    latency.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import asyncio

    if missing := missing_extra():
        return refuse(missing)
    from loadtest.benches import latency

    if args.viewers < 1 or args.seconds <= 0:
        return refuse("--viewers and --seconds must be positive")
    if args.wan and os.geteuid() != 0:
        return refuse("--wan needs root (network namespaces)")
    if not args.wan:
        warn_unless_loopback_only()
    os.environ.setdefault("LIVE_LOG_JSON", "false")
    doc = asyncio.run(latency.run(args.viewers, args.seconds, args.wan))
    print(json.dumps(doc, indent=2))
    if args.json:
        write_json({"benchmark": "latency", **doc}, args.json)
        print(f"JSON written to {args.json}")
    return 0
