"""`live loadtest chat`: a crowd in one chat room, measured end to end, optionally beside Node.

The session (`run_session`): unless targets are given, an embedded Valkey and 1 or 2 `live serve`
nodes pinned to CPUs apart from the load generator; for every (nodes, viewers) pair the Python
nodes run the workload, then, with `--reference`, the Node.js reference on the same Valkey with
the same workload, so the two sit side by side. Each run gets fresh server processes and a fresh
room, so no run inherits another's memory. `table` prints the runs for people.

The driver (`run_chat`, also the scenario's lurkers, chatters and likers): worker processes
(`loadtest.fleet.chat_worker`) connect the crowd, start sending together, report; the servers
are sampled meanwhile. Merged: deliveries, losses, latency percentiles, RSS per connection, CPU.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from core.limits import raise_open_files_limit
from devtools.spawn import NodeProcess, stop_all
from loadtest.clients.rest import create_room
from loadtest.fleet import chat_worker, servers
from loadtest.fleet.control import Fleet
from loadtest.plan.workloads import ChatWorkload, WorkerPlan
from loadtest.report import procfs
from loadtest.report.display import Monitor, Progress
from loadtest.report.histogram import Histogram, merge_timelines

START_DELAY_S = 1.0
TARGET_P99_MS = 500.0


# -- session ------------------------------------------------------------------------------------


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
    pinning = servers.pinning_for(session.server_cpus, session.client_cpus)
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
        sut = servers.store(session.work_dir, session.redis_url, pinning)
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
        "pinning": pinning.to_json(),
        "runs": runs,
        "ratios": ratios(runs),
    }


def _room() -> str:
    return "bench-" + secrets.token_hex(4)


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
    started: list[NodeProcess] = []
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
        pids = {s.node_id: s.pid for s in started}
        if valkey_pid is not None:
            pids["valkey"] = valkey_pid
        return await _one(session, work, kind, urls, pids, secret, pinning, progress, nodes)
    finally:
        await stop_all(started)


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


_COLUMNS: list[tuple[str, int, Callable[[dict[str, Any]], Any]]] = [
    ("run", 18, lambda r: r["label"]),
    ("held", 6, lambda r: r["connections"]["held"]),
    ("deliv/s", 9, lambda r: f"{r['deliveries']['per_s']:.0f}"),
    ("p50 ms", 8, lambda r: r["latency_ms"]["p50"]),
    ("p95 ms", 8, lambda r: r["latency_ms"]["p95"]),
    ("p99 ms", 8, lambda r: r["latency_ms"]["p99"]),
    ("max ms", 8, lambda r: r["latency_ms"]["max"]),
    ("missing", 8, lambda r: r["deliveries"]["missing"]),
    ("acked", 6, lambda r: f"{r['messages']['acked_ok']}/{r['messages']['scheduled']}"),
    ("RSS/conn KB", 11, lambda r: r["servers"]["rss_per_connection_kb"]),
    ("node CPU%", 9, lambda r: r["servers"]["nodes_cpu_pct"]),
    ("valkey%", 7, lambda r: r["servers"]["valkey_cpu_pct"]),
    ("gen CPU%", 8, lambda r: r["generator"]["cpu_pct"]),
    ("conn p50", 8, lambda r: r["connections"]["connect_ms"]["p50"]),
    ("join p50", 8, lambda r: r["connections"]["join_ms"]["p50"]),
    ("target", 6, lambda r: "met" if r["target_met"] else "MISSED"),
]


def table(doc: dict[str, Any]) -> str:
    """Runs as rows, the figures the issue asks for as columns, then Python/Node ratios."""
    lines = [doc["pinning"]["note"], ""]
    lines.append("  ".join(f"{name:>{width}}" for name, width, _ in _COLUMNS))
    for run in doc["runs"]:
        cells = []
        for _, width, get in _COLUMNS:
            value = get(run)
            cells.append(f"{'-' if value is None else value!s:>{width}}")
        lines.append("  ".join(cells))
    for run in doc["runs"]:
        if run["errors"]:
            errors = ", ".join(f"{k}={v}" for k, v in sorted(run["errors"].items()))
            lines.append(f"  {run['label']}: errors {errors}")
        outcomes = {k: v for k, v in run["messages"]["outcomes"].items() if k != "ok"}
        if outcomes:
            lines.append(f"  {run['label']}: send outcomes {outcomes}")
    if doc["ratios"]:
        lines.append("")
        lines.append("Python / Node reference (same workload; >1 means Python is higher):")
        for r in doc["ratios"]:
            lines.append(
                f"  {r['nodes']} node(s), {r['viewers']} viewers: p50 x{r['p50_latency']}, "
                f"p99 x{r['p99_latency']}, deliveries/s x{r['deliveries_per_s']}, "
                f"RSS/conn x{r['rss_per_connection']}, node CPU x{r['nodes_cpu']}"
            )
    lines.append("")
    lines.append(
        "deliv/s counts every receipt of every message by every viewer; missing = acked messages "
        "a joined viewer never got before the drain ended; CPU% is per core, over the send window."
    )
    return "\n".join(lines)


# -- driver -------------------------------------------------------------------------------------


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
    monitor: Monitor | None = None,
    regions: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Run one chat workload against `urls` and return its merged measurements.

    `regions`, parallel to `urls`, names the region of each (viewer `i` goes to `urls[i % n]`).

    With a `monitor`, progress is a live status line and a stop (Ctrl-C, an abort rule) ends the
    run early with the workers' partial results (`partial: true`).
    """
    workload.validate()
    needed = workers_for_descriptors(workload.viewers)
    if needed > workers:
        progress(
            f"[{label}] {needed} workers instead of {workers}: {workload.viewers} connections "
            "do not fit fewer processes' open-files limits (RLIMIT_NOFILE)"
        )
        workers = needed
    tag = f"lt{time.time_ns() % 10**9:x}"
    before = _sample(server_pids)
    plans = [
        WorkerPlan(
            index, workers, tuple(urls), secret, workload, tuple(client_cpus or ()), tag, regions
        )
        for index in range(workers)
    ]
    fleet = Fleet.spawn(chat_worker.main, plans)
    try:
        return await _drive(fleet, workload, server_pids, before, label, progress, monitor)
    finally:
        await fleet.reap()


