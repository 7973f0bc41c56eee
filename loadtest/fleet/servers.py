"""The system under test, started by a benchmark: Valkey and node processes pinned to CPUs.

Python nodes are `live serve` processes; the reference is `loadtest/reference/server.js` under
Node.js. Both get the same Redis, the same token secret and a free loopback port, and are pinned
(`taskset`) to CPUs apart from the load generator's so the two do not steal each other's time.
They are started and stopped by `devtools.spawn`, as `live cluster` starts its nodes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from core.store import embedded_valkey, redis_client
from devtools.spawn import NodeProcess, SpawnError, spawn, spawn_node
from loadtest.report import procfs

LOADTEST = Path(__file__).resolve().parents[1]
REFERENCE_JS = LOADTEST / "reference" / "server.js"
START_TIMEOUT_S = 60.0  # a `live serve` start (imports, media workers) on a busy machine


@dataclass
class Pinning:
    server_cpus: list[int]
    client_cpus: list[int]
    tool: str = field(default="taskset")

    def describe(self) -> str:
        if not self.server_cpus:
            return "no CPU pinning (one CPU only)"
        return (
            f"servers and Valkey pinned with {self.tool} to CPU {_cpus(self.server_cpus)}, "
            f"load generator to CPU {_cpus(self.client_cpus)}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "server_cpus": self.server_cpus,
            "client_cpus": self.client_cpus,
            "tool": self.tool,
            "note": self.describe(),
        }


def default_pinning(cpus: list[int]) -> Pinning:
    """Second half of the CPUs for the servers, first half for the generator."""
    if len(cpus) < 2:
        return Pinning([], [], tool="none")
    half = len(cpus) // 2
    return Pinning(server_cpus=cpus[half:], client_cpus=cpus[:half])


def pinning_for(
    server_cpus: list[int] | None = None, client_cpus: list[int] | None = None
) -> Pinning:
    """The default split of the CPUs this process may use, either side as given instead."""
    pinning = default_pinning(procfs.available_cpus())
    if server_cpus is not None:
        pinning.server_cpus = server_cpus
    if client_cpus is not None:
        pinning.client_cpus = client_cpus
    return pinning


def _cpus(cpus: list[int]) -> str:
    return ",".join(str(c) for c in cpus)


def pin(pid: int, cpus: list[int]) -> None:
    """Pin a process we did not start ourselves (the embedded Valkey)."""
    if cpus:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(pid, cpus)


async def valkey_pid(redis: aioredis.Redis) -> int | None:
    info = await redis.info("server")
    pid = info.get("process_id")
    return int(pid) if pid is not None else None


async def start_python_node(
    name: str,
    redis_url: str,
    secret: str,
    cpus: list[int],
    log_dir: Path,
    env: dict[str, str],
    *,
    role: str | None = None,
    region: str | None = None,
    origin: str | None = None,
) -> NodeProcess:
    """`live serve` on a free loopback port, logging at WARNING so logs do not skew figures;
    a node of both roles unless `role` (an `edge` needs its `origin`'s URL)."""
    node_env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "LIVE_JWT_SECRET": secret,
        "LIVE_LOG_LEVEL": "WARNING",
        "LIVE_DATA_DIR": str(log_dir / name),
        # The whole crowd comes from this machine's address.
        "LIVE_MAX_CONNECTIONS_PER_IP": "0",
        **env,
    }
    return await spawn_node(
        node_id=name, env=node_env, log=log_dir / f"{name}.log", cpus=cpus,
        start_within_s=START_TIMEOUT_S, cwd=LOADTEST.parent, role=role, region=region,
        origin=origin,
    )  # fmt: skip


async def start_reference_node(
    name: str, redis_url: str, secret: str, cpus: list[int], log_dir: Path
) -> NodeProcess:
    """The Node.js reference server (socket.io + @socket.io/redis-adapter) on a free port."""
    node = shutil.which("node")
    if node is None:
        raise SpawnError("node (Node.js) is not installed; --reference needs it")
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "LIVE_JWT_SECRET": secret,
        "HOST": "127.0.0.1",
        "PORT": "0",
        "NODE_ID": name,
    }
    return await spawn(
        name, [node, str(REFERENCE_JS)], env, log=log_dir / f"{name}.log", cpus=cpus,
        start_within_s=START_TIMEOUT_S, cwd=LOADTEST.parent,
    )  # fmt: skip


@contextlib.asynccontextmanager
async def store(
    work_dir: Path | None, redis_url: str | None, pinning: Pinning
) -> AsyncIterator[tuple[str, int | None, Path]]:
    """`redis_url`, else an embedded Valkey pinned to the server CPUs: (url, pid, work dir)."""
    with contextlib.ExitStack() as stack:
        if work_dir is None:
            work_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="loadtest-")))
        url = redis_url or stack.enter_context(embedded_valkey(work_dir / "store"))
        async with redis_client(url) as redis:
            pid = await valkey_pid(redis) if redis_url is None else None
        if pid is not None:
            pin(pid, pinning.server_cpus)
        yield url, pid, work_dir
