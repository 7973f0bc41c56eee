"""A benchmark session: the system under test (unless given), then each run of the matrix.

For every (nodes, viewers) pair the Python nodes run the workload, then, with `--reference`,
the Node.js reference on the same Valkey with the same workload, so the two sit side by side.
Each run gets fresh server processes and a fresh room, so no run inherits another's memory.
"""

from __future__ import annotations

import contextlib
import secrets
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp

from core.auth import TokenAuthority
from core.store import embedded_valkey, redis_client
from loadtest.benches.chat import Progress, run_chat
from loadtest.fleet import servers
from loadtest.plan.workloads import ChatWorkload
from loadtest.report.procfs import available_cpus


@dataclass
class Session:
    """What the CLI asked for."""

    workload: ChatWorkload
    viewers: list[int]
    nodes: list[int]
    reference: bool = False
    targets: list[str] = field(default_factory=list)
    secret: str | None = None
    workers: int = 1
    server_cpus: list[int] | None = None
    client_cpus: list[int] | None = None
    redis_url: str | None = None
    work_dir: Path | None = None


async def run_session(session: Session, progress: Progress = print) -> dict[str, Any]:
    """Every run of the session; returns the JSON document."""
    pinning = servers.default_pinning(available_cpus())
    if session.server_cpus is not None:
        pinning.server_cpus = session.server_cpus
    if session.client_cpus is not None:
        pinning.client_cpus = session.client_cpus
    runs: list[dict[str, Any]] = []
    started = time.time()
    if session.targets:
        secret = session.secret
        if not secret:
            raise ValueError("--target needs the nodes' token secret (LIVE_JWT_SECRET or --secret)")
        progress(f"targets {' '.join(session.targets)}; generator on CPU {pinning.client_cpus}")
        for viewers in session.viewers:
            work = replace(session.workload, viewers=viewers, room=_room())
            await create_room(session.targets[0], secret, work.room, required=False)
            runs.append(
                await _one(session, work, "target", session.targets, {}, secret, pinning, progress)
            )
    else:
        progress(pinning.describe())
        sut = store(session.work_dir, session.redis_url, pinning)
        async with sut as (redis_url, valkey_pid, work_dir):
            secret = session.secret or secrets.token_urlsafe(32)
            kinds = ["python", "node"] if session.reference else ["python"]
            for nodes in session.nodes:
                for viewers in session.viewers:
                    for kind in kinds:
                        work = replace(session.workload, viewers=viewers, room=_room())
                        runs.append(await _with_servers(
                            session, work, kind, nodes, redis_url, valkey_pid, secret,
                            pinning, work_dir, progress,
                        ))  # fmt: skip
    return {
        "benchmark": "chat",
        "started": started,
        "pinning": {
            "server_cpus": pinning.server_cpus,
            "client_cpus": pinning.client_cpus,
            "tool": pinning.tool,
            "note": pinning.describe(),
        },
        "runs": runs,
        "ratios": ratios(runs),
    }


def _room() -> str:
    return "bench-" + secrets.token_hex(4)


@contextlib.asynccontextmanager
async def store(
    work_dir: Path | None, redis_url: str | None, pinning: servers.Pinning
) -> AsyncIterator[tuple[str, int | None, Path]]:
    """`redis_url`, else an embedded Valkey pinned to the server CPUs: (url, pid, work dir)."""
    with contextlib.ExitStack() as stack:
        if work_dir is None:
            work_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="loadtest-")))
        url = redis_url or stack.enter_context(embedded_valkey(work_dir / "store"))
        async with redis_client(url) as redis:
            pid = await servers.valkey_pid(redis) if redis_url is None else None
        if pid is not None:
            servers.pin(pid, pinning.server_cpus)
        yield url, pid, work_dir


async def _with_servers(
    session: Session,
    work: ChatWorkload,
    kind: str,
    nodes: int,
    redis_url: str,
    valkey_pid: int | None,
    secret: str,
    pinning: servers.Pinning,
    work_dir: Path,
    progress: Progress,
) -> dict[str, Any]:
    started: list[servers.ServerProcess] = []
    try:
        for i in range(nodes):
            name = f"{kind}-{i + 1}"
            if kind == "python":
                proc = await servers.start_python_node(
                    name, redis_url, secret, pinning.server_cpus, work_dir / "logs", {}
                )
            else:
                proc = await servers.start_reference_node(
                    name, redis_url, secret, pinning.server_cpus, work_dir / "logs"
                )
            started.append(proc)
        urls = [s.url for s in started]
        if kind == "python":
            await create_room(urls[0], secret, work.room, required=True)
        pids = {s.name: s.pid for s in started}
        if valkey_pid is not None:
            pids["valkey"] = valkey_pid
        return await _one(session, work, kind, urls, pids, secret, pinning, progress, nodes)
    finally:
        for proc in started:
            servers.stop(proc)


async def _one(
    session: Session,
    work: ChatWorkload,
    kind: str,
    urls: list[str],
    pids: dict[str, int],
    secret: str,
    pinning: servers.Pinning,
    progress: Progress,
    nodes: int | None = None,
) -> dict[str, Any]:
    nodes = nodes or len(urls)
    label = f"{kind} {nodes}n {work.viewers}v"
    progress(f"run {label}: {work.viewers} viewers, {work.rate:g} msg/s for {work.duration_s:g} s")
    result = await run_chat(
        work, urls, secret, server_pids=pids,
        workers=session.workers, client_cpus=pinning.client_cpus, label=label, progress=progress,
    )  # fmt: skip
    result.update({"server": kind, "nodes": nodes, "label": label, "urls": urls})
    return result


async def create_room(url: str, secret: str, room: str, *, required: bool) -> None:
    """Create `room` through the REST API as its host (409: it exists already)."""
    token = TokenAuthority(secret).issue(user="loadtest-host", role="host", rooms=[room])
    timeout = aiohttp.ClientTimeout(total=10)
    async with (
        aiohttp.ClientSession(timeout=timeout) as http,
        http.post(
            url.rstrip("/") + "/api/rooms",
            json={"room_id": room, "title": "Load test"},
            headers={"Authorization": f"Bearer {token}"},
        ) as resp,
    ):
        if resp.status not in (201, 409) and required:
            raise RuntimeError(f"could not create room {room} on {url}: {resp.status}")


def ratios(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Python over Node for every (nodes, viewers) pair run against both."""
    by_key = {(r["server"], r["nodes"], r["workload"]["viewers"]): r for r in runs}
    out = []
    for (kind, nodes, viewers), py in by_key.items():
        ref = by_key.get(("node", nodes, viewers))
        if kind != "python" or ref is None:
            continue
        out.append({
            "nodes": nodes,
            "viewers": viewers,
            "p50_latency": _ratio(py["latency_ms"]["p50"], ref["latency_ms"]["p50"]),
            "p99_latency": _ratio(py["latency_ms"]["p99"], ref["latency_ms"]["p99"]),
            "deliveries_per_s": _ratio(py["deliveries"]["per_s"], ref["deliveries"]["per_s"]),
            "rss_per_connection": _ratio(
                py["servers"]["rss_per_connection_kb"], ref["servers"]["rss_per_connection_kb"]
            ),
            "nodes_cpu": _ratio(py["servers"]["nodes_cpu_pct"], ref["servers"]["nodes_cpu_pct"]),
        })  # fmt: skip
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 2)
