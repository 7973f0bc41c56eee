"""`live loadtest sale`: a flash-sale crowd against 1 and 2 nodes, the script alone beside it.

The session (`run_sale_session`), for each node count: fresh `live serve` nodes (pinned apart from
the generator) on one embedded Valkey; for each path (`via`: `http` posts, or `socket`: Socket.IO
`buy` on each buyer's joined connection) a new sale, the buyer fleet, the invariants; then the
reservation script called directly on the same Valkey with the same sale settings
(`loadtest.benches.direct`), once for the paths; the JSON document and a table.

The driver (`run_buyers`, also the scenario's buyers): worker processes
(`loadtest.fleet.buyer_worker`) fire the attempts; their reports are merged. After the crowd is
done, the sale is checked against the store (`check_invariants`): units reserved (and sold) plus
stock left equal the quantity, as many `purchase.reserved` events as reservations, no buyer above
the per-user limit, and the HTTP answers agree with all of it. A breach fails the run.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

from commerce import keys
from commerce.config import PURCHASE_STREAM
from core.store import redis_client
from devtools.spawn import NodeProcess, stop_all
from loadtest.benches.direct import UNLIMITED, DirectSpec, run_direct
from loadtest.clients.rest import get_sale, start_sale
from loadtest.fleet import buyer_worker, servers
from loadtest.fleet.buyer_worker import is_answer
from loadtest.fleet.control import Fleet
from loadtest.plan.workloads import BuyerPlan, SaleSpec, SaleWorkload
from loadtest.report import procfs
from loadtest.report.display import Monitor, Progress
from loadtest.report.histogram import Histogram, merge_timelines

START_DELAY_S = 1.0
RELAY_WAIT_POLLS = 100  # 0.1 s apart: the cluster's outbox relay moves events every 50 ms
TARGET_PER_S = 10_000.0
TARGET_P99_MS = 50.0
SOCKET_SETUP_S = 0.04  # allowed per socket buyer to connect and join, on top of 60 s

# -- session ------------------------------------------------------------------------------------

# The commerce layer's per-user and per-IP reservation limits would refuse most of a benchmark
# crowd (every simulated buyer comes from 127.0.0.1); the nodes we start run with them raised.
RAISED_LIMITS = {
    "LIVE_COMMERCE_USER_RATE": str(UNLIMITED),
    "LIVE_COMMERCE_IP_RATE": str(UNLIMITED),
}


@dataclass
class SaleSession:
    workload: SaleWorkload
    sale: SaleSpec
    nodes: list[int] = field(default_factory=lambda: [1])
    targets: list[str] = field(default_factory=list)
    secret: str | None = None
    redis_url: str | None = None  # with targets: the store they share, for the invariants
    workers: int = 1
    server_cpus: list[int] | None = None
    client_cpus: list[int] | None = None
    direct: str = "auto"  # auto | redis-benchmark | python | none
    direct_calls: int = 200_000
    via: list[str] = field(default_factory=lambda: ["http"])  # one run per path, side by side


async def run_sale_session(session: SaleSession, progress: Progress = print) -> dict[str, Any]:
    """Every run of the session; returns the JSON document (`ok` false on any breach)."""
    pinning = servers.pinning_for(session.server_cpus, session.client_cpus)
    runs: list[dict[str, Any]] = []
    if session.targets:
        if not session.secret:
            raise ValueError("--target needs the nodes' token secret (LIVE_JWT_SECRET or --secret)")
        progress(f"targets {' '.join(session.targets)}; generator on CPU {pinning.client_cpus}")
        group = [
            await _run(session, session.targets, {}, session.secret, session.redis_url,
                       pinning, progress, _label("target", via, session), via)
            for via in session.via
        ]  # fmt: skip
        runs.extend(await _with_direct(session, group, session.redis_url, session.targets[0],
                                       session.secret, pinning))  # fmt: skip
    else:
        progress(pinning.describe())
        progress("nodes run with LIVE_COMMERCE_USER_RATE and LIVE_COMMERCE_IP_RATE raised")
        async with servers.store(None, None, pinning) as (redis_url, valkey_pid, work_dir):
            secret = session.secret or secrets.token_urlsafe(32)
            for nodes in session.nodes:
                started: list[NodeProcess] = []
                try:
                    for i in range(nodes):
                        started.append(await servers.start_python_node(
                            f"python-{i + 1}", redis_url, secret, pinning.server_cpus,
                            work_dir / "logs", RAISED_LIMITS,
                        ))  # fmt: skip
                    pids = {s.node_id: s.pid for s in started}
                    if valkey_pid is not None:
                        pids["valkey"] = valkey_pid
                    urls = [s.url for s in started]
                    group = [
                        await _run(session, urls, pids, secret, redis_url, pinning, progress,
                                   _label(f"{nodes}n", via, session), via)
                        for via in session.via
                    ]  # fmt: skip
                    runs.extend(await _with_direct(session, group, redis_url, urls[0], secret,
                                                   pinning))  # fmt: skip
                finally:
                    await stop_all(started)
    return {
        "benchmark": "sale",
        "ok": all(r["invariants"]["ok"] for r in runs),
        "pinning": pinning.to_json(),
        "rate_limits": "raised on the nodes started here: " + ", ".join(
            f"{k}={v}" for k, v in RAISED_LIMITS.items()
        ) if not session.targets else "as configured on the targets",
        "runs": runs,
    }  # fmt: skip


def _label(base: str, via: str, session: SaleSession) -> str:
    return f"{base}-{via}" if len(session.via) > 1 or via != "http" else base


async def _with_direct(
    session: SaleSession,
    group: list[dict[str, Any]],
    redis_url: str | None,
    url: str,
    secret: str,
    pinning: servers.Pinning,
) -> list[dict[str, Any]]:
    """The script called directly once for the group (the runs of one node count, one per
    path), each run's ratio to it beside."""
    if session.direct == "none" or redis_url is None or not group:
        return group
    spec = _spec_for(session)
    direct = await _direct(session, redis_url, url, secret, spec, pinning)
    per_s = direct["calls_per_s"]
    for result in group:
        result["direct"] = direct
        ratio = round(result["attempts"]["per_s"] / per_s, 3) if per_s else None
        result["over_direct"] = ratio
        if result["via"] == "http":
            result["http_over_direct"] = ratio  # the name of earlier documents
    return group


