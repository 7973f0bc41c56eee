"""Print a JWT signed with this deployment's secret (LIVE_JWT_SECRET)."""

from __future__ import annotations

import argparse

from core.auth import TokenAuthority
from core.config import AuthSettings


def run(args: argparse.Namespace) -> int:
    authority = TokenAuthority(AuthSettings().jwt_secret.get_secret_value())
    print(
        authority.issue(
            user=args.user,
            role=args.role,
            name=args.name,
            rooms=args.room,
            ttl_s=args.ttl,
            shop=args.shop,
        )
    )
    return 0
