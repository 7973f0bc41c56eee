"""The flash-sale benchmark coordinator: set up a sale, run the buyer fleet, merge, check.

After the crowd is done, the sale is checked against the store: units reserved (and sold) plus
stock left equal the quantity, as many `purchase.reserved` events as reservations, no buyer above
the per-user limit, and the HTTP answers agree with all of it. A breach fails the run.
"""

from __future__ import annotations

import json
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from commerce import keys
from commerce.config import CommerceConfig
from core.auth import TokenAuthority
from core.store import redis_client
from loadtest.benches.chat_session import create_room
from loadtest.fleet import buyer_worker
from loadtest.fleet.control import Fleet
from loadtest.plan.workloads import BuyerPlan, SaleWorkload
from loadtest.report import procfs
from loadtest.report.display import Monitor
from loadtest.report.histogram import Histogram, merge_timelines

START_DELAY_S = 1.0
TARGET_PER_S = 10_000.0
TARGET_P99_MS = 50.0

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class SaleSpec:
    """The sale the benchmark starts (POST /api/rooms/{room}/sales)."""

    quantity: int
    per_user_limit: int = 1
    duration_s: float = 600.0
    hold_s: float = 3600.0  # longer than the run: nothing expires before the check
    price_minor: int = 999

    def body(self, product_id: str) -> dict[str, Any]:
        return {
            "product_id": product_id, "quantity": self.quantity, "price_minor": self.price_minor,
            "duration_s": float(self.duration_s), "per_user_limit": self.per_user_limit,
            "hold_s": float(self.hold_s),
        }  # fmt: skip


def host_token(secret: str, room: str) -> str:
    return TokenAuthority(secret).issue(user="loadtest-host", role="host", rooms=[room])


async def start_sale(url: str, secret: str, room: str, spec: SaleSpec) -> dict[str, Any]:
    """Create the room (if needed), a product and a sale; the sale's JSON."""
    await create_room(url, secret, room, required=False)
    headers = {"Authorization": f"Bearer {host_token(secret, room)}"}
    product_id = "lt-" + secrets.token_hex(4)
    product = {"product_id": product_id, "title": "Load test", "price_minor": 1999,
               "currency": "EUR"}  # fmt: skip
    base = url.rstrip("/")
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout, headers=headers) as http:
        async with http.post(f"{base}/api/products", json=product) as resp:
            if resp.status != 201:
                raise RuntimeError(f"product: {resp.status} {await resp.text()}")
        async with http.post(f"{base}/api/rooms/{room}/sales", json=spec.body(product_id)) as resp:
            if resp.status != 201:
                raise RuntimeError(f"sale: {resp.status} {await resp.text()}")
            sale: dict[str, Any] = await resp.json()
    return sale


async def get_sale(url: str, room: str, sale_id: str) -> dict[str, Any]:
    timeout = aiohttp.ClientTimeout(total=10)
    async with (
        aiohttp.ClientSession(timeout=timeout) as http,
        http.get(f"{url.rstrip('/')}/api/rooms/{room}/sales/{sale_id}") as resp,
    ):
        resp.raise_for_status()
        sale: dict[str, Any] = await resp.json()
    return sale


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
        ready = await fleet.until(lambda: len(fleet.ready) == workers, 60, tick, every, stop)
        if not ready and not stopped():
            if monitor is None:
                raise RuntimeError("buyer workers were not ready within 60 s")
            monitor.request_stop(f"[{label}] buyer workers were not ready within 60 s")
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
    http_answers = sum(n for o, n in outcomes.items() if o[:1].isdigit())
    errors = answered - http_answers
    return {
        "workload": {
            "users": work.users,
            "attempts": work.attempts,
            "rate": work.rate,
            "duration_s": work.duration_s,
            "concurrency": work.concurrency,
            "quantity_per_attempt": work.quantity,
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
        "generator": {"send_lag_ms": send_lag.summary_ms()},
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
) -> dict[str, Any]:
    """The sale's books after the run: each check with its figures; `ok` only if all hold."""
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
        stream = events_stream or CommerceConfig().purchase_stream
        async with redis_client(redis_url) as redis:
            per_user = await redis.hgetall(keys.sale(sale_id, "users"))
            reservations = await redis.hlen(keys.sale(sale_id, "res"))
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
