"""`live loadtest scale`: what a node, a cross-node room and a Valkey shard cost, part by part.

- media: R rooms, each published (WHIP, the pre-encoded VP8 stream of `live loadtest media`) on
  node `k mod N`, W WHEP viewers per room spread over all N `all`-role nodes (viewer `i` of a
  room on node `i mod N`), for each N: per node CPU, egress (`live_media_bytes_forwarded`),
  ingress, viewer sessions and upstreams over a measured window once every viewer watches; each
  viewer's frames per second and loss in that window (the fleet's WHEP viewers in lean mode).
  Before the viewers, each node's CPU idle and then with its rooms published (a room's ingest).
  Every node but a room's source pulls the room from it (`edge/upstream.py`): what N > 1 adds
  over N = 1, less the nodes' idle cost, is the relay cost per room and pulling node.
- chat: one room, its members spread over N nodes (`loadtest.benches.chat`, run as is).
- sale: the flash-sale crowd (`loadtest.benches.sale`'s buyers and invariants) against one
  Valkey and a Valkey Cluster of 3 masters (`devtools.valkey_cluster`): one sale (its keys share
  `{sale:ID}`, one slot: one shard does all its work whatever the cluster's size), then S sales
  at once, chosen so they land on different shards.

Everything this module starts (nodes, Valkey, the cluster's servers) is pinned to the server
CPUs; the generator (this process, its publishers and the worker processes) to the client CPUs.
On a machine where the server side is one core, N nodes or 3 shards share that core: the
figures show what each node, relay and shard costs, not a gain from adding them.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import secrets
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis.crc import key_slot

from commerce import keys
from devtools.spawn import NodeProcess, stop_all
from devtools.synthetic import ReplayTrack
from devtools.valkey_cluster import ValkeyCluster, slot_ranges
from loadtest.benches import chat as chat_bench
from loadtest.benches.media_roles import stream
from loadtest.benches.sale import RAISED_LIMITS, check_invariants, run_buyers
from loadtest.benches.webrtc import drive_viewers, publishing
from loadtest.clients.rest import create_room, start_sale
from loadtest.fleet import servers
from loadtest.fleet.control import Fleet
from loadtest.fleet.rtc_worker import RtcPlan
from loadtest.plan.workloads import ChatWorkload, SaleSpec, SaleWorkload, senders_for
from loadtest.report import procfs, scrape
from loadtest.report.display import Progress

PARTS = ("media", "chat", "sale")
IDLE_S = 3.0  # the nodes' own cost, measured before anything is published
SETTLE_S = 2.0  # after every viewer watches: keyframe bursts and joins are not steady state
JOIN_SLACK_S = 30.0
# Nodes of the media part: viewers in the node process (no media workers), no admission cap.
MEDIA_ENV = {"LIVE_MEDIA_WORKERS": "0", "LIVE_MEDIA_MAX_VIEWERS": "0"}
EGRESS = "live_media_bytes_forwarded_total"
INGRESS = "live_media_bytes_in_total"
DROPPED = "live_media_frames_dropped_total"
SKIPS = "live_media_viewer_skips_total"


@dataclass
class ScaleSession:
    """What `live loadtest scale` asked for."""

    parts: list[str] = field(default_factory=lambda: list(PARTS))
    nodes: list[int] = field(default_factory=lambda: [1, 2, 3])
    seconds: float = 10.0  # media: the measured window; chat: sending; sale: firing (at most)
    rooms: int = 3
    viewers_per_room: int = 6
    join_rate: float = 20.0  # WHEP sessions started per second, all rooms together
    chat_viewers: int = 600
    chat_rates: list[float] = field(default_factory=lambda: [20.0])
    shards: list[int] = field(default_factory=lambda: [1, 3])
    sales: int = 3
    sale_nodes: int = 1
    sale_attempts: int = 60_000
    sale_users: int = 20_000
    sale_quantity: int = 20_000
    sale_concurrency: int = 192
    server_cpus: list[int] | None = None
    client_cpus: list[int] | None = None
    results: Path = Path("bench-results")  # the pre-encoded stream's cache
    work_dir: Path | None = None


async def run_scale(session: ScaleSession, progress: Progress = print) -> dict[str, Any]:
    """Every part asked for; returns the JSON document."""
    pinning = servers.pinning_for(session.server_cpus, session.client_cpus)
    if pinning.client_cpus:
        # The coordinator generates load too (the media part's publishers).
        os.sched_setaffinity(0, pinning.client_cpus)
    progress(pinning.describe() + "; this process (publishers, coordinator) with the generator")
    doc: dict[str, Any] = {
        "benchmark": "scale",
        "started": time.time(),
        "pinning": pinning.to_json(),
        "cpus": procfs.available_cpus(),
        "server_cores": len(pinning.server_cpus) or len(procfs.available_cpus()),
    }
    if "media" in session.parts:
        doc["media"] = await run_media(session, pinning, progress)
    if "chat" in session.parts:
        doc["chat"] = await run_chat_part(session, pinning, progress)
    if "sale" in session.parts:
        doc["sale"] = await run_sale_part(session, pinning, progress)
    doc["ok"] = all(doc[p]["ok"] for p in PARTS if p in doc)
    return doc


# -- media --------------------------------------------------------------------------------------


async def run_media(
    session: ScaleSession, pinning: servers.Pinning, progress: Progress
) -> dict[str, Any]:
    video, _ = stream(session.results.resolve())
    packets = [d for d, _ in video]
    stream_kbps = round(sum(len(d) for d in packets) * 8 / (len(packets) / 30) / 1000)
    runs = []
    async with servers.store(session.work_dir, None, pinning) as (redis_url, valkey_pid, work):
        secret = secrets.token_urlsafe(32)
        for n in session.nodes:
            runs.append(await _media_run(session, n, redis_url, valkey_pid, secret, work,
                                         pinning, packets, progress))  # fmt: skip
    runs_ok = all(r["ok"] for r in runs)
    return {
        "ok": runs_ok,
        "rooms": session.rooms,
        "viewers_per_room": session.viewers_per_room,
        "stream_kbps": stream_kbps,
        "stream": "pre-encoded VP8 640x480 30 fps (video only: the viewers offer no audio)",
        "runs": runs,
        "relay": relay_costs(runs, session.rooms),
    }


async def _media_run(
    session: ScaleSession,
    n: int,
    redis_url: str,
    valkey_pid: int | None,
    secret: str,
    work_dir: Path,
    pinning: servers.Pinning,
    packets: list[bytes],
    progress: Progress,
) -> dict[str, Any]:
    label = f"media {n}n"
    started: list[NodeProcess] = []
    try:
        for i in range(n):
            started.append(await servers.start_python_node(
                f"media{n}-{i + 1}", redis_url, secret, pinning.server_cpus, work_dir / "logs",
                MEDIA_ENV,
            ))  # fmt: skip
        urls = [s.url for s in started]
        pids = {s.node_id: s.pid for s in started}
        if valkey_pid is not None:
            pids["valkey"] = valkey_pid
        tag = secrets.token_hex(3)
        rooms = [f"scale-{tag}-{k}" for k in range(session.rooms)]
        for k, room in enumerate(rooms):
            await create_room(urls[k % n], secret, room, required=True)
        idle = await _cpu_over(pids, IDLE_S)
        viewers = session.rooms * session.viewers_per_room
        join_s = viewers / session.join_rate + JOIN_SLACK_S
        duration = join_s + SETTLE_S + session.seconds + 10
        progress(
            f"run {label}: {session.rooms} rooms (room k published on node k mod {n}), "
            f"{session.viewers_per_room} viewers each over all nodes; "
            f"{session.seconds:g} s measured"
        )
        window: dict[str, Any] = {}

        async def measure(fleet: Fleet, tick: Callable[[], None]) -> None:
            watching = await fleet.until(lambda: fleet.total("watching") >= viewers, join_s, tick)
            window["all_watching_in_time"] = watching
            await fleet.until(lambda: False, SETTLE_S, tick)
            window["before"], window["metrics0"] = _sample(pids), await scrape.scrape(urls)
            window["udp0"] = procfs.udp_counters()
            window["t0"] = time.time()
            await fleet.until(lambda: False, session.seconds, tick)
            window["after"], window["metrics1"] = _sample(pids), await scrape.scrape(urls)
            window["udp1"] = procfs.udp_counters()
            window["t1"] = time.time()

        async with contextlib.AsyncExitStack() as stack:
            for k, room in enumerate(rooms):
                track = ReplayTrack("video", packets, 30, 3000)
                await stack.enter_async_context(
                    publishing(urls[k % n], secret, room, duration + 60, [track])
                )
            published = await _cpu_over(pids, IDLE_S)  # each room's ingest, no viewer yet
            plans = [
                RtcPlan(0, 1, tuple(urls), secret, room, session.viewers_per_room, duration,
                        max(1.0, session.join_rate / session.rooms),
                        tuple(pinning.client_cpus), f"sc{tag}r{k}", lean=True)
                for k, room in enumerate(rooms)
            ]  # fmt: skip
            crowd = await drive_viewers(plans, duration, label=label, progress=progress,
                                        measure=measure)  # fmt: skip
        return _media_figures(session, n, urls, started, idle, published, window, crowd)
    finally:
        await stop_all(started)


def _media_figures(
    session: ScaleSession,
    n: int,
    urls: list[str],
    started: list[NodeProcess],
    idle: dict[str, float],
    published: dict[str, float],
    window: dict[str, Any],
    crowd: dict[str, Any],
) -> dict[str, Any]:
    viewers = session.rooms * session.viewers_per_room
    if "t1" not in window:
        return {"nodes": n, "ok": False, "error": "the crowd never started", "crowd": crowd}
    wall = window["t1"] - window["t0"]
    cpu = _cpu(window["before"], window["after"], wall)
    metrics = scrape.compare(window["metrics0"], window["metrics1"])["nodes"]
    per_node = []
    for i, (node, url) in enumerate(zip(started, urls, strict=True)):
        m = metrics.get(url, {})
        counters, gauges = m.get("counters", {}), m.get("gauges", {})
        local = sum(1 for v in range(session.viewers_per_room) if v % n == i) * session.rooms
        per_node.append({
            "node": node.node_id,
            "publishes_rooms": sum(1 for k in range(session.rooms) if k % n == i),
            "local_viewers": local,
            "viewer_sessions": gauges.get("live_media_viewers", {}).get("after"),
            "upstreams": gauges.get("live_edge_upstreams", {}).get("after"),
            "cpu_pct": cpu.get(node.node_id),
            "idle_cpu_pct": idle.get(node.node_id),
            "published_cpu_pct": published.get(node.node_id),  # rooms in, no viewer
            "egress_mbps": round(counters.get(EGRESS, 0.0) * 8 / wall / 1e6, 3),
            "ingress_mbps": round(counters.get(INGRESS, 0.0) * 8 / wall / 1e6, 3),
            # the node's own shedding: frames it dropped, viewers it skipped to a keyframe
            "frames_dropped": counters.get(DROPPED, 0.0),
            "viewer_skips": counters.get(SKIPS, 0.0),
        })  # fmt: skip
    fps = _viewer_fps(crowd, window)
    egress = sum(p["egress_mbps"] for p in per_node)
    node_cpu = sum(p["cpu_pct"] or 0.0 for p in per_node)
    watching = crowd.get("watching", 0)
    ok = bool(watching == viewers and fps and fps[0] > 0)
    return {
        "nodes": n,
        "rooms": session.rooms,
        "viewers": viewers,
        "watching": watching,
        "all_watching_in_time": window["all_watching_in_time"],
        "window_s": round(wall, 2),
        "per_node": per_node,
        "nodes_cpu_pct": round(node_cpu, 1),
        "nodes_idle_cpu_pct": round(sum(p["idle_cpu_pct"] or 0.0 for p in per_node), 1),
        "nodes_published_cpu_pct": round(sum(p["published_cpu_pct"] or 0.0 for p in per_node), 1),
        # a published room's ingest on its source (no viewer, no relay yet)
        "ingest_cpu_pct_per_room": round(
            sum((p["published_cpu_pct"] or 0.0) - (p["idle_cpu_pct"] or 0.0) for p in per_node)
            / session.rooms,
            2,
        ),
        "valkey_cpu_pct": cpu.get("valkey"),
        "egress_mbps": round(egress, 3),
        "egress_per_viewer_kbps": round(1000 * egress / viewers, 1),
        "cpu_pct_per_viewer": round(node_cpu / viewers, 3),
        # over the nodes' CPU with their rooms published and no viewer (relays included)
        "cpu_pct_per_viewer_over_ingest": round(
            (node_cpu - sum(p["published_cpu_pct"] or 0.0 for p in per_node)) / viewers, 3
        ),
        "fps_min": round(fps[0], 1) if fps else 0.0,
        "fps_median": round(statistics.median(fps), 1) if fps else 0.0,
        "viewers_at_29fps": sum(1 for f in fps if f >= 29),
        "frames_dropped": sum(p["frames_dropped"] for p in per_node),
        "loss": _window_loss(crowd, window),  # in the window
        "loss_whole_run": crowd.get("loss"),  # joins included
        # in the window, this namespace's datagrams the kernel dropped on a full receive buffer
        # (a receiver, viewer or node, that did not keep up): loopback loses nothing else
        "udp_rcvbuf_errors": window["udp1"].get("RcvbufErrors", 0)
        - window["udp0"].get("RcvbufErrors", 0),
        "first_frame_ms": crowd.get("first_frame_ms"),
        "errors": crowd.get("errors"),
        "generator_cpu_pct": crowd.get("generator", {}).get("cpu_pct"),
        "ok": ok,
    }


def _window_seconds(crowd: dict[str, Any], window: dict[str, Any]) -> slice:
    """The whole seconds (after the crowd's t0) inside the measured window."""
    t0 = crowd.get("t0", 0.0)
    return slice(math.ceil(window["t0"] - t0), math.floor(window["t1"] - t0))


def _viewer_fps(crowd: dict[str, Any], window: dict[str, Any]) -> list[float]:
    """Each viewer's frames per second over the whole seconds of the window, sorted."""
    span = _window_seconds(crowd, window)
    if span.stop <= span.start:
        return []
    seconds = span.stop - span.start
    return sorted(sum(per_s[span]) / seconds for per_s in crowd["viewer_frames_per_s"])


def _window_loss(crowd: dict[str, Any], window: dict[str, Any]) -> float | None:
    """Video packets lost (sequence gaps) over packets due in the window, all viewers."""
    span = _window_seconds(crowd, window)
    received = sum(sum(p[span]) for p in crowd.get("viewer_packets_per_s", []))
    lost = sum(sum(p[span]) for p in crowd.get("viewer_lost_per_s", []))
    return round(lost / (received + lost), 6) if received + lost else None


def relay_costs(runs: list[dict[str, Any]], rooms: int) -> list[dict[str, Any]]:
    """What N nodes cost over one for the same rooms and viewers: every node but a room's source
    pulls it, so R x (N - 1) relays; the nodes' idle cost (measured before publishing) is taken
    out, the rest split over the relays."""
    base = next((r for r in runs if r.get("nodes") == 1 and "per_node" in r), None)
    out: list[dict[str, Any]] = []
    if base is None:
        return out
    for run in runs:
        if run.get("nodes", 1) <= 1 or "per_node" not in run:
            continue
        relays = rooms * (run["nodes"] - 1)
        extra = run["nodes_cpu_pct"] - base["nodes_cpu_pct"]
        extra_idle = run["nodes_idle_cpu_pct"] - base["nodes_idle_cpu_pct"]
        extra_egress = run["egress_mbps"] - base["egress_mbps"]
        out.append({
            "nodes": run["nodes"],
            "relays": relays,
            "extra_cpu_pct": round(extra, 1),
            "extra_idle_cpu_pct": round(extra_idle, 1),
            "cpu_pct_per_relay": round((extra - extra_idle) / relays, 2),
            "extra_egress_mbps": round(extra_egress, 3),
            "egress_mbps_per_relay": round(extra_egress / relays, 3),
        })  # fmt: skip
    return out


# -- chat ---------------------------------------------------------------------------------------


async def run_chat_part(
    session: ScaleSession, pinning: servers.Pinning, progress: Progress
) -> dict[str, Any]:
    viewers = session.chat_viewers
    rows, runs = [], []
    for rate in session.chat_rates:
        workload = ChatWorkload(
            viewers=viewers, rate=rate, duration_s=session.seconds, room="",
            senders=senders_for(rate, viewers), drain_s=5.0, warmup_s=1.0,
        )  # fmt: skip
        workload.validate()
        chat_session = chat_bench.Session(
            workload=workload, viewers=[viewers], nodes=session.nodes,
            workers=max(1, len(pinning.client_cpus)), server_cpus=pinning.server_cpus,
            client_cpus=pinning.client_cpus, work_dir=session.work_dir,
        )  # fmt: skip
        doc = await chat_bench.run_session(chat_session, progress)
        runs += doc["runs"]
        rows += [_chat_row(run, rate) for run in doc["runs"]]
    ok = all(r["missing"] == 0 and r["held"] == r["viewers"] for r in rows)
    return {"ok": ok, "rows": rows, "node_cost": chat_node_cost(rows), "runs": runs}


def _chat_row(run: dict[str, Any], rate: float) -> dict[str, Any]:
    d, cpu = run["deliveries"], run["servers"]["nodes_cpu_pct"]
    return {
        "nodes": run["nodes"],
        "rate": rate,
        "viewers": run["workload"]["viewers"],
        "held": run["connections"]["held"],
        "deliveries_per_s": d["per_s"],
        "expected": d["expected"],
        "delivered": d["delivered"],
        "missing": d["missing"],
        "latency_ms": run["latency_ms"],
        "nodes_cpu_pct": cpu,
        "node_cpu_pct": {
            k: v["cpu_pct"] for k, v in run["servers"]["processes"].items() if k != "valkey"
        },
        "valkey_cpu_pct": run["servers"]["valkey_cpu_pct"],
        "generator_cpu_pct": run["generator"]["cpu_pct"],
        "deliveries_per_core_s": round(d["per_s"] * 100 / cpu) if cpu else None,
    }


def chat_node_cost(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """What each node beyond the first adds to a room of the same members and rate (CPU % of a
    core), and, from the lowest and highest rate, its split into a cost per message per node and
    a fixed one (the node's own timers, its share of sockets' upkeep, one more process on the
    core)."""
    base = {r["rate"]: r["nodes_cpu_pct"] for r in rows if r["nodes"] == 1}
    extra = [
        {"nodes": r["nodes"], "rate": r["rate"],
         "cpu_pct_per_added_node": round((r["nodes_cpu_pct"] - base[r["rate"]])
                                         / (r["nodes"] - 1), 2)}
        for r in rows if r["nodes"] > 1 and r["rate"] in base and r["nodes_cpu_pct"] is not None
    ]  # fmt: skip
    out: dict[str, Any] = {"per_added_node": extra}
    rates = sorted({e["rate"] for e in extra})
    if len(rates) >= 2:
        low, high = rates[0], rates[-1]

        def mean_at(rate: float) -> float:
            return float(
                statistics.mean(e["cpu_pct_per_added_node"] for e in extra if e["rate"] == rate)
            )

        slope = (mean_at(high) - mean_at(low)) / (high - low)  # % of a core per message/s
        out["ms_per_message_per_node"] = round(slope * 10, 3)  # 1 % of a core = 10 ms per s
        out["fixed_cpu_pct_per_node"] = round(mean_at(low) - slope * low, 2)
    return out


# -- sale ---------------------------------------------------------------------------------------


@dataclass
class _Store:
    url: str
    cluster: bool
    pids: dict[str, int]  # "valkey" or "valkey-0".. (the masters)
    shards: int


@contextlib.asynccontextmanager
async def _sale_store(shards: int, work_dir: Path, pinning: servers.Pinning) -> Any:
    if shards == 1:
        async with servers.store(work_dir / "single", None, pinning) as (url, pid, _):
            yield _Store(url, False, {"valkey": pid} if pid else {}, 1)
        return
    cluster = ValkeyCluster(work_dir / "valkey-cluster", masters=shards)
    cluster.start()
    try:
        await cluster.form()
        pids = {f"valkey-{i}": s.pid for i, s in enumerate(cluster.servers) if s.pid}
        for pid in pids.values():
            servers.pin(pid, pinning.server_cpus)
        yield _Store(cluster.url, True, pids, shards)
    finally:
        cluster.stop()


def shard_of(sale_id: str, shards: int) -> int:
    """The master (in formation order) holding a sale's slot."""
    slot = key_slot(keys.sale(sale_id, "meta").encode())
    return next(i for i, (lo, hi) in enumerate(slot_ranges(shards)) if lo <= slot <= hi)


async def run_sale_part(
    session: ScaleSession, pinning: servers.Pinning, progress: Progress
) -> dict[str, Any]:
    runs = []
    with contextlib.ExitStack() as stack:
        work_dir = session.work_dir or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="loadtest-scale-"))
        )
        secret = secrets.token_urlsafe(32)
        for shards in session.shards:
            async with _sale_store(shards, work_dir / f"sale-{shards}", pinning) as store:
                env = {**RAISED_LIMITS, "LIVE_REDIS_CLUSTER": "1" if store.cluster else "0"}
                started: list[NodeProcess] = []
                try:
                    for i in range(session.sale_nodes):
                        started.append(await servers.start_python_node(
                            f"sale{shards}-{i + 1}", store.url, secret, pinning.server_cpus,
                            work_dir / "logs", env,
                        ))  # fmt: skip
                    for count in sorted({1, session.sales}):
                        runs.append(await _sale_run(session, store, started, secret, count,
                                                    pinning, progress))  # fmt: skip
                finally:
                    await stop_all(started)
    return {
        "ok": all(r["invariants_ok"] for r in runs),
        "rate_limits": "raised: " + ", ".join(f"{k}={v}" for k, v in RAISED_LIMITS.items()),
        "runs": runs,
    }


