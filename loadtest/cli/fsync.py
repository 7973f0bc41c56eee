"""`live loadtest fsync`: the embedded Valkey's `appendfsync always` against `everysec`.

For each policy a fresh embedded Valkey (pinned to the server CPUs) on the disk under
--dir, the reservation script called directly from this process (pinned to the generator's
CPUs): batched like a node's calls and one by one; calls/s, latency, and the acknowledged holds
a power loss can take. Bounded by --calls; the JSON document and a table.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from loadtest.cli.options import pinning_flags, refuse, write_json


def register(kinds: Any) -> None:
    """Add `live loadtest fsync`."""
    fsync = kinds.add_parser(
        "fsync",
        help="Valkey's appendfsync always vs everysec: reservation calls/s and what is at risk",
        description=__doc__,
    )
    fsync.add_argument("--calls", type=int, default=20_000, help="batched calls per policy")
    fsync.add_argument("--clients", type=int, default=50, help="concurrent callers (batched)")
    fsync.add_argument("--pipeline", type=int, default=16, help="calls per round trip (batched)")
    fsync.add_argument(
        "--dir", type=Path, default=None, help="where the servers write (default: a temp dir here)"
    )
    fsync.add_argument("--json", type=Path, default=None, metavar="PATH", help="write results here")
    pinning_flags(fsync)
    fsync.set_defaults(run=run)


async def run(args: argparse.Namespace) -> int:
    """Exit 0 after printing the figures, 2 on bad arguments."""
    from loadtest.benches.fsync import FsyncSpec, run_fsync, table
    from loadtest.fleet.servers import pinning_for

    if not 1 <= args.calls <= 1_000_000 or not 1 <= args.clients <= 1000:
        return refuse("calls must be 1..1,000,000 and clients 1..1000")
    if not 1 <= args.pipeline <= 1000:
        return refuse("pipeline must be 1..1000")
    pinning = pinning_for(args.server_cpus, args.client_cpus)
    spec = FsyncSpec(calls=args.calls, clients=args.clients, pipeline=args.pipeline,
                     work_dir=args.dir)  # fmt: skip
    doc = await run_fsync(spec, pinning)
    print(pinning.describe())
    print(table(doc))
    if args.json:
        write_json(doc, args.json)
        print(f"\nJSON written to {args.json}")
    return 0
