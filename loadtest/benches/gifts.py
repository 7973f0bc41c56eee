"""Gifts under load: the gifter driver, the books checked after a run, and `live loadtest gifts`.

The driver (`run_gifters`, also the scenario's gifters): worker processes
(`loadtest.fleet.gifter_worker`) grant each gifter its credits, connect and join, then send
their gifts over Socket.IO; their reports are merged. After the crowd is done the books are
read from the store and the purchase stream (`collect_books`) and judged (`judge`):

- the sum of the gifters' debits equals the host's credits plus the platform's share (from the
  host's earning entries, and again from the `gift.sent` events);
- no balance below zero (the wallets' balances and every ledger entry's balance after);
- one event per ledger entry: as many `gift.sent` events as gift entries as gifts acknowledged
  `ok`, the same entry ids in all three, and as many `wallet.credited` as grants; no event id
  twice;
- each gifter's balance is its grant minus what it spent (by its ledger and by its acks).

A breach fails the run.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from commerce import keys
from commerce.config import PURCHASE_STREAM
from core.store import redis_client
from loadtest.fleet import gifter_worker
from loadtest.fleet.control import Fleet
from loadtest.plan.workloads import GifterPlan, GiftWorkload
from loadtest.report import procfs
from loadtest.report.display import Monitor, Progress
from loadtest.report.histogram import Histogram

START_DELAY_S = 1.0
SETTLE_WAIT_S = 15.0  # a dead request's host leg waits for its lease (5 s) and a sweep


# -- driver -------------------------------------------------------------------------------------


async def run_gifters(
    work: GiftWorkload,
    urls: list[str],
    secret: str,
    *,
    server_pids: dict[str, int],
    workers: int = 1,
    client_cpus: list[int] | None = None,
    label: str = "gifts",
    progress: Progress = print,
    monitor: Monitor | None = None,
) -> dict[str, Any]:
    """Grant, connect and fire the workload at `urls` from `workers` processes; merged figures
    (`accepted`: "USER/ENTRY" -> (user, amount, balance) of every gift acknowledged `ok`)."""
    work.validate()
    workers = max(1, min(workers, work.gifters))
    tag = f"lt{time.time_ns() % 10**9:x}"
    cpus = tuple(client_cpus or ())
    plans = [GifterPlan(i, workers, tuple(urls), secret, work, cpus, tag) for i in range(workers)]
    fleet = Fleet.spawn(gifter_worker.main, plans)
    stop = monitor.stop if monitor is not None else None
    every = 0.5 if monitor is not None else 2.0

    def tick() -> None:
        recent = Histogram()
        for p in fleet.progress.values():
            if "recent" in p:
                recent.merge(Histogram.from_wire(p["recent"]))
        q = recent.summary_ms()
        line = (
            f"joined {fleet.total('joined')} sent {fleet.total('sent')}"
            f" accepted {fleet.total('accepted')} p50 {q['p50']:.1f} ms p99 {q['p99']:.1f} ms"
            f" errors {fleet.total('errors')}"
        )
        if monitor is None:
            progress(f"  [{label}] {line}")
            return
        monitor.status(label, line)
        if recent.count:
            monitor.live({f"gifts.ack.{k}": float(q[k]) for k in ("p50", "p95", "p99")})

    def stopped() -> bool:
        return stop is not None and stop.is_set()

    pids = {**server_pids, **fleet.pids}
    start = end = {n: procfs.sample(p) for n, p in pids.items()}
    t0 = time.time()
    setup_s = work.gifters / work.connect_rate * 3 + 60
    try:
        ready = await fleet.until(lambda: len(fleet.ready) == workers, setup_s, tick, every, stop)
        if not ready and not stopped():
            reason = f"[{label}] gifter workers were not ready within {setup_s:.0f} s"
            if monitor is None:
                raise RuntimeError(reason)
            monitor.request_stop(reason)
        if not stopped():
            t0 = time.time() + START_DELAY_S
            fleet.broadcast({"kind": "go", "t0": t0})
            await fleet.until(lambda: False, max(0.0, t0 - time.time()), tick, every, stop)
            start = {n: procfs.sample(p) for n, p in pids.items()}
        budget = work.duration_s + work.timeout_s * (gifter_worker.RETRY_ROUNDS + 1) + 30
        done = await fleet.until(lambda: len(fleet.done) == workers, budget, tick, every, stop)
        if not done and not stopped():
            reason = f"[{label}] gifter workers did not report within {budget:.0f} s"
            if monitor is None:
                raise RuntimeError(reason)
            monitor.request_stop(reason)
        if len(fleet.done) < workers:
            fleet.broadcast({"kind": "stop"})
            await fleet.until(lambda: len(fleet.done) + len(fleet.dead) >= workers, 10.0)
        end = {n: procfs.sample(p) for n, p in pids.items()}
        wall = max(1e-3, time.time() - t0)
    finally:
        await fleet.reap()
    result = merge(work, list(fleet.done.values()))
    result["partial"] = len(fleet.done) < workers or any(
        p.get("partial") for p in fleet.done.values()
    )
    cpu = {n: procfs.cpu_percent(start.get(n), end.get(n), wall) for n in pids}
    result["cpu_pct"] = {
        "nodes": round(sum(v for n, v in cpu.items() if n in server_pids and n != "valkey"), 1),
        "valkey": cpu.get("valkey"),
        "generator": round(sum(v for n, v in cpu.items() if n.startswith("worker-")), 1),
    }
    result["generator"]["workers"] = workers
    return result


def merge(work: GiftWorkload, parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Add the workers' reports together."""
    latency, send_lag = Histogram(), Histogram()
    outcomes: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    granted: dict[str, int] = {}
    users: list[str] = []
    accepted: dict[str, list[Any]] = {}
    for part in parts:
        latency.merge(Histogram.from_wire(part["latency"]))
        send_lag.merge(Histogram.from_wire(part["send_lag"]))
        outcomes.update(part["outcomes"])
        errors.update(part["errors"])
        errors.update({f"lost:{k}": n for k, n in part["lost"].items()})
        granted.update(part["granted"])
        users.extend(part["users"])
        accepted.update({k: list(v) for k, v in part["accepted"].items()})
    sent = sum(p["sent"] for p in parts)
    first = min((p["first_send_us"] for p in parts if p["first_send_us"]), default=0)
    last = max((p["last_answer_us"] for p in parts), default=0)
    span_s = (last - first) / 1e6 if first and last > first else 0.0
    ok = outcomes.get("ok", 0)
    answered = sum(n for o, n in outcomes.items() if o.startswith(("ok", "refused")))
    return {
        "workload": {
            "gifters": work.gifters,
            "attempts": work.attempts,
            "rate": work.rate,
            "duration_s": work.duration_s,
            "grant": work.grant,
            "gift_id": work.gift_id,
            "count": work.count,
            "concurrency": work.concurrency,
            "room": work.room,
        },
        "gifters": {
            "granted": len(granted),
            "joined": sum(p["joined"] for p in parts),
        },
        "attempts": {
            "sent": sent,
            "answered": answered,
            "accepted": len(accepted),
            "span_s": round(span_s, 3),
            "per_s": round(sent / span_s, 1) if span_s else 0.0,
            "accepted_per_s": round(ok / span_s, 1) if span_s else 0.0,
            "recovered_by_retry": sum(p["recovered"] for p in parts),
        },
        "outcomes": dict(sorted(outcomes.items())),
        "errors": dict(sorted(errors.items())),
        "ack_ms": latency.summary_ms(),
        "users": users,
        "granted": granted,
        "accepted": accepted,
        "generator": {"send_lag_ms": send_lag.summary_ms()},
    }