def _spec_for(session: SaleSession) -> SaleSpec:
    return replace(session.sale, duration_s=max(session.sale.duration_s,
                                                session.workload.duration_s + 120))  # fmt: skip


async def _run(
    session: SaleSession,
    urls: list[str],
    pids: dict[str, int],
    secret: str,
    redis_url: str | None,
    pinning: servers.Pinning,
    progress: Progress,
    label: str,
    via: str = "http",
) -> dict[str, Any]:
    room = "sale-" + secrets.token_hex(4)
    spec = _spec_for(session)
    sale = await start_sale(urls[0], secret, room, spec)
    work = replace(session.workload, room=room, sale_id=sale["sale_id"], via=via)
    rate = f"{work.rate:g}/s" if work.rate else "as fast as possible"
    progress(
        f"run {label}: {work.attempts} attempts by {work.users} users at {rate} (at most "
        f"{work.duration_s:g} s) over {via}, sale of {spec.quantity} (limit "
        f"{spec.per_user_limit}/user)"
    )
    result = await run_buyers(
        work, urls, secret, server_pids=pids, workers=session.workers,
        client_cpus=pinning.client_cpus, label=label, progress=progress,
    )  # fmt: skip
    units = result.pop("units_by_user")
    # Other work on the host (other benchmarks, test suites) shows here, not in our CPU figures.
    result["host_loadavg_1m_after"] = round(os.getloadavg()[0], 2)
    result["invariants"] = await check_invariants(
        redis_url, urls[0], room, sale["sale_id"], quantity=spec.quantity,
        per_user_limit=spec.per_user_limit, reserved_201=result["attempts"]["reserved"],
        units_by_user=units,
    )  # fmt: skip
    result["buyers_with_units"] = len(units)
    result.update({"label": label, "via": via, "nodes": len(urls), "urls": urls,
                   "pinning": pinning.describe()})  # fmt: skip
    result["sale"] = {"quantity": spec.quantity, "per_user_limit": spec.per_user_limit}
    lat = result["latency_ms"]
    result["target"] = {
        "per_s": TARGET_PER_S, "p99_ms": TARGET_P99_MS,
        "met": result["attempts"]["per_s"] >= TARGET_PER_S and lat["p99"] < TARGET_P99_MS
        and result["invariants"]["ok"],
    }  # fmt: skip
    return result