async def _sale_run(
    session: ScaleSession,
    store: _Store,
    started: list[NodeProcess],
    secret: str,
    count: int,
    pinning: servers.Pinning,
    progress: Progress,
) -> dict[str, Any]:
    urls = [s.url for s in started]
    spec = SaleSpec(quantity=session.sale_quantity, per_user_limit=2,
                    duration_s=session.seconds + 300)  # fmt: skip
    sales = await _spread_sales(urls[0], secret, spec, store.shards, count)
    label = f"sale {store.shards}sh {count}s"
    progress(
        f"run {label}: {count} sale(s) at once on shard(s) "
        f"{[s['shard'] for s in sales]}, {session.sale_attempts} attempts in all"
    )
    pids = {**{s.node_id: s.pid for s in started}, **store.pids}
    share = max(1, session.sale_attempts // count)

    async def one(sale: dict[str, Any]) -> dict[str, Any]:
        work = SaleWorkload(
            users=session.sale_users, attempts=share, rate=0.0, duration_s=session.seconds,
            room=sale["room"], sale_id=sale["sale_id"],
            concurrency=max(1, session.sale_concurrency // count),
        )  # fmt: skip
        return await run_buyers(
            work, urls, secret, server_pids=pids, workers=max(1, session.sales // count),
            client_cpus=pinning.client_cpus, label=f"{label} {sale['shard']}", progress=progress,
        )  # fmt: skip

    results = await asyncio.gather(*(one(s) for s in sales))
    # Each crowd's window is its own, from its start to its last answer: nearly the same one.
    cpu = {
        name: round(statistics.mean(r["cpu_pct"]["processes"][name] for r in results), 1)
        for name in pids
    }
    per_sale = []
    for sale, result in zip(sales, results, strict=True):
        units = result.pop("units_by_user")
        inv = await check_invariants(
            store.url, urls[0], sale["room"], sale["sale_id"], quantity=spec.quantity,
            per_user_limit=spec.per_user_limit, reserved_201=result["attempts"]["reserved"],
            units_by_user=units, cluster=store.cluster,
        )  # fmt: skip
        per_sale.append({
            "sale_id": sale["sale_id"], "shard": sale["shard"],
            "per_s": result["attempts"]["per_s"],
            "http_answers": result["attempts"]["http_answers"],
            "span_s": result["attempts"]["span_s"], "latency_ms": result["latency_ms"],
            "outcomes": result["outcomes"], "invariants_ok": inv["ok"],
            "invariants": inv["checks"], "sale": inv["sale"],
        })  # fmt: skip
    answers = sum(s["http_answers"] for s in per_sale)
    span = max((s["span_s"] for s in per_sale), default=0.0)
    valkey = {k: v for k, v in cpu.items() if k.startswith("valkey")}
    reserved = sum(s["sale"]["reserved"] + s["sale"]["sold"] for s in per_sale)
    return {
        "shards": store.shards,
        "store": "Valkey Cluster" if store.cluster else "single Valkey",
        "sales": count,
        "nodes": len(started),
        "attempts_per_s": round(answers / span, 1) if span else 0.0,
        "p99_ms_worst_sale": max(s["latency_ms"]["p99"] for s in per_sale),
        "p50_ms_worst_sale": max(s["latency_ms"]["p50"] for s in per_sale),
        "shards_used": sorted({s["shard"] for s in per_sale}),
        "units_reserved": reserved,
        "nodes_cpu_pct": round(sum(cpu.get(s.node_id, 0.0) for s in started), 1),
        "valkey_cpu_pct": valkey,
        "invariants_ok": all(s["invariants_ok"] for s in per_sale),
        "per_sale": per_sale,
    }


async def _spread_sales(
    url: str, secret: str, spec: SaleSpec, shards: int, count: int
) -> list[dict[str, Any]]:
    """`count` new sales, as evenly over the shards as ids allow (ids are the server's: a sale
    whose shard already has its share is left unused)."""
    wanted = [k % shards for k in range(count)]
    chosen: list[dict[str, Any]] = []
    for _ in range(20 * count):
        room = "scale-" + secrets.token_hex(4)
        sale = await start_sale(url, secret, room, spec)
        shard = shard_of(sale["sale_id"], shards)
        if shard in wanted:
            wanted.remove(shard)
            chosen.append({"room": room, "sale_id": sale["sale_id"], "shard": shard})
        if not wanted:
            return chosen
    raise RuntimeError(f"no sales on shards {wanted} after {20 * count} tries")


# -- shared -------------------------------------------------------------------------------------


async def _cpu_over(pids: dict[str, int], seconds: float) -> dict[str, float]:
    """Each process's CPU % over the next `seconds` (a measured window, not a wait)."""
    before, t0 = _sample(pids), time.monotonic()
    await asyncio.sleep(seconds)
    return _cpu(before, _sample(pids), time.monotonic() - t0)


def _sample(pids: dict[str, int]) -> dict[str, procfs.ProcSample | None]:
    return {name: procfs.sample(pid) for name, pid in pids.items()}


def _cpu(
    before: dict[str, procfs.ProcSample | None],
    after: dict[str, procfs.ProcSample | None],
    wall: float,
) -> dict[str, float]:
    return {n: procfs.cpu_percent(before.get(n), after.get(n), wall) for n in before}


# -- report -------------------------------------------------------------------------------------


def table(doc: dict[str, Any]) -> str:
    """The parts' figures for people, with what a one-core server side cannot show."""
    lines = [doc["pinning"]["note"]]
    if "media" in doc:
        lines += _media_table(doc["media"])
    if "chat" in doc:
        lines += ["", "chat: one room, members spread over the nodes",
                  f"{'nodes':>5} {'msg/s':>5} {'held':>6} {'deliv/s':>8} {'p50 ms':>7}"
                  f" {'p99 ms':>7} {'missing':>7} {'nodes CPU%':>10} {'deliv/core-s':>12}"
                  f" {'valkey%':>7} {'gen%':>5}"]  # fmt: skip
        for r in doc["chat"]["rows"]:
            lines.append(
                f"{r['nodes']:>5} {r['rate']:>5g} {r['held']:>6} {r['deliveries_per_s']:>8.0f}"
                f" {r['latency_ms']['p50']:>7} {r['latency_ms']['p99']:>7} {r['missing']:>7}"
                f" {r['nodes_cpu_pct']!s:>10} {r['deliveries_per_core_s']!s:>12}"
                f" {r['valkey_cpu_pct']!s:>7} {r['generator_cpu_pct']!s:>5}"
            )
        cost = doc["chat"]["node_cost"]
        for e in cost["per_added_node"]:
            lines.append(f"  {e['nodes']} nodes at {e['rate']:g} msg/s: "
                         f"+{e['cpu_pct_per_added_node']} % a core per node added")  # fmt: skip
        if "ms_per_message_per_node" in cost:
            lines.append(f"  a node with members of the room: {cost['ms_per_message_per_node']} ms "
                         f"per message + {cost['fixed_cpu_pct_per_node']} % fixed")  # fmt: skip
    if "sale" in doc:
        lines += ["", f"sale: {doc['sale']['rate_limits']}",
                  f"{'store':>15} {'sales':>5} {'shards used':>11} {'att/s':>8} {'p50 ms':>7}"
                  f" {'p99 ms':>7} {'nodes%':>6}  valkey% per process  books"]  # fmt: skip
        for r in doc["sale"]["runs"]:
            valkey = " ".join(f"{v:g}" for v in r["valkey_cpu_pct"].values())
            lines.append(
                f"{r['store']:>15} {r['sales']:>5} {','.join(map(str, r['shards_used'])):>11}"
                f" {r['attempts_per_s']:>8.0f} {r['p50_ms_worst_sale']:>7}"
                f" {r['p99_ms_worst_sale']:>7} {r['nodes_cpu_pct']:>6}  {valkey:<20}"
                f" {'ok' if r['invariants_ok'] else 'BREACH'}"
            )
    lines += ["", *NOTES]
    return "\n".join(lines)


def _media_table(media: dict[str, Any]) -> list[str]:
    lines = [
        "",
        f"media: {media['rooms']} rooms x {media['viewers_per_room']} viewers, "
        f"{media['stream']} at {media['stream_kbps']} kbps",
        f"{'N':>2} {'node':>9} {'rooms':>5} {'local':>5} {'sessions':>8} {'upstr':>5}"
        f" {'CPU%':>6} {'idle%':>5} {'pub%':>5} {'egress Mbps':>11} {'ingress Mbps':>12}",
    ]
    for run in media["runs"]:
        if "per_node" not in run:
            lines.append(f"{run['nodes']:>2} error: {run.get('error')}")
            continue
        for p in run["per_node"]:
            lines.append(
                f"{run['nodes']:>2} {p['node']:>9} {p['publishes_rooms']:>5}"
                f" {p['local_viewers']:>5}"
                f" {p['viewer_sessions']!s:>8} {p['upstreams']!s:>5} {p['cpu_pct']!s:>6}"
                f" {p['idle_cpu_pct']!s:>5} {p['published_cpu_pct']!s:>5}"
                f" {p['egress_mbps']:>11.2f} {p['ingress_mbps']:>12.2f}"
            )
        lines.append(
            f"{run['nodes']:>2} {'all':>9}: CPU {run['nodes_cpu_pct']} % "
            f"({run['cpu_pct_per_viewer']} % a viewer, {run['cpu_pct_per_viewer_over_ingest']} % "
            f"over ingest; ingest {run['ingest_cpu_pct_per_room']} % "
            f"a room), egress {run['egress_mbps']:.2f} Mbps "
            f"({run['egress_per_viewer_kbps']} kbps a viewer), fps min/median "
            f"{run['fps_min']}/{run['fps_median']}, {run['viewers_at_29fps']}/{run['viewers']} "
            f"at >= 29 fps, loss {100 * (run['loss'] or 0):.2f} %, dropped by nodes "
            f"{run['frames_dropped']:g}, UDP receive-buffer drops {run['udp_rcvbuf_errors']}, "
            f"valkey {run['valkey_cpu_pct']} %, "
            f"generator {run['generator_cpu_pct']} %"
        )
    for r in media["relay"]:
        lines.append(
            f"relay, {r['nodes']} nodes over 1: {r['relays']} relays, CPU +{r['extra_cpu_pct']} % "
            f"(+{r['extra_idle_cpu_pct']} % idle nodes) = {r['cpu_pct_per_relay']} % a relay; "
            f"egress +{r['extra_egress_mbps']:.2f} Mbps = {r['egress_mbps_per_relay']:.2f} a relay"
        )
    return lines


NOTES = [
    "What this machine can show: with the server side on one core, N nodes and 3 Valkey shards",
    "share that core, so adding them cannot raise throughput here; the figures are each node's,",
    "relay's and shard's cost (CPU% is of one core, over the measured window), from which",
    "docs/capacity.md builds the capacity model for a deployment with a core (or more) per node.",
]