# -- the books ----------------------------------------------------------------------------------


@dataclass
class Books:
    """What the store and the stream say about a run's gifters, as `judge` reads it."""

    room: str
    host: str
    balances: dict[str, int] = field(default_factory=dict)  # user -> balance
    ledgers: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # user -> entries
    earnings: list[dict[str, Any]] = field(default_factory=list)  # the host's, for this room
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (type, data)
    unsettled: int = 0  # pending settlements still left when read


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def collect_books(
    redis_url: str, room: str, host: str, users: list[str], *, cluster: bool = False,
    stream: str = PURCHASE_STREAM, settle_wait_s: float = SETTLE_WAIT_S,
) -> Books:  # fmt: skip
    """Read the gifters' wallets and ledgers, the host's earnings from `room` and the purchase
    stream's events of these users, once nothing is left pending (or `settle_wait_s` passed)."""
    books = Books(room, host)
    wanted = set(users)
    async with redis_client(redis_url, cluster=cluster) as redis:
        deadline = time.monotonic() + settle_wait_s
        while True:
            async with redis.pipeline(transaction=False) as pipe:
                for user in users:
                    pipe.hlen(keys.wallet(user, "pending"))
                books.unsettled = sum(await pipe.execute())
            if not books.unsettled or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.1)
        async with redis.pipeline(transaction=False) as pipe:
            for user in users:
                pipe.hget(keys.wallet(user, "w"), "balance")
                pipe.xrange(keys.wallet(user, "ledger"))
            rows = await pipe.execute()
        for i, user in enumerate(users):
            books.balances[user] = int(rows[2 * i] or 0)
            books.ledgers[user] = [
                {**json.loads(f[b"e"]), "entry_id": _s(entry_id)} for entry_id, f in rows[2 * i + 1]
            ]
        for entry_id, f in await redis.xrange(keys.wallet(host, "ledger")):
            e = json.loads(f[b"e"])
            if e.get("kind") == "earning" and e.get("room_id") == room:
                books.earnings.append({**e, "entry_id": _s(entry_id)})
        cursor = "-"
        for _ in range(100_000):  # bounded: 1,000 entries a page
            page = await redis.xrange(stream, min=cursor, max="+", count=1000)
            for _, f in page:
                etype = _s(f.get(b"type", b""))
                if etype not in ("gift.sent", "wallet.credited", "wallet.refunded"):
                    continue
                data = json.loads(f[b"data"])
                if data.get("user_id") in wanted:
                    books.events.append((etype, data))
            if len(page) < 1000:
                break
            cursor = "(" + _s(page[-1][0])
    return books