async def _direct(
    session: SaleSession,
    redis_url: str,
    url: str,
    secret: str,
    spec: SaleSpec,
    pinning: servers.Pinning,
) -> dict[str, Any]:
    """The same script on a twin sale (same quantity and limit) of the same Valkey."""
    room = "direct-" + secrets.token_hex(4)
    sale = await start_sale(url, secret, room, spec)
    direct = DirectSpec(
        redis_url=redis_url, room=room, sale_id=sale["sale_id"], calls=session.direct_calls,
        cpus=tuple(pinning.client_cpus), tool=session.direct,
    )  # fmt: skip
    result = await run_direct(direct)
    invariants = await check_invariants(
        redis_url, url, room, sale["sale_id"], quantity=spec.quantity,
        per_user_limit=spec.per_user_limit, reserved_201=0, units_by_user={},
    )  # fmt: skip
    # Only the books of the store apply here: nobody read the answers.
    result["stock_balances"] = invariants["checks"]["units_reserved_plus_stock_left_is_quantity"]
    result["sale"] = invariants["sale"]
    result["pinning"] = (
        f"{result['tool']} on CPU {pinning.client_cpus}, Valkey on {pinning.server_cpus}"
    )
    return result


def table(doc: dict[str, Any]) -> str:
    """One row per run, then outcomes, invariants and the direct-script comparison."""
    head = (f"{'run':>10} {'att/s':>8} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'max ms':>7}"
            f" {'reserved':>8} {'left':>6} {'books':>5} {'node%':>6} {'valkey%':>7} {'gen%':>5}"
            f" {'us/att':>6} {'direct/s':>9} {'ratio':>6}")  # fmt: skip
    lines = [doc["pinning"]["note"], f"rate limits: {doc['rate_limits']}", "", head]
    for r in doc["runs"]:
        lat, inv, cpu = r["latency_ms"], r["invariants"], r["cpu_pct"]
        direct = r.get("direct", {})
        lines.append(
            f"{r['label']:>10} {r['attempts']['per_s']:>8.0f} {lat['p50']:>7} {lat['p95']:>7}"
            f" {lat['p99']:>7} {lat['max']:>7} {inv['sale']['reserved'] + inv['sale']['sold']:>8}"
            f" {inv['sale']['stock_left']:>6} {'ok' if inv['ok'] else 'BREACH':>5}"
            f" {cpu['nodes']:>6} {cpu['valkey'] or '-'!s:>7} {cpu['generator']:>5}"
            f" {r.get('node_cpu_us_per_attempt') or '-'!s:>6}"
            f" {direct.get('calls_per_s', '-')!s:>9} {r.get('over_direct', '-')!s:>6}"
        )
    for r in doc["runs"]:
        lines.append(f"  {r['label']}: outcomes {r['outcomes']}")
        bad = [name for name, c in r["invariants"]["checks"].items() if not c["ok"]]
        lines.append(
            f"  {r['label']}: invariants " + ("all hold" if not bad else f"BREACHED {bad}")
        )
        if "direct" in r:
            d = r["direct"]
            lines.append(
                f"  {r['label']}: direct script ({d['tool']}, {d['clients']} clients x pipeline "
                f"{d['pipeline']}): {d['calls_per_s']:.0f} calls/s, "
                f"p50 {d['latency_ms']['p50']} ms, p99 {d['latency_ms']['p99']} ms; {d['pinning']}"
            )
    lines.append("")
    lines.append(
        "att/s = answers (HTTP responses, or Socket.IO acks for -socket runs) per second between "
        "the first send and the last answer; latency is send to answer; ratio = att/s over "
        "direct calls/s (one direct run per node count); CPU% per core over the run; us/att = "
        "node CPU per answered attempt."
    )
    return "\n".join(lines)


