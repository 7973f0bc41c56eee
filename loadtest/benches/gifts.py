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
import math
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from commerce import keys
from commerce.config import PURCHASE_STREAM
from commerce.scripts import LUA
from core.store import redis_client
from devtools.spawn import stop_all
from loadtest.benches.chat import run_chat
from loadtest.benches.sale import RAISED_LIMITS
from loadtest.clients.rest import HOST_USER, create_room
from loadtest.fleet import gifter_worker, servers
from loadtest.fleet.control import Fleet
from loadtest.plan.workloads import ChatWorkload, GifterPlan, GiftWorkload
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
    sent = result["attempts"]["sent"]
    if sent:
        # CPU time per gift sent (the retries' work included), in ms.
        result["cpu_ms_per_gift"] = {
            "nodes": round(result["cpu_pct"]["nodes"] / 100 * wall / sent * 1000, 3),
            "valkey": round(cpu["valkey"] / 100 * wall / sent * 1000, 3) if cpu.get("valkey")
            else None,
        }  # fmt: skip
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


# -- `live loadtest gifts` ----------------------------------------------------------------------

# The nodes started here: no per-user gift limit or Socket.IO request bucket caps the crowd (every
# gifter comes from one address and sends far faster than a person would).
RAISED_GIFT_LIMITS = {
    "LIVE_GIFTS_USER_RATE": "1000000",
    "LIVE_CHAT_SOCKET_RATE": "1000000",
    "LIVE_CHAT_SOCKET_BURST": "1000000",
    "LIVE_CHAT_USER_RATE": "1000000",
    "LIVE_CHAT_USER_BURST": "1000000",
}


@dataclass
class GiftSession:
    """What `live loadtest gifts` asks for: a burst (gifts/s on one node), the wallet script
    alone, and gift delivery to a crowd."""

    gifters: int = 1000
    attempts: int = 20_000
    concurrency: int = 256
    burst_s: float = 20.0  # the burst's upper bound
    gift_id: str = "rose"
    gift_price: int = 1
    viewers: int = 5000  # 0: no delivery run
    gift_rate: float = 4.0
    delivery_s: float = 10.0
    direct_calls: int = 50_000  # 0: no direct run
    workers: int = 1
    server_cpus: list[int] | None = None
    client_cpus: list[int] | None = None
    profile: Path | None = None  # py-spy's flame graph of the node during the burst


async def run_gift_session(session: GiftSession, progress: Progress = print) -> dict[str, Any]:
    """One node (and Valkey) pinned apart from the generator: the burst and its books, the
    wallet script called directly on the same Valkey, then gift delivery to the viewers."""
    pinning = servers.pinning_for(session.server_cpus, session.client_cpus)
    progress(pinning.describe())
    progress("the node runs with the gift and Socket.IO request limits raised: "
             + ", ".join(f"{k}={v}" for k, v in RAISED_GIFT_LIMITS.items()))  # fmt: skip
    doc: dict[str, Any] = {"benchmark": "gifts", "pinning": pinning.to_json(),
                           "started": time.time()}  # fmt: skip
    async with servers.store(None, None, pinning) as (redis_url, valkey_pid, work_dir):
        secret = secrets.token_urlsafe(32)
        node = await servers.start_python_node(
            "python-1", redis_url, secret, pinning.server_cpus, work_dir / "logs",
            {**RAISED_LIMITS, **RAISED_GIFT_LIMITS},
        )  # fmt: skip
        try:
            pids = {"python-1": node.pid}
            if valkey_pid is not None:
                pids["valkey"] = valkey_pid
            if session.attempts:
                doc["burst"] = await _burst(session, node.url, pids, secret, redis_url, pinning,
                                            progress)  # fmt: skip
            if session.direct_calls:
                progress(f"direct: wallet_apply.lua {session.direct_calls} gift calls from "
                         f"Python on CPU {pinning.client_cpus}")  # fmt: skip
                doc["direct"] = await run_direct_wallet(
                    redis_url, session.direct_calls, session.gift_price, pinning.client_cpus
                )
                burst = doc.get("burst")
                if burst is not None and doc["direct"]["calls_per_s"]:
                    doc["accepted_over_direct"] = round(
                        burst["attempts"]["accepted_per_s"] / doc["direct"]["calls_per_s"], 3
                    )
            if session.viewers:
                doc["delivery"] = await _delivery(session, node.url, pids, secret, pinning,
                                                  progress)  # fmt: skip
        finally:
            await stop_all([node])
    burst_ok = "burst" not in doc or doc["burst"]["invariants"]["ok"]
    delivery_ok = "delivery" not in doc or doc["delivery"]["gifts"]["missing"] == 0
    doc["ok"] = burst_ok and delivery_ok
    return doc