def judge(books: Books, granted: dict[str, int], accepted: dict[str, list[Any]]) -> dict[str, Any]:
    """Each invariant with its figures; `ok` only if all hold. `granted`: user -> credits the
    clients saw granted (201); `accepted`: "USER/ENTRY" -> (user, amount, balance) of their `ok`
    gift acknowledgements (entry ids are per ledger: two users' may be equal)."""
    checks: dict[str, dict[str, Any]] = {}

    def check(name: str, ok: bool, **figures: Any) -> None:
        checks[name] = {"ok": bool(ok), **figures}

    gifts = [e for entries in books.ledgers.values() for e in entries if e.get("kind") == "gift"]
    credits = [
        e for entries in books.ledgers.values() for e in entries if e.get("kind") == "credit"
    ]
    other = [e for entries in books.ledgers.values() for e in entries
             if e.get("kind") not in ("gift", "credit")]  # fmt: skip
    debits = -sum(int(e["amount"]) for e in gifts)
    host = sum(int(e["amount"]) for e in books.earnings)
    platform = sum(int(e["platform_amount"]) for e in books.earnings)
    gift_events = [d for t, d in books.events if t == "gift.sent"]
    credit_events = [d for t, d in books.events if t == "wallet.credited"]
    by_events = sum(int(d["host_amount"]) + int(d["platform_amount"]) for d in gift_events)
    check("debits_equal_host_credits_plus_platform_share",
          debits == host + platform == by_events and not books.unsettled,
          debits=debits, host_credits=host, platform_share=platform, by_events=by_events,
          unsettled=books.unsettled)  # fmt: skip
    lowest_balance = min(books.balances.values(), default=0)
    lowest_entry = min((int(e["balance"]) for es in books.ledgers.values() for e in es),
                       default=0)  # fmt: skip
    check("no_balance_below_zero", lowest_balance >= 0 and lowest_entry >= 0,
          lowest_balance=lowest_balance, lowest_entry_balance=lowest_entry)  # fmt: skip
    ledger_ids = {f"{e['user_id']}/{e['entry_id']}" for e in gifts}
    event_ids = {f"{d.get('user_id')}/{d.get('entry_id')}" for d in gift_events}
    acked_ids = set(accepted)
    earned_ids = {str(e.get("source", "")) for e in books.earnings}
    check("one_gift_event_per_ledger_entry_and_ack",
          len(gift_events) == len(gifts) == len(accepted)
          and ledger_ids == event_ids == acked_ids == earned_ids,
          events=len(gift_events), ledger_entries=len(gifts), acked_ok=len(accepted),
          host_earnings=len(books.earnings),
          not_in_events=len(ledger_ids - event_ids), not_acked=len(ledger_ids - acked_ids),
          acked_not_in_ledger=len(acked_ids - ledger_ids))  # fmt: skip
    check("one_credit_event_per_grant",
          len(credit_events) == len(credits) == len(granted) and not other,
          events=len(credit_events), ledger_entries=len(credits), granted=len(granted),
          other_entries=len(other))  # fmt: skip
    all_ids = [str(d.get("event_id")) for _, d in books.events]
    check("no_duplicate_events", len(all_ids) == len(set(all_ids)),
          events=len(all_ids), distinct=len(set(all_ids)))  # fmt: skip
    spent_ledger: Counter[str] = Counter()
    for e in gifts:
        spent_ledger[str(e["user_id"])] += -int(e["amount"])
    spent_acked: Counter[str] = Counter()
    for user, amount, _balance in accepted.values():
        spent_acked[str(user)] += int(amount)
    wrong = [u for u, balance in books.balances.items()
             if balance != granted.get(u, 0) - spent_ledger[u]
             or spent_ledger[u] != spent_acked[u]]  # fmt: skip
    check("balances_equal_grants_minus_spent", not wrong,
          users=len(books.balances), wrong=len(wrong), example=wrong[:3],
          granted=sum(granted.values()), spent=sum(spent_ledger.values()),
          balances=sum(books.balances.values()))  # fmt: skip
    return {
        "ok": all(c["ok"] for c in checks.values()),
        "checks": checks,
        "books": {
            "gifts": len(gifts),
            "debits": debits,
            "host_credits": host,
            "platform_share": platform,
            "events": len(books.events),
        },
    }


async def check_gift_invariants(
    redis_url: str, room: str, host: str, granted: dict[str, int],
    accepted: dict[str, list[Any]], users: list[str], *, cluster: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """The books of a run's gifters in the store at `redis_url`, judged."""
    books = await collect_books(redis_url, room, host, users, cluster=cluster)
    return judge(books, granted, accepted)
