"""The embedded Valkey's AOF fsync policy, measured: reservation script calls/s (`direct.py`:
`redis-benchmark` when installed, else its Python driver) with `appendfsync always` and
`everysec`, on a fresh server each, Valkey and the driver pinned to different CPUs; and what a
power loss can cost with each.

Two shapes per policy: the node's (many clients, pipelined batches, as `ScriptBatcher` sends them)
and one caller waiting for each answer (the latency floor: one fsync per call with `always`).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from commerce import keys
from core.store import redis_client
from core.valkey import EmbeddedValkey, Fsync
from loadtest.benches.direct import DirectSpec, run_direct
from loadtest.fleet.servers import Pinning, pin, valkey_pid

POLICIES: tuple[Fsync, ...] = ("everysec", "always")
ROOM = "bench"
SALE = "fsyncbench"


@dataclass(frozen=True, slots=True)
class FsyncSpec:
    calls: int = 20_000  # per policy and shape
    clients: int = 50
    pipeline: int = 16
    timeout_s: float = 60.0
    work_dir: Path | None = None  # on the disk to judge (not tmpfs: fsync is free there)


@contextlib.contextmanager
def _pinned_self(cpus: list[int]) -> Iterator[None]:
    """Run the in-process driver on the generator's CPUs, then restore this process's."""
    before = os.sched_getaffinity(0)
    if cpus:
        os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


async def _sale(url: str) -> None:
    """A sale that never runs out or ends, written straight into its meta hash."""
    async with redis_client(url) as redis:
        await redis.hset(
            keys.sale(SALE, "meta"),
            mapping={
                "sale_id": SALE, "room_id": ROOM, "product_id": "mug", "status": "active",
                "quantity": 10**12, "stock": 10**12, "reserved": 0, "sold": 0,
                "price_minor": 990, "currency": "EUR", "per_user_limit": 10**6,
                "hold_ms": 60_000, "starts_at": 0, "ends_at": 2**50, "created_at": 0,
            },
        )  # fmt: skip


async def _one(policy: Fsync, spec: FsyncSpec, pinning: Pinning, base: Path) -> dict[str, Any]:
    server = EmbeddedValkey(base / policy, appendfsync=policy)
    server.start()
    try:
        async with redis_client(server.url) as redis:
            pid = await valkey_pid(redis)
            applied = _s((await redis.config_get("appendfsync"))["appendfsync"])
        if pid is not None:
            pin(pid, pinning.server_cpus)
        await _sale(server.url)
        shapes: dict[str, Any] = {}
        for shape, clients, pipeline in (
            ("batched", spec.clients, spec.pipeline),
            ("one_by_one", 1, 1),
        ):
            # One caller waits a whole fsync per call: a tenth of the calls bounds the time.
            calls = spec.calls if shape == "batched" else max(1, spec.calls // 10)
            direct = DirectSpec(
                redis_url=server.url, room=ROOM, sale_id=SALE, calls=calls, clients=clients,
                pipeline=pipeline, timeout_s=spec.timeout_s, cpus=tuple(pinning.client_cpus),
            )  # fmt: skip
            cpu = _cpu_s(pid)
            with _pinned_self(pinning.client_cpus):
                shapes[shape] = await run_direct(direct)
            # Valkey's own CPU per call: `direct.py`'s driver in Python may be the limit.
            shapes[shape]["valkey_cpu_us_per_call"] = round((_cpu_s(pid) - cpu) / calls * 1e6, 1)
        batched = shapes["batched"]["calls_per_s"]
        return {
            "policy": policy,
            "applied": applied,
            **shapes,
            # Acknowledged holds a power loss can take: none with `always` (the reply follows
            # the fsync); with `everysec` up to one second of writes, two when the disk lags.
            "power_loss_holds_at_risk": 0 if policy == "always" else round(batched),
        }
    finally:
        server.stop()


def _cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of a process, from /proc (0 when unknown)."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def run_fsync(spec: FsyncSpec, pinning: Pinning) -> dict[str, Any]:
    with contextlib.ExitStack() as stack:
        base = spec.work_dir
        if base is None:
            # Under the working directory, not /tmp: that may be a tmpfs.
            base = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fsync-", dir=".")))
        results = [await _one(policy, spec, pinning, Path(base)) for policy in POLICIES]
    return {"benchmark": "fsync", "pinning": pinning.to_json(), "results": results}


def table(doc: dict[str, Any]) -> str:
    lines = [
        "| appendfsync | batched calls/s | p50 / p99 ms | one-by-one calls/s | p50 / p99 ms "
        "| Valkey CPU us/call (batched) | holds at risk on power loss |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in doc["results"]:
        b, o = r["batched"], r["one_by_one"]
        lines.append(
            f"| {r['applied']} | {b['calls_per_s']:,.0f} | {b['latency_ms']['p50']} / "
            f"{b['latency_ms']['p99']} | {o['calls_per_s']:,.0f} | {o['latency_ms']['p50']} / "
            f"{o['latency_ms']['p99']} | {b['valkey_cpu_us_per_call']} "
            f"| {r['power_loss_holds_at_risk']:,} |"
        )
    return "\n".join(lines)