async def _drive(
    fleet: Fleet,
    work: ChatWorkload,
    server_pids: dict[str, int],
    before: dict[str, procfs.ProcSample | None],
    label: str,
    progress: Progress,
    monitor: Monitor | None,
) -> dict[str, Any]:
    workers = len(fleet.procs)
    stop = monitor.stop if monitor is not None else None
    tick = _ticker(fleet, label, progress, monitor)
    every = 0.5 if monitor is not None else 2.0

    async def until(done: Callable[[], bool], seconds: float) -> bool:
        return await fleet.until(done, seconds, tick, every, stop)

    all_ready, why = await _crowd_joined(fleet, work, until, stop)
    stopped = stop is not None and stop.is_set()
    if not all_ready and not stopped:
        reason = f"[{label}] the crowd did not finish joining: {why}"
        if monitor is None:
            raise RuntimeError(reason)
        monitor.request_stop(reason)  # a partial report says how far the joins got
        stopped = True
    joined_sample = _sample(server_pids)
    t0 = time.time() + START_DELAY_S + work.warmup_s
    worker_pids = fleet.pids
    # CPU shares are over the wall time between the two samples they compare (a stopped run's
    # window is the joins' end to its stop, not the send window it never reached).
    start = end = _sample({**server_pids, **worker_pids})
    start_at = end_at = time.monotonic()
    if not stopped:
        fleet.broadcast({"kind": "go", "t0": t0})
        await until(lambda: False, max(0.0, t0 - time.time()))
        start, start_at = _sample({**server_pids, **worker_pids}), time.monotonic()
        await until(lambda: False, work.duration_s)
        end, end_at = _sample({**server_pids, **worker_pids}), time.monotonic()
    budget = work.drain_s + 30
    reported = await until(lambda: len(fleet.done) == workers, budget)
    if not reported and (stop is None or not stop.is_set()):
        raise RuntimeError(f"workers did not report within {budget:.0f} s after sending")
    if len(fleet.done) < workers:
        # Stopped: ask for what the workers have so far, and wait a little for it.
        fleet.broadcast({"kind": "stop"})
        await fleet.until(lambda: len(fleet.done) + len(fleet.dead) >= workers, 10.0)
        if end is start:
            end, end_at = _sample({**server_pids, **worker_pids}), time.monotonic()
    wall = max(1e-3, end_at - start_at)
    final = _sample(server_pids)
    result = _merge(work, list(fleet.done.values()), t0)
    result["partial"] = len(fleet.done) < workers or any(
        p.get("partial") for p in fleet.done.values()
    )
    result["servers"] = _server_figures(
        server_pids, before, joined_sample, start, end, final, wall, result["connections"]["held"]
    )
    result["generator"]["cpu_pct"] = round(
        sum(procfs.cpu_percent(start.get(n), end.get(n), wall) for n in worker_pids), 1
    )
    result["generator"]["workers"] = workers
    return result