# -- driver -------------------------------------------------------------------------------------


async def run_buyers(
    work: SaleWorkload,
    urls: list[str],
    secret: str,
    *,
    server_pids: dict[str, int],
    workers: int = 1,
    client_cpus: list[int] | None = None,
    label: str = "sale",
    progress: Progress = print,
    monitor: Monitor | None = None,
    quantity: int | None = None,
) -> dict[str, Any]:
    """Fire the workload at `urls` from `workers` processes; merged measurements.

    With a `monitor`: a live status line, and a stop ends the run with partial results. With the
    sale's `quantity`, the time it took to sell through (every unit reserved) is reported.
    """
    work.validate()
    tag = f"lt{time.time_ns() % 10**9:x}"
    cpus = tuple(client_cpus or ())
    plans = [BuyerPlan(i, workers, tuple(urls), secret, work, cpus, tag) for i in range(workers)]
    fleet = Fleet.spawn(buyer_worker.main, plans)

    stop = monitor.stop if monitor is not None else None
    every = 0.5 if monitor is not None else 2.0

    def tick() -> None:
        recent = Histogram()
        for p in fleet.progress.values():
            if "recent" in p:
                recent.merge(Histogram.from_wire(p["recent"]))
        q = recent.summary_ms()
        line = (
            f"sent {fleet.total('sent')} answered {fleet.total('answered')}"
            f" reserved {fleet.total('reserved')} p50 {q['p50']:.1f} ms p99 {q['p99']:.1f} ms"
            f" errors {fleet.total('errors')}"
        )
        if monitor is None:
            progress(f"  [{label}] {line}")
            return
        monitor.status(label, line)
        if recent.count:
            monitor.live({f"sale.reservation.{k}": float(q[k]) for k in ("p50", "p95", "p99")})

    def stopped() -> bool:
        return stop is not None and stop.is_set()

    pids = {**server_pids, **fleet.pids}
    start = end = {n: procfs.sample(p) for n, p in pids.items()}
    t0 = time.time()
    try:
        # Socket buyers connect and join the room first (a join reads the room's state).
        setup_s = 60 + (work.users * SOCKET_SETUP_S if work.via == "socket" else 0)
        ready = await fleet.until(lambda: len(fleet.ready) == workers, setup_s, tick, every, stop)
        if not ready and not stopped():
            if monitor is None:
                raise RuntimeError(f"buyer workers were not ready within {setup_s:.0f} s")
            monitor.request_stop(f"[{label}] buyer workers were not ready within {setup_s:.0f} s")
        if not stopped():
            t0 = time.time() + START_DELAY_S
            fleet.broadcast({"kind": "go", "t0": t0})
            await fleet.until(lambda: False, max(0.0, t0 - time.time()), tick, every, stop)
            start = {n: procfs.sample(p) for n, p in pids.items()}
        budget = work.duration_s + work.timeout_s + 30
        done = await fleet.until(lambda: len(fleet.done) == workers, budget, tick, every, stop)
        if not done and not stopped():
            if monitor is None:
                raise RuntimeError(f"buyer workers did not report within {budget:.0f} s")
            monitor.request_stop(f"[{label}] buyer workers did not report within {budget:.0f} s")
        if len(fleet.done) < workers:
            fleet.broadcast({"kind": "stop"})
            await fleet.until(lambda: len(fleet.done) + len(fleet.dead) >= workers, 10.0)
        end = {n: procfs.sample(p) for n, p in pids.items()}
        wall = time.time() - t0
    finally:
        await fleet.reap()
    result = merge(work, list(fleet.done.values()), t0, quantity)
    result["partial"] = len(fleet.done) < workers or any(
        p.get("partial") for p in fleet.done.values()
    )
    cpu = {n: procfs.cpu_percent(start.get(n), end.get(n), wall) for n in pids}
    result["cpu_pct"] = {
        "nodes": round(sum(v for n, v in cpu.items() if n in server_pids and n != "valkey"), 1),
        "valkey": cpu.get("valkey"),
        "generator": round(sum(v for n, v in cpu.items() if n.startswith("worker-")), 1),
        "processes": cpu,
    }
    result["generator"]["workers"] = workers
    answered = result["attempts"]["http_answers"]
    node_cpu_s = result["cpu_pct"]["nodes"] / 100 * wall
    result["node_cpu_us_per_attempt"] = round(node_cpu_s / answered * 1e6, 1) if answered else None
    return result


