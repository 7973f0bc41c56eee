"""The `live` command: serve, demo, cluster, token, orders, loadtest."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import Any

from core.limits import raise_open_files_limit
from live.cli import demo as cmd_demo
from live.cli import serve as cmd_serve
from live.cli import token as cmd_token
from live.cli.options import node_flags


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="live",
        description="Live-commerce streaming server: WebRTC fan-out, chat, flash sales on Redis.",
        epilog="Environment: REDIS_URL (else embedded Valkey), LIVE_JWT_SECRET, LIVE_* settings.",
    )
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run a node", description=cmd_serve.__doc__)
    node_flags(serve)
    serve.add_argument("--role", choices=["all", "origin", "edge"], help="node role (default all)")
    serve.add_argument("--origin", help="origin URL an edge pulls from (LIVE_ORIGIN_URL)")
    serve.set_defaults(run=cmd_serve.run)

    demo = sub.add_parser(
        "demo",
        help="embedded Valkey, an origin and an edge, a demo room, links",
        description=cmd_demo.__doc__,
    )
    node_flags(demo)
    demo.add_argument("--room", default="demo", help="demo room id (default demo)")
    demo.set_defaults(run=cmd_demo.run)

    token = sub.add_parser("token", help="print a signed token", description=cmd_token.__doc__)
    token.add_argument(
        "--role", required=True, choices=["host", "moderator", "viewer", "orders", "node"]
    )
    token.add_argument("--user", required=True, help="user id (the token's sub)")
    token.add_argument("--name", help="display name (default: the user id)")
    token.add_argument(
        "--room", action="append", help="room id the token grants (repeat; default all)"
    )
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds (default 3600)")
    token.add_argument("--shop", help="the seller a host acts for (default: its own account)")
    token.set_defaults(run=cmd_token.run)

    _optional_commands(sub)
    return top


def _optional_commands(sub: Any) -> None:
    """Commands whose parts live in other packages register themselves here."""
    import importlib

    for module in ("live.cli.cluster", "live.cli.orders", "loadtest.cli"):
        try:
            importlib.import_module(module).register(sub)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    raise_open_files_limit()  # nodes and load generators hold one descriptor per connection
    result = args.run(args)
    if asyncio.iscoroutine(result):
        import uvloop

        try:
            return int(uvloop.run(result))
        except KeyboardInterrupt:
            return 130
    assert isinstance(result, int)
    return result


if __name__ == "__main__":
    sys.exit(main())
