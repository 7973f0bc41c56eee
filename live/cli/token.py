"""Print a JWT signed with this deployment's secret (LIVE_JWT_SECRET).

A token names the rooms it grants (--room, repeatable) or says --all-rooms: a token for every
room is never the accident of a forgotten flag.
"""

from __future__ import annotations

import argparse
import sys

from core.auth import TokenAuthority
from core.config import AuthSettings


def run(args: argparse.Namespace) -> int:
    settings = AuthSettings()
    if not settings.secret_configured:
        print("live token: set LIVE_JWT_SECRET (the secret the nodes verify with)", file=sys.stderr)
        return 2
    authority = TokenAuthority(
        settings.jwt_secret.get_secret_value(), max_ttl_s=settings.token_max_ttl_s
    )
    if not 0 < args.ttl <= settings.token_max_ttl_s:
        print(
            f"live token: --ttl must be 1-{settings.token_max_ttl_s} s (LIVE_TOKEN_MAX_TTL_S)",
            file=sys.stderr,
        )
        return 2
    rooms = ["*"] if args.all_rooms else args.room
    print(
        authority.issue(
            user=args.user,
            role=args.role,
            name=args.name,
            rooms=rooms,
            ttl_s=args.ttl,
            shop=args.shop,
        )
    )
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `live token` subcommand."""
    token = sub.add_parser("token", help="print a signed token", description=__doc__)
    token.add_argument(
        "--role",
        required=True,
        choices=["host", "moderator", "viewer", "orders", "node", "privacy"],
    )
    token.add_argument("--user", required=True, help="user id (the token's sub)")
    token.add_argument("--name", help="display name (default: the user id)")
    where = token.add_mutually_exclusive_group(required=True)
    where.add_argument("--room", action="append", help="room id the token grants (repeat)")
    where.add_argument("--all-rooms", action="store_true", help="grant every room")
    token.add_argument("--shop", help="the seller the token acts for (its shop claim)")
    token.add_argument(
        "--ttl",
        type=int,
        default=3600,
        help="lifetime in seconds (default 3600, at most LIVE_TOKEN_MAX_TTL_S, default 86400)",
    )
    token.set_defaults(run=run)
