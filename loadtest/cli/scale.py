"""`live loadtest scale`: per-node, per-relay and per-shard costs as nodes and shards are added."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from loadtest.cli.options import (
    cpu_list,
    missing_extra,
    refuse,
    show,
    warn_unless_loopback_only,
)

_SCALE_HELP = """\
Scale figures, in three parts (--parts, default all three):

  media  R rooms (--rooms), each published over WHIP (the pre-encoded VP8 640x480 30 fps stream
         of `live loadtest media`) on node k mod N, W WebRTC viewers per room
         (--viewers-per-room) spread over all N `all`-role nodes, for each N of --nodes: per
         node CPU, egress and ingress (/metrics), viewer sessions, upstreams; each viewer's fps
         over the measured window (--seconds) once every viewer watches; the relay cost of a
         room pulled by a node that is not its source (N nodes over 1, idle cost taken out)
  chat   one room, --chat-viewers members spread over N nodes, --chat-rate messages/s:
         deliveries/s, latency percentiles, nodes' CPU (`live loadtest chat`'s driver);
         with two rates or more, a node's cost per message and its fixed cost
  sale   the flash-sale crowd against a single Valkey and a Valkey Cluster (--shards, default
         1 3): one sale (its keys share one slot, so one shard does all its work), then --sales
         sales at once, placed on different shards; attempts/s, p50/p99, CPU per Valkey
         process, the sale's invariants

Pinning: nodes, Valkey and the cluster's servers run under `taskset -c SERVER_CPUS`; this
process (the publishers), the viewers' and buyers' and chat workers under CLIENT_CPUS
(default: upper half of the CPUs for servers, lower half for the generator; printed). With one
server core, N nodes and 3 shards share it: the figures are costs per node, relay and shard,
not scale-out gains (see docs/capacity.md).

WebRTC offers loopback ICE candidates only: run the media part under scripts/loopback-only:

    scripts/loopback-only .venv/bin/live loadtest scale --nodes 1 2 3 --seconds 10 \\
        --json bench-results/scale.json

Exit status: 0; 1 when a part failed its checks (a viewer without frames, a missing chat
delivery, a breached sale invariant); 2 on bad arguments."""


def register(kinds: Any) -> None:
    """Add `live loadtest scale`."""
    scale = kinds.add_parser(
        "scale",
        help="media, chat and sale figures as nodes (1-3) and Valkey shards (1, 3) are added",
        description=_SCALE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    scale.add_argument(
        "--parts",
        nargs="+",
        choices=["media", "chat", "sale"],
        default=["media", "chat", "sale"],
        help="parts to run (default all)",
    )
    scale.add_argument(
        "--nodes",
        type=int,
        nargs="+",
        choices=[1, 2, 3],
        default=[1, 2, 3],
        help="node counts of the media and chat parts (default 1 2 3)",
    )
    scale.add_argument(
        "--seconds",
        type=float,
        default=10.0,
        help="measured seconds: media window, chat sending, sale firing (most)",
    )
    scale.add_argument("--rooms", type=int, default=3, help="media: rooms, one publisher each")
    scale.add_argument(
        "--viewers-per-room",
        type=int,
        default=6,
        help="media: WebRTC viewers per room, spread over the nodes",
    )
    scale.add_argument(
        "--join-rate",
        type=float,
        default=20.0,
        help="media: WHEP sessions started per second, all rooms together",
    )
    scale.add_argument("--chat-viewers", type=int, default=600, help="chat: members of the room")
    scale.add_argument(
        "--chat-rate",
        type=float,
        nargs="+",
        default=[20.0],
        help="chat: messages per second (several: each node count at each rate; two or more "
        "split a node's cost into per message and fixed)",
    )
    scale.add_argument(
        "--shards",
        type=int,
        nargs="+",
        choices=[1, 3],
        default=[1, 3],
        help="sale: 1 (a single Valkey) and/or 3 (a 3-master Valkey Cluster)",
    )
    scale.add_argument("--sales", type=int, default=3, help="sale: sales run at once (S)")
    scale.add_argument("--sale-nodes", type=int, default=1, help="sale: nodes the buyers hit")
    scale.add_argument(
        "--sale-attempts",
        type=int,
        default=60_000,
        help="sale: attempts per run, split over its sales",
    )
    scale.add_argument(
        "--sale-users",
        type=int,
        default=20_000,
        help="sale: buyers per sale (each may hold 2 units; with the default quantity no sale "
        "sells out or meets the limit within a run, so every attempt is a hold in every run)",
    )
    scale.add_argument("--sale-quantity", type=int, default=20_000, help="sale: units per sale")
    scale.add_argument(
        "--sale-concurrency",
        type=int,
        default=192,
        help="sale: requests in flight per run, split over its sales",
    )
    scale.add_argument(
        "--server-cpus",
        type=cpu_list,
        default=None,
        help="CPUs for nodes and Valkey (default: upper half)",
    )
    scale.add_argument(
        "--client-cpus",
        type=cpu_list,
        default=None,
        help="CPUs for the generator (default: lower half)",
    )
    scale.add_argument(
        "--results",
        type=Path,
        default=Path("bench-results"),
        help="where the pre-encoded stream is cached (default bench-results)",
    )
    scale.add_argument("--json", type=Path, default=None, metavar="PATH", help="write results here")
    scale.set_defaults(run=run)


async def run(args: argparse.Namespace) -> int:
    from loadtest.benches.scale import ScaleSession, run_scale, table

    if "media" in args.parts:
        if missing := missing_extra():
            return refuse(missing)
        warn_unless_loopback_only()
    if (
        args.seconds <= 0
        or not 1 <= args.rooms <= 50
        or not 1 <= args.viewers_per_room <= 500
        or args.join_rate <= 0
        or not 1 <= args.sales <= 12
        or not 1 <= args.sale_nodes <= 3
        or not 1 <= args.chat_viewers <= 20_000
    ):
        return refuse(
            "--seconds and --join-rate must be positive, --rooms 1..50, --viewers-per-room "
            "1..500, --sales 1..12, --sale-nodes 1..3, --chat-viewers 1..20000"
        )
    session = ScaleSession(
        parts=args.parts,
        nodes=sorted(set(args.nodes)),
        seconds=args.seconds,
        rooms=args.rooms,
        viewers_per_room=args.viewers_per_room,
        join_rate=args.join_rate,
        chat_viewers=args.chat_viewers,
        chat_rates=args.chat_rate,
        shards=args.shards,
        sales=args.sales,
        sale_nodes=args.sale_nodes,
        sale_attempts=args.sale_attempts,
        sale_users=args.sale_users,
        sale_quantity=args.sale_quantity,
        sale_concurrency=args.sale_concurrency,
        server_cpus=args.server_cpus,
        client_cpus=args.client_cpus,
        results=args.results,
    )
    doc = await run_scale(session, progress=lambda line: print(line, flush=True))
    show(table(doc), doc, args.json)
    if not doc["ok"]:
        print("live loadtest: a scale part failed its checks (see the JSON)", file=sys.stderr)
        return 1
    return 0
