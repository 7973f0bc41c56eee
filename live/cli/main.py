"""The `live` command: serve, demo, cluster, token, orders, webhooks, loadtest."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from core.limits import raise_open_files_limit
from live.cli import demo as cmd_demo
from live.cli import serve as cmd_serve
from live.cli import token as cmd_token
from live.cli.options import node_flags


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="live",
        description="Live-commerce streaming server: WebRTC fan-out, chat, flash sales on Redis.",
        epilog="Environment: REDIS_URL (else embedded Valkey), LIVE_JWT_SECRET, LIVE_JWKS_URL, "
        "LIVE_* settings.",
    )
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run a node", description=cmd_serve.__doc__)
    node_flags(serve)
    serve.add_argument("--role", choices=["all", "origin", "edge"], help="node role (default all)")
    serve.add_argument(
        "--origin",
        help="origin URL an edge pulls a room from when no node holds its host (LIVE_ORIGIN_URL)",
    )
    serve.set_defaults(run=cmd_serve.run)

    demo = sub.add_parser(
        "demo",
        help="embedded Valkey, an origin and an edge, a demo room, links",
        description=cmd_demo.__doc__,
    )
    node_flags(demo)
    demo.add_argument("--room", default="demo", help="demo room id (default demo)")
    demo.set_defaults(run=cmd_demo.run)

    cmd_token.register(sub)

    _optional_commands(sub)
    return top


def _optional_commands(sub: Any) -> None:
    """Commands whose parts live in other packages register themselves here."""
    import importlib

    for module in ("live.cli.cluster", "live.cli.orders", "live.cli.webhooks", "loadtest.cli"):
        try:
            importlib.import_module(module).register(sub)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    raise_open_files_limit()  # nodes and load generators hold one descriptor per connection
    try:
        result = args.run(args)
        if asyncio.iscoroutine(result):
            import uvloop

            try:
                return int(uvloop.run(result))
            except KeyboardInterrupt:
                return 130
    except ValidationError as exc:
        # Settings refused: say which and why in one line each, never echoing the values (a
        # too-short secret would otherwise land in the logs nearly whole).
        for error in exc.errors(include_input=False, include_url=False):
            where = ".".join(str(part) for part in error["loc"]) or exc.title
            print(f"live {args.command}: {where}: {error['msg']}", file=sys.stderr)
        return 2
    assert isinstance(result, int)
    return result


if __name__ == "__main__":
    sys.exit(main())
