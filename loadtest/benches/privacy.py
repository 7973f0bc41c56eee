"""What an erasure costs the store: a purchase stream of N events (one user's among them), read
whole to find the user's (as export and erase do), then rewritten in place with the user's
entries pseudonymised (`core.privacy.StreamRewriter`: one script that rebuilds the stream, its
consumer group and pending entries). The script is atomic, so Valkey answers nothing else while
it runs: a client pinging throughout measures that stall. Valkey (a fresh embedded one per size,
`appendfsync always`) pinned to the server CPUs, this process to the generator's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from core.privacy import StreamRewriter, pseudonymise, stream_entries
from core.store import redis_client
from core.valkey import EmbeddedValkey
from loadtest.fleet.servers import Pinning, pin, valkey_pid

STREAM = "live:purchases"
USER = "erased-user"
EVERY = 1000  # one event in this many is the user's
PENDING = 100  # entries the consumer group holds unacknowledged


@dataclass(frozen=True, slots=True)
class PrivacySpec:
    entries: tuple[int, ...] = (10_000, 100_000)
    work_dir: Path | None = None


@contextlib.contextmanager
def _pinned_self(cpus: list[int]) -> Iterator[None]:
    before = os.sched_getaffinity(0)
    if cpus:
        os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def _event(i: int) -> dict[str, str]:
    user = USER if i % EVERY == 0 else f"buyer-{i}"
    data = {
        "reservation_id": f"sale1-{i:012x}", "sale_id": "sale1", "room_id": "shop",
        "product_id": "mug", "user_id": user, "quantity": 1, "price_minor": 990,
        "currency": "EUR", "expires_at": 1_800_000_000_000 + i,
        "event_id": f"sale1-{i:012x}.reserved", "ts": 1_800_000_000_000 + i,
    }  # fmt: skip
    return {"type": "purchase.reserved", "data": json.dumps(data, separators=(",", ":"))}


async def _fill(redis: aioredis.Redis, n: int) -> None:
    for start in range(0, n, 1000):
        async with redis.pipeline(transaction=False) as pipe:
            for i in range(start, min(n, start + 1000)):
                pipe.xadd(STREAM, _event(i))
            await pipe.execute()
    await redis.xgroup_create(STREAM, "orders", "0")
    await redis.xreadgroup("orders", "bench", {STREAM: ">"}, count=PENDING)


async def _stalls(url: str, stop: asyncio.Event) -> list[float]:
    """Round trips (ms) of one client pinging until `stop`."""
    times: list[float] = []
    async with redis_client(url) as redis:
        while not stop.is_set():
            started = time.perf_counter()
            await redis.ping()
            times.append((time.perf_counter() - started) * 1000)
    return times


def _cpu_s(pid: int | None) -> float:
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _one(n: int, pinning: Pinning, base: Path) -> dict[str, Any]:
    server = EmbeddedValkey(base / str(n), appendfsync="always")
    server.start()
    try:
        async with redis_client(server.url) as redis:
            pid = await valkey_pid(redis)
            if pid is not None:
                pin(pid, pinning.server_cpus)
            await _fill(redis, n)
            with _pinned_self(pinning.client_cpus):
                started = time.perf_counter()
                hits = {}
                async for entry_id, fields in stream_entries(redis, STREAM, USER):
                    data = json.loads(fields[b"data"])
                    if data.get("user_id") == USER:
                        hits[entry_id] = data
                read_s = time.perf_counter() - started
                changes = {
                    i: ["type", "purchase.reserved", "data", json.dumps(pseudonymise(d, USER, "x"))]
                    for i, d in hits.items()
                }
                stop = asyncio.Event()
                pinger = asyncio.create_task(_stalls(server.url, stop))
                await asyncio.sleep(0.2)
                await redis.config_set("slowlog-log-slower-than", 500)  # us: no pings
                await redis.config_set("slowlog-max-len", 10_000)
                await redis.slowlog_reset()
                cpu = _cpu_s(pid)
                started = time.perf_counter()
                rewritten = await StreamRewriter(redis).rewrite(STREAM, changes)
                rewrite_s = time.perf_counter() - started
                valkey_cpu = _cpu_s(pid) - cpu
                await asyncio.sleep(0.2)
                stop.set()
                pings = await pinger
                # Valkey's own time per script call (the stall others wait out, without the
                # scheduling delays a shared CPU adds to the pings).
                log = await redis.slowlog_get(10_000)
                scripts = [e["duration"] for e in log if e["command"].startswith(b"EVALSHA")]
            (group,) = await redis.xinfo_groups(STREAM)
            length = await redis.xlen(STREAM)
            if rewritten != len(hits) or group["pending"] != PENDING or length != n:
                raise RuntimeError(f"rewrite lost something: {rewritten}, {group}, {length}")
    finally:
        server.stop()
    return {
        "entries": n,
        "user_entries": len(hits),
        "read_s": round(read_s, 3),
        "read_entries_per_s": round(n / read_s),
        "rewrite_s": round(rewrite_s, 3),
        "valkey_cpu_s": round(valkey_cpu, 2),
        "longest_ping_ms": round(max(pings), 1),
        "script_calls_over_0_5_ms": len(scripts),
        "longest_script_ms": round(max(scripts, default=0) / 1000, 1),
        "pings": len(pings),
    }


async def run_privacy(spec: PrivacySpec, pinning: Pinning) -> dict[str, Any]:
    with contextlib.ExitStack() as stack:
        base = spec.work_dir
        if base is None:
            base = Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="privacy-", dir="."))
            )
        results = [await _one(n, pinning, Path(base)) for n in spec.entries]
    return {"benchmark": "privacy", "pinning": pinning.to_json(), "results": results}


def table(doc: dict[str, Any]) -> str:
    lines = [
        "| stream entries | user's | read (find) s | entries/s | rewrite s | Valkey CPU s "
        "| script calls > 0.5 ms | longest script ms (the stall) | longest ping ms |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in doc["results"]:
        lines.append(
            f"| {r['entries']:,} | {r['user_entries']} | {r['read_s']} | "
            f"{r['read_entries_per_s']:,} | {r['rewrite_s']} | {r['valkey_cpu_s']} | "
            f"{r['script_calls_over_0_5_ms']} | {r['longest_script_ms']} | "
            f"{r['longest_ping_ms']} |"
        )
    return "\n".join(lines)
