"""The system under test, started by the benchmark: Valkey and node processes pinned to CPUs.

Python nodes are `live serve` processes; the reference is `loadtest/reference/server.js` under
Node.js. Both get the same Redis, the same token secret and a free loopback port, and are pinned
(`taskset`) to CPUs apart from the load generator's so the two do not steal each other's time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import redis.asyncio as aioredis

from core.store import embedded_valkey, redis_client

REFERENCE_JS = Path(__file__).parents[1] / "reference" / "server.js"
_LISTENING = re.compile(r"listening on (http://\S+)")
START_TIMEOUT_S = 60.0  # a `live serve` start (imports, media workers) on a busy machine


class ServerStartError(RuntimeError):
    pass


@dataclass
class ServerProcess:
    """One node of the system under test."""

    name: str
    kind: str  # "python" | "node"
    url: str
    pid: int
    popen: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None


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


def default_pinning(cpus: list[int]) -> Pinning:
    """Second half of the CPUs for the servers, first half for the generator."""
    if len(cpus) < 2:
        return Pinning([], [], tool="none")
    half = len(cpus) // 2
    return Pinning(server_cpus=cpus[half:], client_cpus=cpus[:half])


def _cpus(cpus: list[int]) -> str:
    return ",".join(str(c) for c in cpus)


def _pin_prefix(cpus: list[int]) -> list[str]:
    taskset = shutil.which("taskset")
    if not cpus or taskset is None:
        return []
    return [taskset, "-c", _cpus(cpus)]


def pin(pid: int, cpus: list[int]) -> None:
    """Pin a process we did not start ourselves (the embedded Valkey)."""
    if cpus:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(pid, cpus)


async def valkey_pid(redis: aioredis.Redis) -> int | None:
    info = await redis.info("server")
    pid = info.get("process_id")
    return int(pid) if pid is not None else None


def _live_command() -> list[str]:
    exe = Path(sys.executable).parent / "live"
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-m", "live.cli.main"]


async def start_python_node(
    name: str, redis_url: str, secret: str, cpus: list[int], log_dir: Path, env: dict[str, str]
) -> ServerProcess:
    """`live serve` on a free loopback port, logging at WARNING so logs do not skew figures."""
    cmd = [*_pin_prefix(cpus), *_live_command(), "serve", "--host", "127.0.0.1", "--port", "0"]
    node_env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "LIVE_JWT_SECRET": secret,
        "LIVE_NODE_ID": name,
        "LIVE_LOG_LEVEL": "WARNING",
        "LIVE_DATA_DIR": str(log_dir / name),
        **env,
    }
    return await _start(name, "python", cmd, node_env, cpus, log_dir)


async def start_reference_node(
    name: str, redis_url: str, secret: str, cpus: list[int], log_dir: Path
) -> ServerProcess:
    """The Node.js reference server (socket.io + @socket.io/redis-adapter) on a free port."""
    node = shutil.which("node")
    if node is None:
        raise ServerStartError("node (Node.js) is not installed; --reference needs it")
    cmd = [*_pin_prefix(cpus), node, str(REFERENCE_JS)]
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "LIVE_JWT_SECRET": secret,
        "HOST": "127.0.0.1",
        "PORT": "0",
        "NODE_ID": name,
    }
    return await _start(name, "node", cmd, env, cpus, log_dir)


async def _start(
    name: str, kind: str, cmd: list[str], env: dict[str, str], cpus: list[int], log_dir: Path
) -> ServerProcess:
    log_path = log_dir / f"{name}.log"
    popen = _spawn(cmd, env, log_path)
    if not _pin_prefix(cpus):
        pin(popen.pid, cpus)
    for _ in range(int(START_TIMEOUT_S / 0.05)):
        text = _read(log_path)
        match = _LISTENING.search(text)
        if match:
            return ServerProcess(name, kind, match.group(1), popen.pid, popen, log_path)
        if popen.poll() is not None:
            raise ServerStartError(f"{name} exited with {popen.returncode}:\n{text[-2000:]}")
        await asyncio.sleep(0.05)
    stop(ServerProcess(name, kind, "", popen.pid, popen, log_path))
    raise ServerStartError(f"{name} did not report 'listening on' within {START_TIMEOUT_S:.0f} s")


def _spawn(cmd: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            cwd=Path(__file__).resolve().parents[2], start_new_session=True,
        )  # fmt: skip


def _read(path: Path) -> str:
    return path.read_text(errors="replace")


def stop(server: ServerProcess, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after `timeout`; only the process we started."""
    popen = server.popen
    if popen is None or popen.poll() is not None:
        return
    popen.send_signal(signal.SIGTERM)
    try:
        popen.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        popen.kill()
        popen.wait(timeout=5)


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