async def _burst(
    session: GiftSession, url: str, pids: dict[str, int], secret: str, redis_url: str,
    pinning: servers.Pinning, progress: Progress,
) -> dict[str, Any]:  # fmt: skip
    room = "gifts-" + secrets.token_hex(4)
    await create_room(url, secret, room, required=True)
    per_gifter = -(-session.attempts // session.gifters)
    work = GiftWorkload(
        gifters=session.gifters, attempts=session.attempts, rate=0.0,
        duration_s=session.burst_s, room=room, grant=per_gifter * session.gift_price,
        gift_id=session.gift_id, concurrency=session.concurrency,
    )  # fmt: skip
    progress(f"burst: {work.attempts} gifts ({work.gift_id}) by {work.gifters} gifters, "
             f"{work.concurrency} in flight, at most {work.duration_s:g} s")  # fmt: skip
    spy = _profile(session.profile, pids["python-1"], session.burst_s, pinning)
    try:
        result = await run_gifters(
            work, [url], secret, server_pids=pids, workers=session.workers,
            client_cpus=pinning.client_cpus, label="burst", progress=progress,
        )  # fmt: skip
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)  # py-spy writes its output on an interrupt
            await asyncio.to_thread(spy.wait, 30)
    result["invariants"] = await check_gift_invariants(
        redis_url,
        room,
        HOST_USER,
        result.pop("granted"),
        result.pop("accepted"),
        result.pop("users"),
    )
    if session.profile is not None:
        result["profile"] = str(session.profile)
    return result