async def _crowd_joined(
    fleet: Fleet,
    work: ChatWorkload,
    until: Callable[[Callable[[], bool], float], Awaitable[bool]],
    stop: asyncio.Event | None,
) -> tuple[bool, str]:
    """Wait while the crowd joins: servers slower than `connect_rate` get the time they need as
    long as joins keep settling (joined or failed); a stall, or the hard ceiling, ends it."""

    def ready() -> bool:
        return len(fleet.ready) == len(fleet.procs)

    window = work.connect_timeout_s * 2  # every attempt settles within one connect timeout
    ceiling = work.viewers / work.connect_rate * 5 + window + 60
    deadline = time.monotonic() + ceiling
    settled = -1
    while True:
        now_settled = fleet.total("joined") + fleet.total("errors")
        if now_settled == settled and now_settled < work.viewers:
            return False, f"no join settled for {window:.0f} s ({now_settled} of {work.viewers})"
        settled = now_settled
        left = deadline - time.monotonic()
        if left <= 0:
            return False, f"{settled} of {work.viewers} settled within {ceiling:.0f} s"
        if await until(ready, min(left, window)):
            return True, ""
        if stop is not None and stop.is_set():
            return False, "stopped"


DESCRIPTOR_RESERVE = 256  # a worker's own files, pipes and the odd extra socket


def workers_for_descriptors(viewers: int) -> int:
    """Worker processes needed so that none holds more sockets than it may open."""
    sockets_per_worker = max(1, raise_open_files_limit() - DESCRIPTOR_RESERVE)
    return -(-viewers // sockets_per_worker)


def _ticker(
    fleet: Fleet, label: str, progress: Progress, monitor: Monitor | None
) -> Callable[[], None]:
    """Progress: a status line with rates and the last second's percentiles, live metrics."""
    last = {"t": time.monotonic(), "sent": 0, "received": 0}

    def tick() -> None:
        now = time.monotonic()
        sent, received = fleet.total("sent"), fleet.total("received")
        span = max(1e-3, now - last["t"])
        recent, likes = Histogram(), Histogram()
        for p in fleet.progress.values():
            if "recent" in p:
                recent.merge(Histogram.from_wire(p["recent"]))
                likes.merge(Histogram.from_wire(p["recent_likes"]))
        q = recent.summary_ms()
        line = (
            f"arrived {fleet.total('arrived')} joined {fleet.total('joined')}"
            f" sent {sent} ({(sent - last['sent']) / span:.0f}/s)"
            f" deliveries {received} ({(received - last['received']) / span:.0f}/s)"
            f" p50 {q['p50']:.1f} ms p99 {q['p99']:.1f} ms errors {fleet.total('errors')}"
        )
        if monitor is None:
            progress(f"  [{label}] {line}")
            return
        if now - last["t"] >= 1.0:
            last.update(t=now, sent=sent, received=received)
        monitor.status(label, line)
        live = {"errors.count": float(fleet.total("errors"))}
        if recent.count:
            live.update({f"chat.delivery.{k}": float(q[k]) for k in ("p50", "p95", "p99")})
        if likes.count:
            live.update({f"likes.delay.{k}": float(v) for k, v in likes.summary_ms().items()
                         if k in ("p50", "p95", "p99")})  # fmt: skip
        monitor.live(live)

    return tick


def _sample(pids: dict[str, int]) -> dict[str, procfs.ProcSample | None]:
    return {name: procfs.sample(pid) for name, pid in pids.items()}


def _merge(work: ChatWorkload, parts: list[dict[str, Any]], t0: float) -> dict[str, Any]:
    hists: dict[str, Histogram] = {}
    for key in ("latency", "connect", "join", "ack", "lag", "send_lag", "like_delay"):
        hists[key] = Histogram()
        for part in parts:
            hists[key].merge(Histogram.from_wire(part[key]))
    seq_counts = [0] * work.messages
    acks: dict[int, str] = {}
    errors: Counter[str] = Counter()
    per_viewer: list[int] = []
    first_seq: list[int] = []
    joins_per_s: list[int] = []
    ramp_per_s: list[int] = []
    for part in parts:
        for seq, n in enumerate(part["seq_counts"]):
            seq_counts[seq] += n
        acks.update(part["acks"])
        errors.update(part["errors"])
        per_viewer.extend(part["per_viewer"])
        first_seq.extend(part["first_seq"])
        for total, counts in ((joins_per_s, part["joins_per_s"]), (ramp_per_s, part["ramp_per_s"])):
            total.extend([0] * (len(counts) - len(total)))
            for second, n in enumerate(counts):
                total[second] += n
    joined = sum(p["joined"] for p in parts)
    ok = [seq for seq, status in acks.items() if status == "ok"]
    # A late viewer is owed the messages sent after it joined: count the acked ones from each seq.
    ok_from = [0] * (work.messages + 1)
    ok_set = set(ok)
    for seq in range(work.messages - 1, -1, -1):
        ok_from[seq] = ok_from[seq + 1] + (seq in ok_set)
    owed = [ok_from[min(f, work.messages)] for f in first_seq]
    expected = sum(owed)
    delivered = sum(seq_counts[seq] for seq in ok)
    received = sum(p["received"] for p in parts)
    last_us = max((p["last_delivery_us"] for p in parts), default=0)
    span_s = max(work.duration_s, last_us / 1e6 - t0) if last_us else work.duration_s
    latency = hists["latency"].summary_ms()
    missing = expected - delivered
    regions: dict[str, dict[str, Any]] = {}
    for part in parts:
        for region, figures in part.get("regions", {}).items():
            entry = regions.setdefault(region, {"joined": 0, "latency": Histogram()})
            entry["joined"] += figures["joined"]
            entry["latency"].merge(Histogram.from_wire(figures["latency"]))
    doc: dict[str, Any] = {
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
            "gifters": work.gifters,
            "gift_rate": work.gift_rate,
        },
        "connections": {
            "attempted": sum(p.get("attempted", 0) for p in parts),
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
            "viewers_missing_some": sum(1 for c, o in zip(per_viewer, owed, strict=True) if c < o),
            "early": sum(p["early"] for p in parts),
            "per_s": round(received / span_s, 1),
            "offered_per_s": round(expected / work.duration_s, 1),
            "last_delivery_after_s": round(last_us / 1e6 - t0, 3) if last_us else None,
        },
        "latency_ms": latency,
        # Per region of the target map (`-`: no map): viewers joined, delivery latency.
        "regions": {
            r: {"joined": e["joined"], "latency_ms": e["latency"].summary_ms()}
            for r, e in sorted(regions.items())
        },
        "timeline": merge_timelines([p["timeline"] for p in parts]),
        "likes_sent": sum(p["likes"] for p in parts),
        "likes": {
            "sent": sum(p["likes"] for p in parts),
            "confirmed": sum(p["likes_confirmed"] for p in parts),
            "delay_ms": hists["like_delay"].summary_ms(),
        },
        "arrivals": {
            "model": work.arrivals.model,
            "describe": work.arrivals.describe(),
            "arrived_during_run": sum(p["arrived"] for p in parts),
            "joins_per_s": joins_per_s,  # seconds since the start
            "joined_before_start_per_s": ramp_per_s,  # seconds since the joins began
        },
        "errors": dict(errors),
        "generator": {
            "loop_lag_ms": hists["lag"].summary_ms(),
            "send_lag_ms": hists["send_lag"].summary_ms(),
        },
        "target_met": joined == work.viewers and missing == 0 and latency["p99"] < TARGET_P99_MS,
    }
    if work.gifts:
        doc["gifts"] = _merge_gifts(work, parts, joined)
    return doc


