"""The reservation script called directly on Valkey, no HTTP: the ceiling the HTTP path is
measured against. `redis-benchmark` (EVALSHA with the script's keys, pipelined, pinned to the
generator's CPUs) when it is installed, else an equivalent pipelined Python driver."""

from __future__ import annotations

import asyncio
import csv
import io
import shutil
import subprocess
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis

from commerce import keys
from commerce.config import PURCHASE_STREAM
from commerce.scripts import LUA
from core.store import redis_client
from loadtest.report.histogram import Histogram

# Rate limits as the benchmark nodes run them: high enough never to refuse.
UNLIMITED = 1_000_000_000
RAND = 1_000_000_000


@dataclass(frozen=True, slots=True)
class DirectSpec:
    redis_url: str
    room: str
    sale_id: str
    calls: int = 200_000
    clients: int = 50
    pipeline: int = 16
    quantity: int = 1  # units per call
    timeout_s: float = 120.0
    cpus: tuple[int, ...] = ()
    tool: str = "auto"  # auto | redis-benchmark | python


def script_keys(sale_id: str, user: str, ip: str) -> list[str]:
    """The reservation script's KEYS, in the order `commerce.sales.Sales.reserve` passes them."""
    k = keys.sale
    return [
        k(sale_id, "meta"), k(sale_id, "users"), k(sale_id, "idem"), k(sale_id, "holds"),
        k(sale_id, "res"), PURCHASE_STREAM,
        k(sale_id, "rl:u:" + user), k(sale_id, "rl:ip:" + ip),
    ]  # fmt: skip


async def load_script(redis_url: str) -> str:
    async with redis_client(redis_url) as redis:
        sha = await redis.script_load((LUA / "reserve.lua").read_text())
    return sha.decode() if isinstance(sha, bytes) else str(sha)


async def run_direct(spec: DirectSpec) -> dict[str, Any]:
    """Call the script `spec.calls` times on `spec.sale_id`; calls/s and latency."""
    sha = await load_script(spec.redis_url)
    tool = spec.tool
    if tool == "auto":
        tool = "redis-benchmark" if shutil.which("redis-benchmark") else "python"
    if tool == "redis-benchmark":
        result = await asyncio.to_thread(_redis_benchmark, spec, sha)
    else:
        result = await _python_driver(spec, sha)
    result.update(
        {"tool": tool, "calls": spec.calls, "clients": spec.clients, "pipeline": spec.pipeline}
    )
    return result


def _redis_benchmark(spec: DirectSpec, sha: str) -> dict[str, Any]:
    url = urlsplit(spec.redis_url)
    r = "__rand_int__"
    # Every call: a new user, idempotency key and reservation id (12 random digits each).
    args = [
        "EVALSHA", sha, "8", *script_keys(spec.sale_id, "bench" + r, "bench"),
        spec.room, "bu" + r, "bk" + r, str(spec.quantity), f"{spec.sale_id}-{r}",
        str(UNLIMITED), str(UNLIMITED), "10000",
    ]  # fmt: skip
    taskset = shutil.which("taskset")
    pin = [taskset, "-c", ",".join(map(str, spec.cpus))] if taskset and spec.cpus else []
    cmd = [
        *pin, "redis-benchmark", "-h", url.hostname or "127.0.0.1", "-p", str(url.port or 6379),
        *(["-a", url.password, "--no-auth-warning"] if url.password else []),
        "-n", str(spec.calls), "-c", str(spec.clients), "-P", str(spec.pipeline),
        "-r", str(RAND), "--csv", *args,
    ]  # fmt: skip
    began = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=spec.timeout_s, check=True)
    wall = time.monotonic() - began
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    if not rows:
        raise RuntimeError(f"redis-benchmark printed no result: {out.stdout[-500:]}")
    row = rows[-1]
    return {
        "calls_per_s": round(float(row["rps"]), 1),
        "latency_ms": {
            "mean": float(row["avg_latency_ms"]),
            "p50": float(row["p50_latency_ms"]),
            "p95": float(row["p95_latency_ms"]),
            "p99": float(row["p99_latency_ms"]),
            "max": float(row["max_latency_ms"]),
        },
        "wall_s": round(wall, 3),
        "command": " ".join(cmd[len(pin) :]),
    }


async def _python_driver(spec: DirectSpec, sha: str) -> dict[str, Any]:
    hist = Histogram()
    next_call = 0

    async def client(redis: aioredis.Redis) -> None:
        nonlocal next_call
        for _ in range(spec.calls):  # bounded: each round takes at least one call
            if next_call >= spec.calls:
                return
            batch = range(next_call, min(spec.calls, next_call + spec.pipeline))
            next_call = batch.stop
            began = time.perf_counter_ns()
            async with redis.pipeline(transaction=False) as pipe:
                for i in batch:
                    user = f"bu{i}"
                    pipe.evalsha(
                        sha, 8, *script_keys(spec.sale_id, user, "bench"),
                        spec.room, user, f"bk{i}", spec.quantity, f"{spec.sale_id}-d{i}",
                        UNLIMITED, UNLIMITED, 10000,
                    )  # fmt: skip
                await pipe.execute()
            elapsed = (time.perf_counter_ns() - began) // 1000
            for _ in batch:
                hist.record(elapsed)

    async with redis_client(spec.redis_url) as redis:
        began = time.monotonic()
        async with asyncio.timeout(spec.timeout_s):
            await asyncio.gather(*(client(redis) for _ in range(spec.clients)))
        wall = time.monotonic() - began
    return {
        "calls_per_s": round(spec.calls / wall, 1),
        "latency_ms": hist.summary_ms(),
        "wall_s": round(wall, 3),
        "command": "pipelined EVALSHA from Python (redis-py)",
    }
