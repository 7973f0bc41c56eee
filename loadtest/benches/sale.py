"""`live loadtest sale`: a flash-sale crowd against 1 and 2 nodes, the script alone beside it.

For each node count: fresh `live serve` nodes (pinned apart from the generator) on one embedded
Valkey, a new sale, the buyer fleet, the invariants, then the reservation script called directly
on the same Valkey with the same sale settings; the JSON document and a table.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field, replace
from typing import Any

from loadtest.benches.chat_session import store
from loadtest.benches.direct import UNLIMITED, DirectSpec, run_direct
from loadtest.benches.sale_driver import (
    TARGET_P99_MS,
    TARGET_PER_S,
    Progress,
    SaleSpec,
    check_invariants,
    run_buyers,
    start_sale,
)
from loadtest.fleet import servers
from loadtest.plan.workloads import SaleWorkload
from loadtest.report.procfs import available_cpus

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


async def run_sale_session(session: SaleSession, progress: Progress = print) -> dict[str, Any]:
    """Every run of the session; returns the JSON document (`ok` false on any breach)."""
    pinning = servers.default_pinning(available_cpus())
    if session.server_cpus is not None:
        pinning.server_cpus = session.server_cpus
    if session.client_cpus is not None:
        pinning.client_cpus = session.client_cpus
    runs: list[dict[str, Any]] = []
    if session.targets:
        if not session.secret:
            raise ValueError("--target needs the nodes' token secret (LIVE_JWT_SECRET or --secret)")
        progress(f"targets {' '.join(session.targets)}; generator on CPU {pinning.client_cpus}")
        runs.append(await _run(session, session.targets, {}, session.secret, session.redis_url,
                               pinning, progress, "target"))  # fmt: skip
    else:
        progress(pinning.describe())
        progress("nodes run with LIVE_COMMERCE_USER_RATE and LIVE_COMMERCE_IP_RATE raised")
        async with store(None, None, pinning) as (redis_url, valkey_pid, work_dir):
            secret = session.secret or secrets.token_urlsafe(32)
            for nodes in session.nodes:
                started: list[servers.ServerProcess] = []
                try:
                    for i in range(nodes):
                        started.append(await servers.start_python_node(
                            f"python-{i + 1}", redis_url, secret, pinning.server_cpus,
                            work_dir / "logs", RAISED_LIMITS,
                        ))  # fmt: skip
                    pids = {s.name: s.pid for s in started}
                    if valkey_pid is not None:
                        pids["valkey"] = valkey_pid
                    urls = [s.url for s in started]
                    runs.append(await _run(session, urls, pids, secret, redis_url, pinning,
                                           progress, f"{nodes}n"))  # fmt: skip
                finally:
                    for proc in started:
                        servers.stop(proc)
    return {
        "benchmark": "sale",
        "ok": all(r["invariants"]["ok"] for r in runs),
        "pinning": {
            "server_cpus": pinning.server_cpus,
            "client_cpus": pinning.client_cpus,
            "tool": pinning.tool,
            "note": pinning.describe(),
        },
        "rate_limits": "raised on the nodes started here: " + ", ".join(
            f"{k}={v}" for k, v in RAISED_LIMITS.items()
        ) if not session.targets else "as configured on the targets",
        "runs": runs,
    }  # fmt: skip


async def _run(
    session: SaleSession,
    urls: list[str],
    pids: dict[str, int],
    secret: str,
    redis_url: str | None,
    pinning: servers.Pinning,
    progress: Progress,
    label: str,
) -> dict[str, Any]:
    room = "sale-" + secrets.token_hex(4)
    spec = replace(session.sale, duration_s=max(session.sale.duration_s,
                                                session.workload.duration_s + 120))  # fmt: skip
    sale = await start_sale(urls[0], secret, room, spec)
    work = replace(session.workload, room=room, sale_id=sale["sale_id"])
    rate = f"{work.rate:g}/s" if work.rate else "as fast as possible"
    progress(
        f"run {label}: {work.attempts} attempts by {work.users} users at {rate} (at most "
        f"{work.duration_s:g} s), sale of {spec.quantity} (limit {spec.per_user_limit}/user)"
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
    result.update({"label": label, "nodes": len(urls), "urls": urls, "pinning": pinning.describe()})
    result["sale"] = {"quantity": spec.quantity, "per_user_limit": spec.per_user_limit}
    lat = result["latency_ms"]
    result["target"] = {
        "per_s": TARGET_PER_S, "p99_ms": TARGET_P99_MS,
        "met": result["attempts"]["per_s"] >= TARGET_PER_S and lat["p99"] < TARGET_P99_MS
        and result["invariants"]["ok"],
    }  # fmt: skip
    if session.direct != "none" and redis_url is not None:
        result["direct"] = await _direct(session, redis_url, urls[0], secret, spec, pinning)
        per_s = result["direct"]["calls_per_s"]
        result["http_over_direct"] = (
            round(result["attempts"]["per_s"] / per_s, 3) if per_s else None
        )
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
    head = (f"{'run':>6} {'att/s':>8} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'max ms':>7}"
            f" {'reserved':>8} {'left':>6} {'books':>5} {'node%':>6} {'valkey%':>7} {'gen%':>5}"
            f" {'direct/s':>9} {'ratio':>6}")  # fmt: skip
    lines = [doc["pinning"]["note"], f"rate limits: {doc['rate_limits']}", "", head]
    for r in doc["runs"]:
        lat, inv, cpu = r["latency_ms"], r["invariants"], r["cpu_pct"]
        direct = r.get("direct", {})
        lines.append(
            f"{r['label']:>6} {r['attempts']['per_s']:>8.0f} {lat['p50']:>7} {lat['p95']:>7}"
            f" {lat['p99']:>7} {lat['max']:>7} {inv['sale']['reserved'] + inv['sale']['sold']:>8}"
            f" {inv['sale']['stock_left']:>6} {'ok' if inv['ok'] else 'BREACH':>5}"
            f" {cpu['nodes']:>6} {cpu['valkey'] or '-'!s:>7} {cpu['generator']:>5}"
            f" {direct.get('calls_per_s', '-')!s:>9} {r.get('http_over_direct', '-')!s:>6}"
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
        "att/s = HTTP answers per second between the first send and the last answer; latency is "
        "send to answer; ratio = att/s over direct calls/s; CPU% per core over the run."
    )
    return "\n".join(lines)