def merge(
    work: SaleWorkload, parts: list[dict[str, Any]], t0: float, quantity: int | None = None
) -> dict[str, Any]:
    """Add the workers' reports together (histograms bucket by bucket)."""
    latency, send_lag = Histogram(), Histogram()
    outcomes: Counter[str] = Counter()
    units: Counter[str] = Counter()
    for part in parts:
        latency.merge(Histogram.from_wire(part["latency"]))
        send_lag.merge(Histogram.from_wire(part["send_lag"]))
        outcomes.update(part["outcomes"])
        units.update(part["units"])
    first = min((p["first_send_us"] for p in parts if p["first_send_us"]), default=0)
    last = max((p["last_answer_us"] for p in parts), default=0)
    span_s = (last - first) / 1e6 if first and last > first else 0.0
    answered = sum(p["answered"] for p in parts)
    # HTTP statuses, or Socket.IO acknowledgements (`via` socket); the key keeps its old name.
    http_answers = sum(n for o, n in outcomes.items() if is_answer(o))
    errors = answered - http_answers
    return {
        "workload": {
            "users": work.users,
            "attempts": work.attempts,
            "rate": work.rate,
            "duration_s": work.duration_s,
            "concurrency": work.concurrency,
            "quantity_per_attempt": work.quantity,
            "via": work.via,
            "room": work.room,
            "sale_id": work.sale_id,
        },
        "attempts": {
            "sent": sum(p["sent"] for p in parts),
            "answered": answered,
            "http_answers": http_answers,
            "transport_errors": errors,
            "reserved": sum(p["reserved"] for p in parts),
            # unanswered attempts a retry with the same Idempotency-Key settled
            "recovered_by_retry": sum(p.get("recovered", 0) for p in parts),
            "span_s": round(span_s, 3),
            "per_s": round(http_answers / span_s, 1) if span_s else 0.0,
        },
        "outcomes": dict(sorted(outcomes.items())),
        "latency_ms": latency.summary_ms(),
        "timeline": merge_timelines([p["timeline"] for p in parts]),
        "units_by_user": dict(units),
        "sell_through": _sell_through(parts, t0, quantity),
        "generator": {
            "send_lag_ms": send_lag.summary_ms(),
            "sockets_lost": sum(p.get("sockets_lost", 0) for p in parts),
        },
    }


def _sell_through(parts: list[dict[str, Any]], t0: float, quantity: int | None) -> dict[str, Any]:
    """When the last unit went (seconds after the start), and stock left at each second's end."""
    answers = sorted(tuple(a) for p in parts for a in p.get("reserved_at", []))
    units_by_second: list[int] = []
    sold_out_s: float | None = None
    units = 0
    for at_us, n in answers:
        units += n
        second = max(0, int(at_us / 1e6 - t0))
        units_by_second.extend([0] * (second + 1 - len(units_by_second)))
        units_by_second[second] += n
        if quantity is not None and units >= quantity and sold_out_s is None:
            sold_out_s = round(at_us / 1e6 - t0, 3)
    stock, left = [], quantity or 0
    for n in units_by_second:
        left -= n
        stock.append(left)
    return {
        "sold_out": sold_out_s is not None,
        "seconds": sold_out_s,
        "stock_by_second": stock if quantity is not None else [],
    }


