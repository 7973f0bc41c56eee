"""The chat benchmark coordinator: start workers, synchronise them, sample servers, merge."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from loadtest import procstat, worker
from loadtest.fleet import Fleet
from loadtest.histogram import Histogram, merge_timelines
from loadtest.plan import ChatWorkload, WorkerPlan

START_DELAY_S = 1.0
TARGET_P99_MS = 500.0

Progress = Callable[[str], None]


async def run_chat(
    workload: ChatWorkload,
    urls: list[str],
    secret: str,
    *,
    server_pids: dict[str, int],
    workers: int = 1,
    client_cpus: list[int] | None = None,
    label: str = "chat",
    progress: Progress = print,
) -> dict[str, Any]:
    """Run one chat workload against `urls` and return its merged measurements."""
    workload.validate()
    tag = f"lt{time.time_ns() % 10**9:x}"
    before = _sample(server_pids)
    plans = [
        WorkerPlan(index, workers, tuple(urls), secret, workload, tuple(client_cpus or ()), tag)
        for index in range(workers)
    ]
    fleet = Fleet.spawn(worker.main, plans)
    try:
        return await _drive(fleet, workload, server_pids, before, label, progress)
    finally:
        await fleet.reap()


async def _drive(
    fleet: Fleet,
    work: ChatWorkload,
    server_pids: dict[str, int],
    before: dict[str, procstat.ProcSample | None],
    label: str,
    progress: Progress,
) -> dict[str, Any]:
    workers = len(fleet.procs)
    connect_budget = work.viewers / work.connect_rate + work.connect_timeout_s * 2 + 30
    all_ready = await _until(
        fleet, lambda: len(fleet.ready) == workers, connect_budget, label, progress
    )
    if not all_ready:
        raise RuntimeError(f"workers did not finish connecting within {connect_budget:.0f} s")
    joined_sample = _sample(server_pids)
    t0 = time.time() + START_DELAY_S + work.warmup_s
    fleet.broadcast({"kind": "go", "t0": t0})
    worker_pids = fleet.pids
    await _until(fleet, lambda: False, max(0.0, t0 - time.time()), label, progress)
    start = _sample({**server_pids, **worker_pids})
    await _until(fleet, lambda: False, work.duration_s, label, progress)
    end = _sample({**server_pids, **worker_pids})
    wall = time.time() - t0
    budget = work.drain_s + 30
    if not await _until(fleet, lambda: len(fleet.done) == workers, budget, label, progress):
        raise RuntimeError(f"workers did not report within {budget:.0f} s after sending")
    final = _sample(server_pids)
    result = _merge(work, list(fleet.done.values()), t0)
    result["servers"] = _server_figures(
        server_pids, before, joined_sample, start, end, final, wall, result["connections"]["held"]
    )
    result["generator"]["cpu_pct"] = round(
        sum(procstat.cpu_percent(start.get(n), end.get(n), wall) for n in worker_pids), 1
    )
    result["generator"]["workers"] = workers
    return result


async def _until(
    fleet: Fleet, done: Callable[[], bool], seconds: float, label: str, progress: Progress
) -> bool:
    """Pump worker messages until `done()` or `seconds` pass; print progress every 2 s."""

    def tick() -> None:
        progress(
            f"  [{label}] connected {fleet.total('connected')} joined {fleet.total('joined')}"
            f" sent {fleet.total('sent')} deliveries {fleet.total('received')}"
            f" errors {fleet.total('errors')}"
        )

    return await fleet.until(done, seconds, tick)


def _sample(pids: dict[str, int]) -> dict[str, procstat.ProcSample | None]:
    return {name: procstat.sample(pid) for name, pid in pids.items()}


def _merge(work: ChatWorkload, parts: list[dict[str, Any]], t0: float) -> dict[str, Any]:
    hists: dict[str, Histogram] = {}
    for key in ("latency", "connect", "join", "ack", "lag", "send_lag"):
        hists[key] = Histogram()
        for part in parts:
            hists[key].merge(Histogram.from_wire(part[key]))
    seq_counts = [0] * work.messages
    acks: dict[int, str] = {}
    errors: Counter[str] = Counter()
    per_viewer: list[int] = []
    for part in parts:
        for seq, n in enumerate(part["seq_counts"]):
            seq_counts[seq] += n
        acks.update(part["acks"])
        errors.update(part["errors"])
        per_viewer.extend(part["per_viewer"])
    joined = sum(p["joined"] for p in parts)
    ok = [seq for seq, status in acks.items() if status == "ok"]
    expected = len(ok) * joined
    delivered = sum(seq_counts[seq] for seq in ok)
    received = sum(p["received"] for p in parts)
    last_us = max((p["last_delivery_us"] for p in parts), default=0)
    span_s = max(work.duration_s, last_us / 1e6 - t0) if last_us else work.duration_s
    latency = hists["latency"].summary_ms()
    missing = expected - delivered
    return {
        "workload": {
            "viewers": work.viewers,
            "rate": work.rate,
            "duration_s": work.duration_s,
            "senders": work.senders,
            "sender_role": work.sender_role,
            "room": work.room,
            "messages": work.messages,
            "warmup_s": work.warmup_s,
            "drain_s": work.drain_s,
        },
        "connections": {
            "attempted": work.viewers,
            "connected": sum(p["connected"] for p in parts),
            "joined": joined,
            "held": sum(p["held"] for p in parts),
            "connect_ms": hists["connect"].summary_ms(),
            "join_ms": hists["join"].summary_ms(),
        },
        "messages": {
            "scheduled": work.messages,
            "sent": sum(p["sent"] for p in parts),
            "acked_ok": len(ok),
            "outcomes": dict(Counter(acks.values())),
            "ack_ms": hists["ack"].summary_ms(),
        },
        "deliveries": {
            "expected": expected,
            "delivered": delivered,
            "missing": missing,
            "received_total": received,
            "duplicates": sum(p["duplicates"] for p in parts),
            "viewers_missing_some": sum(1 for c in per_viewer if c < len(ok)),
            "per_s": round(received / span_s, 1),
            "offered_per_s": round(expected / work.duration_s, 1),
            "last_delivery_after_s": round(last_us / 1e6 - t0, 3) if last_us else None,
        },
        "latency_ms": latency,
        "timeline": merge_timelines([p["timeline"] for p in parts]),
        "likes_sent": sum(p["likes"] for p in parts),
        "errors": dict(errors),
        "generator": {
            "loop_lag_ms": hists["lag"].summary_ms(),
            "send_lag_ms": hists["send_lag"].summary_ms(),
        },
        "target_met": joined == work.viewers and missing == 0 and latency["p99"] < TARGET_P99_MS,
    }


def _server_figures(
    pids: dict[str, int],
    before: dict[str, procstat.ProcSample | None],
    joined: dict[str, procstat.ProcSample | None],
    start: dict[str, procstat.ProcSample | None],
    end: dict[str, procstat.ProcSample | None],
    final: dict[str, procstat.ProcSample | None],
    wall: float,
    held: int,
) -> dict[str, Any]:
    processes: dict[str, Any] = {}
    nodes_rss_growth = 0
    node_cpu = 0.0
    for name in pids:
        b, j, f = before.get(name), joined.get(name), final.get(name)
        cpu = procstat.cpu_percent(start.get(name), end.get(name), wall)
        processes[name] = {
            "pid": pids[name],
            "rss_before_mb": round(b.rss_kb / 1024, 1) if b else None,
            "rss_joined_mb": round(j.rss_kb / 1024, 1) if j else None,
            "peak_rss_mb": round(f.peak_rss_kb / 1024, 1) if f else None,
            "cpu_pct": cpu,
            "threads": f.threads if f else None,
        }
        if name != "valkey":
            nodes_rss_growth += (j.rss_kb if j else 0) - (b.rss_kb if b else 0)
            node_cpu += cpu
    return {
        "processes": processes,
        "rss_per_connection_kb": round(nodes_rss_growth / held, 1) if held and pids else None,
        "nodes_cpu_pct": round(node_cpu, 1) if pids else None,
        "valkey_cpu_pct": processes.get("valkey", {}).get("cpu_pct"),
    }
