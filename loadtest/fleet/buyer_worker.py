"""A buyer worker process: its share of a flash-sale crowd pressing Buy, over keep-alive pools
(`via` http) or over each buyer's Socket.IO connection, joined to the room (`via` socket: `buy`).

Speaks the `loadtest.fleet.control` protocol: `ready` once tokens and connection pools are set up,
then, after `go`, fires its attempts (paced at its share of the rate, or as fast as its share of the
in-flight budget allows) until they are all answered or the duration is up, and sends `done`
with latency histograms (overall and per second), outcomes by code and units per user.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections import Counter
from multiprocessing.connection import Connection
from typing import Any

from core.auth import TokenAuthority
from core.limits import raise_open_files_limit
from loadtest.clients.rawhttp import HttpError, Pool
from loadtest.clients.sioclient import SioError, Viewer, open_viewer
from loadtest.fleet.control import Commands, worker_signals
from loadtest.plan.workloads import BuyerPlan, SaleWorkload
from loadtest.report.histogram import Histogram, Timeline

GO_TIMEOUT_S = 600.0
PROGRESS_EVERY_S = 1.0
CONNECTS_AT_ONCE = 100  # socket buyers connecting and joining at a time
CONNECT_TIMEOUT_S = 20.0


def is_answer(outcome: str) -> bool:
    """An outcome the server answered: an HTTP status, or a Socket.IO acknowledgement."""
    return outcome[:1].isdigit() or outcome.startswith("ack ")


class _Sink:
    """What a buyer's socket receives besides acks is ignored; lost connections are counted."""

    def __init__(self) -> None:
        self.lost_count = 0

    def chat(self, slot: int, seq: int, sent_us: int) -> None:
        pass

    def lost(self, slot: int, reason: str) -> None:
        self.lost_count += 1

    def likes_total(self, total: int) -> None:
        pass

    def gift(self, slot: int, event: bytes) -> None:
        pass


def main(plan: BuyerPlan, conn: Connection) -> None:
    """Process entry point (multiprocessing `spawn`)."""
    import uvloop

    worker_signals()
    if plan.cpus:
        os.sched_setaffinity(0, plan.cpus)
    raise_open_files_limit()
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(BuyerCrowd(plan, conn).run())


def _now_us() -> int:
    return time.time_ns() // 1000