async def check_invariants(
    redis_url: str | None,
    url: str,
    room: str,
    sale_id: str,
    *,
    quantity: int,
    per_user_limit: int,
    reserved_201: int,
    units_by_user: dict[str, int],
    events_stream: str | None = None,
    cluster: bool = False,
) -> dict[str, Any]:
    """The sale's books after the run: each check with its figures; `ok` only if all hold.

    On a Valkey Cluster (`cluster`) the events reach the purchase stream through the nodes'
    outbox relay: they are waited for (a few seconds at most) before they are counted."""
    sale = await get_sale(url, room, sale_id)
    checks: dict[str, dict[str, Any]] = {}
    client_units = sum(units_by_user.values())

    def check(name: str, ok: bool, **figures: Any) -> None:
        checks[name] = {"ok": bool(ok), **figures}

    held_sold = sale["reserved"] + sale["sold"]
    check(
        "units_reserved_plus_stock_left_is_quantity",
        held_sold + sale["stock_left"] == quantity,
        reserved=sale["reserved"], sold=sale["sold"], stock_left=sale["stock_left"],
        quantity=quantity,
    )  # fmt: skip
    check("units_in_201_answers_match_store", client_units == held_sold,
          answered=client_units, store=held_sold)  # fmt: skip
    worst = max(units_by_user.values(), default=0)
    check("no_user_over_limit_http", worst <= per_user_limit, max_units=worst,
          limit=per_user_limit)  # fmt: skip
    if redis_url is not None:
        stream = events_stream or PURCHASE_STREAM
        async with redis_client(redis_url, cluster=cluster) as redis:
            per_user = await redis.hgetall(keys.sale(sale_id, "users"))
            reservations = await redis.hlen(keys.sale(sale_id, "res"))
            events, event_ids = await _reserved_events(redis, stream, sale_id)
            for _ in range(RELAY_WAIT_POLLS if cluster else 0):
                if events >= reservations:
                    break
                await asyncio.sleep(0.1)
                events, event_ids = await _reserved_events(redis, stream, sale_id)
        store_worst = max((int(v) for v in per_user.values()), default=0)
        check("no_user_over_limit_store", store_worst <= per_user_limit,
              max_units=store_worst, limit=per_user_limit, buyers=len(per_user))  # fmt: skip
        check("reserved_events_equal_reservations", events == reservations == reserved_201,
              events=events, reservations=reservations, answered_201=reserved_201)  # fmt: skip
        check("no_duplicate_events", event_ids == events, distinct=event_ids, events=events)
    return {
        "ok": all(c["ok"] for c in checks.values()),
        "checks": checks,
        "sale": {k: sale[k] for k in ("status", "quantity", "stock_left", "reserved", "sold")},
    }


async def _reserved_events(redis: Any, stream: str, sale_id: str) -> tuple[int, int]:
    """`purchase.reserved` entries of this sale in the stream, and how many distinct ids."""
    count, ids = 0, set()
    cursor = "-"
    for _ in range(100_000):  # bounded: 1,000 entries a page
        page = await redis.xrange(stream, min=cursor, max="+", count=1000)
        for _, fields in page:
            if fields.get(b"type") != b"purchase.reserved":
                continue
            data = json.loads(fields[b"data"])
            if data.get("sale_id") == sale_id:
                count += 1
                ids.add(data.get("event_id"))
        if len(page) < 1000:
            break
        last = page[-1][0].decode()
        cursor = "(" + last
    return count, len(ids)
