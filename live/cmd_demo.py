"""Start a demo: embedded Valkey, an origin node and a second node on the next port, a demo room
with products, and links with signed development tokens for the host studio, two viewers (one per
node) and a moderator."""

from __future__ import annotations

import argparse

from live import demo_data, logs
from live.app import serve, shared_store, wait_for_shutdown


async def run(args: argparse.Namespace) -> int:
    from live.cli import settings_from

    origin = settings_from(args, node_id="origin", role="all", data_dir=args.data_dir or "var/demo")
    logs.configure(origin.log_level, json=False)
    second_port = origin.port + 1 if origin.port else 0
    edge = origin.model_copy(update={"node_id": "edge-1", "port": second_port, "public_url": None})
    async with (
        shared_store(origin) as redis,
        serve(origin, redis) as first,
        serve(edge, redis) as second,
    ):
        await demo_data.seed(redis, args.room, "Saturday night live sale")
        auth = first.node.auth
        day = 24 * 3600
        links = {
            "host studio": (first.url, "host", "host", "Host", "/studio"),
            "viewer (Alice, node 1)": (first.url, "viewer", "alice", "Alice", ""),
            "viewer (Bob, node 2)": (second.url, "viewer", "bob", "Bob", ""),
            "moderator (Mia)": (first.url, "moderator", "mia", "Mia", "/moderate"),
        }
        print("\nLive demo is running. Open:", flush=True)
        for label, (url, role, user, name, suffix) in links.items():
            token = auth.issue(user=user, role=role, name=name, rooms=[args.room], ttl_s=day)
            print(f"  {label:24} {url}/rooms/{args.room}{suffix}#token={token}")
        host_token = auth.issue(user="host", role="host", name="Host", rooms=[args.room], ttl_s=day)
        print(f"\n  host API token: {host_token}\n  Ctrl-C stops everything.\n", flush=True)
        await wait_for_shutdown()
    return 0
