"""Start a demo: embedded Valkey, an origin node and an edge node on the next port (it pulls the
stream from the origin and serves its own viewers), a demo room with products, one of them pinned
with a flash sale opening a minute later, and links with signed development tokens for the host
studio, two viewers (one per node) and a moderator."""

from __future__ import annotations

import argparse

from core import logs
from live import demo_data
from live.app import RunningNode, serve, shared_store, wait_for_shutdown
from live.cli.options import settings_from

DAY_S = 24 * 3600


async def run(args: argparse.Namespace) -> int:
    origin = settings_from(
        args, node_id="origin", role="origin", data_dir=args.data_dir or "var/demo"
    )
    logs.configure(origin.log.level, json=False)
    async with shared_store(origin) as redis, serve(origin, redis) as first:
        edge = origin.replace(
            node_id="edge-1",
            role="edge",
            port=origin.server.port + 1 if origin.server.port else 0,
            public_url=None,
            origin_url=first.url,
        )
        async with serve(edge, redis) as second:
            await demo_data.seed(redis, args.room, "Saturday night live sale")
            sale = await demo_data.open_show(first.node.commerce, args.room)
            print_links(args.room, first, second)
            if sale is not None:
                print(
                    f"  Pinned: {sale['title']}; its flash sale of {sale['quantity']} opens in "
                    f"{demo_data.SHOW_SALE.starts_in_s:.0f} s.\n",
                    flush=True,
                )
            await wait_for_shutdown()
    return 0


def print_links(room: str, origin: RunningNode, edge: RunningNode) -> None:
    auth = origin.node.auth
    ttl = min(DAY_S, auth.max_ttl_s)
    links = {
        "host studio": (origin.url, "host", demo_data.HOST, "Host", "/studio"),
        "viewer (Alice, origin)": (origin.url, "viewer", "alice", "Alice", ""),
        "viewer (Bob, edge)": (edge.url, "viewer", "bob", "Bob", ""),
        "moderator (Mia)": (origin.url, "moderator", "mia", "Mia", "/moderate"),
    }
    print("\nLive demo is running. Open:", flush=True)
    for label, (url, role, user, name, suffix) in links.items():
        token = auth.issue(user=user, role=role, name=name, rooms=[room], ttl_s=ttl)
        print(f"  {label:24} {url}/rooms/{room}{suffix}#token={token}")
    api = auth.issue(user=demo_data.HOST, role="host", name="Host", rooms=[room], ttl_s=ttl)
    print(f"\n  host API token: {api}\n  Ctrl-C stops everything.\n", flush=True)
