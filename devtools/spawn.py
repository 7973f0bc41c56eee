"""Server processes on this machine: `live serve` nodes (and the load tester's Node.js reference),
started and awaited until they listen, stopped in order; a cluster of them on loopback or a WAN.
Used by `live cluster`, the load tester and the tests.

Nodes are started as a command line (`python -m live.cli.main serve ...`): devtools does not
import the app. Each child gets a session of its own (the terminal's Ctrl-C reaches only its
parent, which stops children in order) and SIGTERM if its parent dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import re
import shutil
import signal
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from core.config import DEFAULT_FSYNC
from core.valkey import EmbeddedValkey
from devtools import wan as wan_net

LISTENING = re.compile(r"listening on (http://\S+)")
PR_SET_PDEATHSIG = 1


class SpawnError(RuntimeError):
    """A server process that exited, or did not listen in time, while starting."""


def die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    # A node must not outlive a cluster (or a test) that was killed without a chance to stop it.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class NodeProcess:
    """One server child process, started and awaited until it listens."""

    node_id: str
    role: str  # origin, edge or all (a node of both; the reference server too)
    region: str
    url: str
    proc: asyncio.subprocess.Process
    _pump: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.proc.pid

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


async def spawn(
    node_id: str,
    args: Sequence[str],
    env: Mapping[str, str],
    *,
    role: str = "all",
    region: str = "",
    start_within_s: float = 30.0,
    log: Path | None = None,
    echo: bool = False,
    stderr: int | IO[Any] | None = None,
    netns: str | None = None,
    cpus: Sequence[int] = (),
    cwd: Path | None = None,
) -> NodeProcess:
    """Run `args` as a child with `env` and wait until it prints "listening on URL".

    Its output goes to `log` (a file, read for that line) or through a pipe (echoed with its id
    when `echo`; `stderr` elsewhere, or not captured). In network namespace `netns` if given;
    pinned to `cpus` (with taskset when installed, else from here once started)."""
    taskset = shutil.which("taskset") if cpus else None
    if taskset is not None:
        args = [taskset, "-c", ",".join(map(str, cpus)), *args]
    out: int | IO[Any] = asyncio.subprocess.PIPE
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        out = log.open("wb")
        stderr = asyncio.subprocess.STDOUT
    try:
        proc = await asyncio.create_subprocess_exec(
            *args,
            env=dict(env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=stderr,
            cwd=cwd,
            preexec_fn=wan_net.netns_entry(netns) if netns else die_with_parent,
            start_new_session=True,  # Ctrl-C reaches the parent, which stops children in order
        )
    finally:
        if not isinstance(out, int):
            out.close()  # the child holds its own descriptor
    if cpus and taskset is None:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(proc.pid, cpus)
    try:
        async with asyncio.timeout(start_within_s):
            url = await (_listening_in(log, proc) if log else _listening_on(proc))
    except BaseException as exc:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        code = await proc.wait()
        if isinstance(exc, TimeoutError):
            raise SpawnError(
                f"{node_id} did not report 'listening on' within {start_within_s:.0f} s"
            ) from None
        if isinstance(exc, _Exited):
            tail = f":\n{_tail(log)}" if log else ""
            raise SpawnError(f"{node_id} exited with {code}{tail}") from None
        raise
    node = NodeProcess(node_id, role, region, url, proc)
    if proc.stdout is not None:
        node._pump = asyncio.ensure_future(_pump(proc.stdout, f"[{node_id}]", echo))
    return node


class _Exited(Exception):
    pass


async def _listening_on(proc: asyncio.subprocess.Process) -> str:
    assert proc.stdout is not None
    while line := (await proc.stdout.readline()).decode(errors="replace"):
        if match := LISTENING.search(line):
            return match.group(1)
    raise _Exited


async def _listening_in(log: Path, proc: asyncio.subprocess.Process) -> str:
    while True:
        if url := _url_in(log):
            return url
        if proc.returncode is not None:
            raise _Exited
        await asyncio.sleep(0.05)


def _url_in(log: Path) -> str | None:
    match = LISTENING.search(log.read_text(errors="replace"))
    return match.group(1) if match else None


def _tail(log: Path, chars: int = 2000) -> str:
    return log.read_text(errors="replace")[-chars:]


async def _pump(stream: asyncio.StreamReader, prefix: str, echo: bool) -> None:
    # Keep reading the child's stdout so it never blocks on a full pipe.
    while line := await stream.readline():
        if echo:
            print(f"{prefix} {line.decode(errors='replace').rstrip()}", flush=True)


def serve_args(
    *,
    role: str | None = None,
    region: str | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    origin: str | None = None,
) -> list[str]:
    """The command line of `live serve` with this interpreter."""
    args = [sys.executable, "-m", "live.cli.main", "serve"]
    if role:
        args += ["--role", role]
    if region:
        args += ["--region", region]
    args += ["--host", host, "--port", str(port)]
    if origin:
        args += ["--origin", origin]
    return args


async def spawn_node(
    *,
    node_id: str,
    env: Mapping[str, str],
    role: str | None = None,
    region: str | None = None,
    port: int = 0,
    host: str = "127.0.0.1",
    origin: str | None = None,
    **options: Any,
) -> NodeProcess:
    """`live serve` as a child with `env` (REDIS_URL, LIVE_JWT_SECRET...) and LIVE_NODE_ID;
    `options` are `spawn`'s. Without a role it is a node of both (`all`)."""
    args = serve_args(role=role, region=region, host=host, port=port, origin=origin)
    return await spawn(
        node_id,
        args,
        {**env, "LIVE_NODE_ID": node_id},
        role=role or "all",
        region=region or "",
        **options,
    )


def child_env(
    redis_url: str, secret: str, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of a cluster's nodes: this one's, their Redis and token secret."""
    env = {**os.environ, "REDIS_URL": redis_url, "LIVE_JWT_SECRET": secret}
    env.setdefault("LIVE_LOG_JSON", "false")
    # Several nodes share this machine: by default none runs media workers of its own.
    env.setdefault("LIVE_MEDIA_WORKERS", "0")
    env.update(extra or {})
    return env


@contextlib.contextmanager
def valkey_on(data_dir: Path, host: str) -> Iterator[str]:
    """Like `core.store.embedded_valkey` (supervised, password, private files), but listening on
    `host` (the WAN's host address, which every namespace reaches), not loopback."""
    # protected-mode is for a server on a shared network without a password; this address exists
    # only on this host and in the cluster's namespaces, and the server wants a password anyway.
    config = {"bind": host, "protected-mode": "no"}
    server = EmbeddedValkey(
        data_dir / "valkey", host=host, appendfsync=DEFAULT_FSYNC, config=config
    )
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


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