def _profile(
    path: Path | None, pid: int, seconds: float, pinning: servers.Pinning
) -> subprocess.Popen[bytes] | None:
    """py-spy sampling the node (on the generator's CPUs) while the burst runs, if asked."""
    if path is None:
        return None
    spy = shutil.which("py-spy") or shutil.which("py-spy", path=os.path.dirname(sys.executable))
    if spy is None:
        raise RuntimeError("--profile needs py-spy (pip install py-spy)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = "raw" if path.suffix in (".txt", ".raw") else "flamegraph"
    pin = ["taskset", "-c", ",".join(map(str, pinning.client_cpus))] if pinning.client_cpus else []
    return subprocess.Popen(
        [*pin, spy, "record", "--nonblocking", "-p", str(pid), "-d", str(int(seconds) + 60),
         "-f", fmt, "-o", str(path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


async def _delivery(
    session: GiftSession, url: str, pids: dict[str, int], secret: str,
    pinning: servers.Pinning, progress: Progress,
) -> dict[str, Any]:  # fmt: skip
    room = "giftroom-" + secrets.token_hex(4)
    await create_room(url, secret, room, required=True)
    gifters = max(1, math.floor(session.gift_rate * session.delivery_s))
    work = ChatWorkload(
        viewers=session.viewers, rate=1.0, duration_s=session.delivery_s, room=room, senders=1,
        drain_s=5.0, warmup_s=0.0, gifters=gifters, gift_rate=session.gift_rate,
        gift_id=session.gift_id, gift_price=session.gift_price,
    )  # fmt: skip
    progress(f"delivery: {work.viewers} viewers, {gifters} gifts at {work.gift_rate:g}/s (one "
             f"per gifter) and 1 chat message/s for {work.duration_s:g} s")  # fmt: skip
    return await run_chat(
        work, [url], secret, server_pids=pids, workers=session.workers,
        client_cpus=pinning.client_cpus, label="delivery", progress=progress,
    )  # fmt: skip


async def run_direct_wallet(
    redis_url: str, calls: int, price: int, cpus: list[int], *, users: int = 1000,
    clients: int = 50, pipeline: int = 16,
) -> dict[str, Any]:  # fmt: skip
    """`wallet_apply.lua` in gift mode called directly (pipelined EVALSHA from this process,
    pinned to `cpus`): `users` wallets credited first, then `calls` gifts from them in turn."""
    if cpus:
        os.sched_setaffinity(0, cpus)
    tag = f"d{time.time_ns() % 10**9:x}"
    hist = Histogram()
    script = (LUA / "wallet_apply.lua").read_text()

    def args(mode: str, user: str, key: str, amount: int) -> list[Any]:
        fields = '{"room_id":"direct","show_id":"","gift_id":"rose","count":1}'
        return [*[keys.wallet(user, p) for p in ("w", "ledger", "idem", "pending")],
                PURCHASE_STREAM, keys.wallet(user, "rl"), mode, user, key, amount, fields, "0",
                f"{tag}-host", 3000, 1_000_000, 1000, 1_000_000, 5000]  # fmt: skip

    async with redis_client(redis_url) as redis:
        sha = await redis.script_load(script)
        per_user = -(-calls // users) * price
        async with redis.pipeline(transaction=False) as pipe:
            for u in range(users):
                pipe.evalsha(sha, 6, *args("credit", f"{tag}-u{u}", "grant", per_user))
            await pipe.execute()
        next_call = 0
        outcomes: Counter[str] = Counter()

        async def client() -> None:
            nonlocal next_call
            for _ in range(calls):  # bounded: each round takes at least one call
                if next_call >= calls:
                    return
                batch = range(next_call, min(calls, next_call + pipeline))
                next_call = batch.stop
                began = time.perf_counter_ns()
                async with redis.pipeline(transaction=False) as pipe:
                    for i in batch:
                        pipe.evalsha(sha, 6, *args("gift", f"{tag}-u{i % users}", f"k{i}", price))
                    replies = await pipe.execute()
                elapsed = (time.perf_counter_ns() - began) // 1000
                for reply in replies:
                    outcomes[_s(reply[0])] += 1
                    hist.record(elapsed)

        began = time.monotonic()
        await asyncio.gather(*(client() for _ in range(clients)))
        wall = time.monotonic() - began
    return {
        "calls": calls,
        "calls_per_s": round(calls / wall, 1),
        "outcomes": dict(outcomes),
        "latency_ms": hist.summary_ms(),
        "wall_s": round(wall, 3),
        "clients": clients,
        "pipeline": pipeline,
        "command": "pipelined EVALSHA of wallet_apply.lua (gift mode) from Python (redis-py)",
        "pinning": f"driver on CPU {cpus}",
    }


def table(doc: dict[str, Any]) -> str:
    """The burst, the direct script, the delivery run, for people."""
    lines = [doc["pinning"]["note"], ""]
    burst = doc.get("burst")
    if burst is not None:
        a, q, inv = burst["attempts"], burst["ack_ms"], burst["invariants"]
        bad = [n for n, c in inv["checks"].items() if not c["ok"]]
        lines += [
            f"burst: {a['sent']} gifts by {burst['gifters']['joined']} gifters in "
            f"{a['span_s']:.2f} s: {a['per_s']:.0f} attempts/s, {a['accepted_per_s']:.0f} "
            f"accepted/s; ack p50 {q['p50']} ms, p99 {q['p99']} ms",
            f"  outcomes {burst['outcomes']}; CPU % node {burst['cpu_pct']['nodes']}, valkey "
            f"{burst['cpu_pct']['valkey']}, generator {burst['cpu_pct']['generator']}; CPU ms "
            f"per gift {burst.get('cpu_ms_per_gift')}",
            "  books: " + ("all hold" if not bad else f"BREACHED {bad}") + f" {inv['books']}",
        ]
    direct = doc.get("direct")
    if direct is not None:
        lines.append(
            f"direct wallet script: {direct['calls_per_s']:.0f} calls/s (p50 "
            f"{direct['latency_ms']['p50']} ms per pipeline of {direct['pipeline']}); "
            f"accepted/s over it: {doc.get('accepted_over_direct', '-')}"
        )
    delivery = doc.get("delivery")
    if delivery is not None:
        g, d = delivery["gifts"], delivery["gifts"]["delivery_ms"]
        lines += [
            f"delivery: {delivery['connections']['joined']} viewers, {g['acked_ok']} gifts at "
            f"{g['rate']:g}/s: {g['delivered']} of {g['expected']} `gift` events delivered "
            f"(missing {g['missing']}); p50 {d['p50']} ms, p95 {d['p95']} ms, p99 {d['p99']} ms,"
            f" max {d['max']} ms",
            f"  gift ack p50 {g['ack_ms']['p50']} ms; sender lag p99 "
            f"{g['send_lag_ms']['p99']} ms; generator loop lag p99 "
            f"{delivery['generator']['loop_lag_ms']['p99']} ms; node CPU "
            f"{delivery['servers']['nodes_cpu_pct']} %",
        ]
    lines += ["", "attempts/s: gifts sent between the first send and the last ack; delivery: "
              "from the gift's scheduled send to the viewer's `gift` event."]  # fmt: skip
    return "\n".join(lines)
