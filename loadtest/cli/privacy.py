"""`live loadtest privacy`: what erasing a user costs the store.

For each --entries size a fresh embedded Valkey (pinned to the server CPUs) holding a purchase
stream of that many events (one in 1,000 the user's, a consumer group with 100 pending): the
time to read it whole and find the user's events (export and erase do), and to rewrite it in
place with them pseudonymised (one atomic script: Valkey's stall, seen by a client pinging
throughout). The JSON document and a table.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from loadtest.cli.options import pinning_flags, refuse, write_json


def register(kinds: Any) -> None:
    """Add `live loadtest privacy`."""
    privacy = kinds.add_parser(
        "privacy",
        help="what erasing a user costs: reading and rewriting a purchase stream in place",
        description=__doc__,
    )
    privacy.add_argument(
        "--entries", type=int, nargs="+", default=[10_000, 100_000],
        help="stream sizes to measure (default 10000 100000)",
    )  # fmt: skip
    privacy.add_argument(
        "--json", type=Path, default=None, metavar="PATH", help="write results here"
    )
    pinning_flags(privacy)
    privacy.set_defaults(run=run)


async def run(args: argparse.Namespace) -> int:
    """Exit 0 after printing the figures, 2 on bad arguments."""
    from loadtest.benches.privacy import PrivacySpec, run_privacy, table
    from loadtest.fleet.servers import pinning_for

    if not all(1_000 <= n <= 2_000_000 for n in args.entries):
        return refuse("entries must be 1,000..2,000,000")
    pinning = pinning_for(args.server_cpus, args.client_cpus)
    doc = await run_privacy(PrivacySpec(entries=tuple(args.entries)), pinning)
    print(pinning.describe())
    print(table(doc))
    if args.json:
        write_json(doc, args.json)
        print(f"\nJSON written to {args.json}")
    return 0
