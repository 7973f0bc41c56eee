"""`live loadtest gifts`: gifts per second on one node core, and gift delivery to a crowd.

One `live serve` node and its Valkey pinned to the server CPUs (default: the upper half), the
load generator on the others. First a burst: GIFTERS Socket.IO gifters, each granted credits by
the order system's API, send ATTEMPTS gifts as fast as CONCURRENCY in-flight gifts allow; the
books are checked after (debits equal the host's credits plus the platform share, no balance
below zero, one `gift.sent` per ledger entry and acked gift, balances equal grants minus
spending). Then the wallet script called directly on the same Valkey (the ceiling). Then
delivery: VIEWERS Socket.IO viewers in one room while gifts arrive at GIFT_RATE/s (one per
gifter) beside one chat message a second, each viewer timing its `gift` event from the gift's
scheduled send. A node sends a room at most LIVE_GIFTS_ROOM_EVENTS_PER_S (5) `gift` events a
second: above that, gifts wait their turn and are dropped from the room's events after 3 s.
The node inherits LIVE_* settings from the environment (LIVE_GIFTS_CATALOGUE_TTL_S=0 reads the
gift catalogue on every gift, for a before/after comparison).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from loadtest.cli.options import pinning_flags, refuse, show


def register(kinds: Any) -> None:
    """Add `live loadtest gifts`."""
    gifts = kinds.add_parser(
        "gifts",
        help="gifts/s on one node core, the wallet script alone, gift delivery to viewers",
        description=__doc__,
    )
    gifts.add_argument("--gifters", type=int, default=1000, help="burst: gifters (sockets)")
    gifts.add_argument("--attempts", type=int, default=20_000,
                       help="burst: gifts sent (0: no burst)")  # fmt: skip
    gifts.add_argument("--concurrency", type=int, default=256, help="burst: gifts in flight")
    gifts.add_argument("--burst-seconds", type=float, default=20.0,
                       help="burst: stop sending after this long")  # fmt: skip
    gifts.add_argument("--gift", default="rose", help="the gift (default catalogue id)")
    gifts.add_argument("--direct-calls", type=int, default=50_000,
                       help="wallet script calls made directly on Valkey (0: none)")  # fmt: skip
    gifts.add_argument("--viewers", type=int, default=5000,
                       help="delivery: viewers in the room (0: no delivery run)")  # fmt: skip
    gifts.add_argument("--gift-rate", type=float, default=4.0,
                       help="delivery: gifts per second (one per gifter)")  # fmt: skip
    gifts.add_argument("--duration", type=float, default=10.0,
                       help="delivery: seconds of gifting")  # fmt: skip
    gifts.add_argument("--workers", type=int, default=None, help="load-generator processes")
    gifts.add_argument("--profile", type=Path, default=None, metavar="PATH",
                       help="py-spy the node during the burst: an SVG flame graph, or collapsed "
                       "stacks when PATH ends in .txt")  # fmt: skip
    gifts.add_argument("--json", type=Path, default=None, metavar="PATH", help="write results here")
    pinning_flags(gifts)
    gifts.set_defaults(run=run)


async def run(args: argparse.Namespace) -> int:
    """Exit 0 when the books hold and every gift reached every viewer, 1 otherwise, 2 on bad
    arguments."""
    from commerce.gifts import DEFAULT_GIFTS
    from loadtest.benches.gifts import GiftSession, run_gift_session, table
    from loadtest.fleet.servers import pinning_for

    prices = {g["gift_id"]: int(g["price"]) for g in DEFAULT_GIFTS}
    if args.gift not in prices:
        return refuse(f"--gift: one of {', '.join(prices)}")
    if not 0 <= args.attempts <= 10_000_000 or not 1 <= args.gifters <= 100_000:
        return refuse("--attempts must be 0..10,000,000 and --gifters 1..100,000")
    if not 0 <= args.viewers <= 50_000 or not 0 < args.gift_rate <= 100:
        return refuse("--viewers must be 0..50,000 and --gift-rate above 0, at most 100")
    if not 0 < args.duration <= 600 or not 0 < args.burst_seconds <= 600:
        return refuse("--duration and --burst-seconds must be above 0 and at most 600")
    if not 0 <= args.direct_calls <= 10_000_000:
        return refuse("--direct-calls must be 0..10,000,000")
    client_cpus = pinning_for(client_cpus=args.client_cpus or None).client_cpus
    session = GiftSession(
        gifters=args.gifters, attempts=args.attempts, concurrency=args.concurrency,
        burst_s=args.burst_seconds, gift_id=args.gift, gift_price=prices[args.gift],
        viewers=args.viewers, gift_rate=args.gift_rate, delivery_s=args.duration,
        direct_calls=args.direct_calls, workers=args.workers or max(1, len(client_cpus)),
        server_cpus=args.server_cpus, client_cpus=args.client_cpus, profile=args.profile,
    )  # fmt: skip
    try:
        doc = await run_gift_session(session, progress=lambda line: print(line, flush=True))
    except ValueError as exc:
        return refuse(str(exc))
    show(table(doc), doc, args.json)
    if not doc["ok"]:
        print("live loadtest: gifts broke the books or did not reach every viewer", file=sys.stderr)
        return 1
    return 0