def _merge_gifts(work: ChatWorkload, parts: list[dict[str, Any]], joined: int) -> dict[str, Any]:
    """Gift delivery: each gift acked ok is owed to every joined viewer once."""
    latency, ack, send_lag = Histogram(), Histogram(), Histogram()
    acks: dict[str, str] = {}
    for part in parts:
        g = part["gifts"]
        latency.merge(Histogram.from_wire(g["latency"]))
        ack.merge(Histogram.from_wire(g["ack"]))
        send_lag.merge(Histogram.from_wire(g["send_lag"]))
        acks.update({str(n): v for n, v in g["acks"].items()})
    ok = sum(1 for v in acks.values() if v == "ok")
    received = sum(p["gifts"]["received"] for p in parts)
    return {
        "gifters": work.gifts,
        "rate": work.gift_rate,
        "gift_id": work.gift_id,
        "granted": sum(p["gifts"]["granted"] for p in parts),
        "acked_ok": ok,
        "outcomes": dict(Counter(acks.values())),
        "expected": ok * joined,
        "delivered": received,
        "missing": ok * joined - received,
        "events_seen": sum(p["gifts"]["events"] for p in parts),
        "delivery_ms": latency.summary_ms(),
        "ack_ms": ack.summary_ms(),
        "send_lag_ms": send_lag.summary_ms(),
    }


def _server_figures(
    pids: dict[str, int],
    before: dict[str, procfs.ProcSample | None],
    joined: dict[str, procfs.ProcSample | None],
    start: dict[str, procfs.ProcSample | None],
    end: dict[str, procfs.ProcSample | None],
    final: dict[str, procfs.ProcSample | None],
    wall: float,
    held: int,
) -> dict[str, Any]:
    processes: dict[str, Any] = {}
    nodes_rss_growth = 0
    node_cpu = 0.0
    for name in pids:
        b, j, f = before.get(name), joined.get(name), final.get(name)
        cpu = procfs.cpu_percent(start.get(name), end.get(name), wall)
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