class Buyers:
    """Fires reservation attempts at one sale and records what came back; usable in any loop."""

    def __init__(self, plan: BuyerPlan) -> None:
        self.plan = plan
        self.work: SaleWorkload = plan.workload
        authority = TokenAuthority(plan.secret)
        ttl = int(self.work.duration_s) + 3600
        self.users = [plan.user_id(i) for i in plan.user_indices()]
        self.tokens = [
            "Bearer " + authority.issue(user=u, role="viewer", rooms=[self.work.room], ttl_s=ttl)
            for u in self.users
        ]
        self.latency = Histogram()
        self.recent = Histogram()  # since the last progress report
        self.reserved_at: list[tuple[int, int]] = []  # (answer time us, units) of each 201
        self.send_lag = Histogram()
        self.timeline = Timeline(int(self.work.duration_s) + 1)
        self.outcomes: Counter[str] = Counter()
        self.units: Counter[str] = Counter()  # units per user, from 201 answers
        self.reserved = 0  # 201 answers that were not replays
        self.sent = 0
        self.answered = 0
        self.first_send_us = 0
        self.last_answer_us = 0
        self._unanswered: list[tuple[int, int]] = []  # (j, k) of attempts with no HTTP answer
        self.recovered = 0  # of those, answered by a retry with the same Idempotency-Key
        # Lean keep-alive pools (`loadtest.clients.rawhttp`): aiohttp's client would cost the
        # generator about as much CPU per attempt as the node spends answering it.
        self._pools: list[Pool] = []
        self._body = json.dumps({"quantity": self.work.quantity}).encode()
        # via socket: one connection per buyer, joined to the room (buyer u on target u % n).
        self._sockets: list[Viewer] = []
        self._sink = _Sink()

    async def open(self) -> None:
        """One keep-alive pool per target, sized to this worker's share of the in-flight budget;
        via socket, each buyer's connection, joined to the room, instead."""
        if self.work.via == "socket":
            await self._open_sockets()
            return
        per_worker = max(1, self.work.concurrency // self.plan.workers)
        per_target = max(1, per_worker // len(self.plan.targets))
        self._pools = [Pool(target, per_target) for target in self.plan.targets]

    async def _open_sockets(self) -> None:
        gate = asyncio.Semaphore(CONNECTS_AT_ONCE)
        targets = self.plan.targets

        async def one(u: int) -> Viewer:
            async with gate:
                token = self.tokens[u].removeprefix("Bearer ")
                viewer = await open_viewer(
                    u, targets[u % len(targets)], "/live", {"token": token}, self._sink,
                    CONNECT_TIMEOUT_S,
                )  # fmt: skip
                ack = await asyncio.wait_for(
                    viewer.call("join", {"room": self.work.room}), CONNECT_TIMEOUT_S
                )
                if not (isinstance(ack, dict) and ack.get("ok")):
                    viewer.close()
                    raise SioError("join_refused", str(ack))
                return viewer

        self._sockets = list(await asyncio.gather(*(one(u) for u in range(len(self.users)))))

    async def close(self) -> None:
        for pool in self._pools:
            pool.close()
        for viewer in self._sockets:
            viewer.close()

    async def fire(self, t0: float) -> None:
        """Every attempt of this worker, starting at wall-clock `t0`, bounded by the duration."""
        work = self.work
        delay = t0 - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        attempts = self.plan.attempt_indices()
        deadline = t0 + work.duration_s
        budget = max(1, work.concurrency // self.plan.workers)
        gate = asyncio.Semaphore(budget)
        tasks: set[asyncio.Task[None]] = set()
        rate = work.rate / self.plan.workers if work.rate > 0 else 0.0
        for j, k in enumerate(attempts):
            if rate:
                due = t0 + j / rate
                wait = due - time.time()
                if wait > 0.0005:
                    await asyncio.sleep(wait)
            await gate.acquire()
            now = time.time()
            if now >= deadline:
                gate.release()
                break
            if rate:
                self.send_lag.record(int(max(0.0, now - due) * 1e6))
            task = asyncio.create_task(self._attempt(j, k, t0))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            task.add_done_callback(lambda _t: gate.release())
        if tasks:
            await asyncio.wait(tasks, timeout=work.timeout_s + 1)
        await self._retry_unanswered()

    async def _retry_unanswered(self, rounds: int = 3) -> None:
        """Ask again, with the same Idempotency-Key, about attempts whose answer never came.

        A timed-out request may still have reserved: a real client retries with its key and gets
        that reservation back (`replayed`), so the HTTP answers and the store agree again. Bounded:
        a few rounds of at most one timeout each.
        """
        for _ in range(rounds):
            pending, self._unanswered = self._unanswered, []
            if not pending:
                return
            await asyncio.gather(*(self._ask(j, k, retry=True) for j, k in pending))

    async def _attempt(self, j: int, k: int, t0: float) -> None:
        """Attempt `k` (globally; this worker's `j`-th): its users take turns."""
        began = _now_us()
        if not self.first_send_us:
            self.first_send_us = began
        self.sent += 1
        outcome = await self._ask(j, k, retry=False)
        done = _now_us()
        self.answered += 1
        self.last_answer_us = max(self.last_answer_us, done)
        self.latency.record(done - began)
        self.recent.record(done - began)
        self.timeline.record(int(began / 1e6 - t0), done - began, outcome)
        self.outcomes[outcome] += 1

    async def _ask(self, j: int, k: int, *, retry: bool) -> str:
        """Send attempt `k` as user `j % users`; its outcome. A reservation a retry brings back
        was never counted (its first answer was lost), so it counts now whether replayed or not.
        """
        plan, work = self.plan, self.work
        u = j % len(self.users)
        if self._sockets:
            return await self._buy(u, j, k, retry=retry)
        pool = self._pools[k % len(plan.targets)]
        path = f"/api/rooms/{work.room}/sales/{work.sale_id}/reservations"
        headers = {"Authorization": self.tokens[u], "Idempotency-Key": f"{plan.run_tag}-k{k}"}
        request = pool.build_post(path, self._body, headers)
        try:
            async with asyncio.timeout(work.timeout_s):
                status, raw = await pool.send(request)
            body = json.loads(raw) if raw else None
        except TimeoutError:
            self._unanswered.append((j, k))
            return "timeout"
        except (HttpError, OSError, ValueError) as exc:
            self._unanswered.append((j, k))
            return "error:" + type(exc).__name__
        if retry:
            self.recovered += 1
            self.outcomes[f"retry {status}"] += 1
        if status == 201 and isinstance(body, dict):
            if body.get("replayed") and not retry:
                return "201 replayed"
            units = int(body.get("quantity", 0))
            self.reserved += 1
            self.units[self.users[u]] += units
            self.reserved_at.append((_now_us(), units))
            return "201 reserved"
        code = body.get("error") if isinstance(body, dict) else None
        return f"{status} {code or '-'}"

    async def _buy(self, u: int, j: int, k: int, *, retry: bool) -> str:
        """`_ask` over user `u`'s socket: `buy`, acknowledged with the 201 fields or an error."""
        work = self.work
        body = {"room": work.room, "sale_id": work.sale_id, "quantity": work.quantity,
                "key": f"{self.plan.run_tag}-k{k}"}  # fmt: skip
        try:
            async with asyncio.timeout(work.timeout_s):
                ack = await self._sockets[u].call("buy", body)
        except TimeoutError:
            self._unanswered.append((j, k))
            return "timeout"
        except SioError as exc:
            self._unanswered.append((j, k))
            return "error:" + exc.kind
        if not isinstance(ack, dict):
            return "ack -"
        if ack.get("error") == "store_unavailable":
            # It may or may not have reserved: ask again with the same key, as a client does.
            self._unanswered.append((j, k))
        if retry:
            self.recovered += 1
            self.outcomes[f"retry ack {'ok' if ack.get('ok') else ack.get('error')}"] += 1
        if ack.get("ok"):
            if ack.get("replayed") and not retry:
                return "ack replayed"
            units = int(ack.get("quantity", 0))
            self.reserved += 1
            self.units[self.users[u]] += units
            self.reserved_at.append((_now_us(), units))
            return "ack reserved"
        return f"ack {ack.get('error') or '-'}"

    def result(self) -> dict[str, Any]:
        return {
            "latency": self.latency.to_wire(),
            "send_lag": self.send_lag.to_wire(),
            "timeline": self.timeline.to_wire(),
            "outcomes": dict(self.outcomes),
            "units": dict(self.units),
            "reserved_at": self.reserved_at,
            "reserved": self.reserved,
            "recovered": self.recovered,
            "sent": self.sent,
            "answered": self.answered,
            "first_send_us": self.first_send_us,
            "last_answer_us": self.last_answer_us,
            "sockets_lost": self._sink.lost_count,
        }


class BuyerCrowd:
    """The worker's main loop around `Buyers`."""

    def __init__(self, plan: BuyerPlan, conn: Connection) -> None:
        self.conn = conn
        self.plan = plan
        self.buyers = Buyers(plan)
        self.phase = "setup"

    async def run(self) -> None:
        commands = Commands(self.conn)
        progress = asyncio.create_task(self._progress())
        try:
            await self.buyers.open()
            self._send("ready", users=len(self.buyers.users))
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                async with asyncio.timeout(GO_TIMEOUT_S):
                    t0 = await commands.go
                self.phase = "run"
                await commands.run_until_stopped(self.buyers.fire(t0))
            self.phase = "closing"
            self._send("done", partial=commands.stop.is_set(), **self.buyers.result())
        finally:
            commands.close()
            progress.cancel()
            await self.buyers.close()

    def _send(self, kind: str, **body: Any) -> None:
        self.conn.send({"kind": kind, "worker": self.plan.index, **body})

    async def _progress(self) -> None:
        b = self.buyers
        for _ in range(int(GO_TIMEOUT_S * 2 / PROGRESS_EVERY_S)):
            await asyncio.sleep(PROGRESS_EVERY_S)
            errors = sum(n for o, n in b.outcomes.items() if not is_answer(o))
            self._send(
                "progress", phase=self.phase, sent=b.sent, answered=b.answered,
                reserved=b.reserved, errors=errors, recent=b.recent.to_wire(),
            )  # fmt: skip
            b.recent = Histogram()
