"""The `live` command: serve, demo, cluster, token, orders, loadtest."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from live.config import Settings
from live.limits import raise_open_files_limit

Command = Callable[[argparse.Namespace], int | Coroutine[Any, Any, int]]


def _node_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", help="address to listen on (LIVE_HOST, default 127.0.0.1)")
    p.add_argument(
        "--port", type=int, help="port to listen on, 0 for any (LIVE_PORT, default 8080)"
    )
    p.add_argument("--region", help="region this node serves (LIVE_REGION)")
    p.add_argument("--public-url", help="URL clients use to reach this node (LIVE_PUBLIC_URL)")
    p.add_argument("--data-dir", help="where the embedded Valkey keeps its data (LIVE_DATA_DIR)")
    p.add_argument(
        "--media-workers",
        type=count_or_auto,
        metavar="N|auto",
        help="processes serving viewers' WebRTC: 0 = in the node, auto = one per core when "
        "there are several (LIVE_MEDIA_WORKERS, default auto)",
    )
    p.add_argument(
        "--media-max-viewers",
        type=count_or_auto,
        metavar="N|auto",
        help="WebRTC viewers the node takes before WHEP answers 503 full: 0 = no limit, auto = "
        "300 per process serving viewers (LIVE_MEDIA_MAX_VIEWERS, default auto)",
    )


def count_or_auto(text: str) -> int | str:
    """A count or `auto` (`--media-workers`, `--media-max-viewers`)."""
    if text == "auto":
        return text
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("a number or auto") from None
    if count < 0:
        raise argparse.ArgumentTypeError("0 or more")
    return count


def settings_from(args: argparse.Namespace, **overrides: Any) -> Settings:
    """Environment first, then flags that were given, then `overrides`."""
    values = {
        k: v
        for k, v in {
            "host": getattr(args, "host", None),
            "port": getattr(args, "port", None),
            "region": getattr(args, "region", None),
            "public_url": getattr(args, "public_url", None),
            "data_dir": getattr(args, "data_dir", None),
            "role": getattr(args, "role", None),
            "origin_url": getattr(args, "origin", None),
            "media_workers": getattr(args, "media_workers", None),
            "media_max_viewers": getattr(args, "media_max_viewers", None),
        }.items()
        if v is not None
    }
    values.update(overrides)
    settings = Settings(**values)
    if "media_workers" not in settings.model_fields_set:
        # Commands that run nodes for real use the cores; Settings' own default (0) suits tests.
        settings.media_workers = "auto"
    return settings


def parser() -> argparse.ArgumentParser:
    from live import cmd_demo, cmd_serve, cmd_token

    top = argparse.ArgumentParser(
        prog="live",
        description="Live-commerce streaming server: WebRTC fan-out, chat, flash sales on Redis.",
        epilog="Environment: REDIS_URL (else embedded Valkey), LIVE_JWT_SECRET, LIVE_* settings.",
    )
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run a node", description=cmd_serve.__doc__)
    _node_flags(serve)
    serve.add_argument("--role", choices=["all", "origin", "edge"], help="node role (default all)")
    serve.add_argument("--origin", help="origin URL an edge pulls from (LIVE_ORIGIN_URL)")
    serve.set_defaults(run=cmd_serve.run)

    demo = sub.add_parser(
        "demo",
        help="embedded Valkey, an origin and an edge, a demo room, links",
        description=cmd_demo.__doc__,
    )
    _node_flags(demo)
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
    token.set_defaults(run=cmd_token.run)

    _optional_commands(sub)
    return top


def _optional_commands(sub: Any) -> None:
    """Commands whose parts live in other packages register themselves here."""
    import importlib

    for module in ("live.cmd_cluster", "live.cmd_orders", "loadtest.cli"):
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
