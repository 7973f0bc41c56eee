"""A gifter worker process: its share of a crowd sending gifts over Socket.IO.

Speaks the `loadtest.fleet.control` protocol. Before `ready`: each of its gifters is granted
`grant` credits (`POST /api/wallets/{user}/credits` with an `orders` token and an
Idempotency-Key), connects to its node and joins the room. After `go`: the attempts (paced at
its share of the rate, or as fast as its share of the in-flight budget allows), each a `gift
{room, gift_id, count, key}` with a key of its own; an attempt whose acknowledgement never came
or that was refused with `store_unavailable` is asked again with the same key (a real client's
retry: the server answers the same entry, or makes the gift now).
`done` carries ack latencies, outcomes, the grants confirmed and every accepted entry.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import Counter
from multiprocessing.connection import Connection
from typing import Any

from core.auth import TokenAuthority
from core.limits import raise_open_files_limit
from loadtest.clients.rest import grant_credits
from loadtest.clients.sioclient import SioError, Viewer, open_viewer
from loadtest.fleet.control import Commands, worker_signals
from loadtest.plan.arrivals import TokenBucket
from loadtest.plan.workloads import NAMESPACE, GifterPlan, GiftWorkload
from loadtest.report.histogram import Histogram

GO_TIMEOUT_S = 600.0
PROGRESS_EVERY_S = 1.0
CONNECT_TIMEOUT_S = 15.0
RETRY_ROUNDS = 3
RETRIED = ("store_unavailable", "internal")  # refusals that do not say the gift did not happen


def main(plan: GifterPlan, conn: Connection) -> None:
    """Process entry point (multiprocessing `spawn`)."""
    import uvloop

    worker_signals()
    if plan.cpus:
        os.sched_setaffinity(0, plan.cpus)
    raise_open_files_limit()
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(GifterCrowd(plan, conn).run())


def _now_us() -> int:
    return time.time_ns() // 1000


class Gifters:
    """Grants, connects and fires one worker's gifts; usable in any loop."""

    def __init__(self, plan: GifterPlan) -> None:
        self.plan = plan
        self.work: GiftWorkload = plan.workload
        authority = TokenAuthority(plan.secret)
        ttl = int(self.work.duration_s) + 3600
        self.indices = list(plan.gifter_indices())
        self.users = [plan.user_id(i) for i in self.indices]
        self.tokens = [
            authority.issue(user=u, role="viewer", name=u, rooms=[self.work.room], ttl_s=ttl)
            for u in self.users
        ]
        self.viewers: list[Viewer | None] = [None] * len(self.users)
        self.granted: dict[str, int] = {}  # user -> credits confirmed by a 201
        self.errors: Counter[str] = Counter()  # setup: grants, connects, joins
        self.latency = Histogram()
        self.recent = Histogram()
        self.send_lag = Histogram()
        self.outcomes: Counter[str] = Counter()
        # "USER/ENTRY" (entry ids are per ledger) -> (user, amount, balance)
        self.accepted: dict[str, tuple[str, int, int]] = {}
        self.sent = 0
        self.answered = 0
        self.first_send_us = 0
        self.last_answer_us = 0
        self._unanswered: list[tuple[int, int]] = []  # (gifter slot, attempt k)
        self.recovered = 0
        self.dropped: Counter[str] = Counter()  # connections that ended

    # Sink of the gifters' sockets
    def chat(self, slot: int, seq: int, sent_us: int) -> None:
        pass

    def likes_total(self, total: int) -> None:
        pass

    def gift(self, slot: int, event: bytes) -> None:
        pass

    def lost(self, slot: int, reason: str) -> None:
        self.dropped[reason] += 1

    async def setup(self) -> None:
        """Grant every gifter its credits, then connect and join them at the connect rate."""
        await self._grant_all()
        bucket = TokenBucket(self.work.connect_rate / self.plan.workers)
        gate = asyncio.Semaphore(max(1, 200 // self.plan.workers))
        tasks = []
        for slot in range(len(self.users)):
            if not await bucket.take(CONNECT_TIMEOUT_S * 4):
                self.errors["connect_pacing_timeout"] += 1
                continue
            tasks.append(asyncio.create_task(self._join(slot, gate)))
        await asyncio.gather(*tasks)

    async def _grant_all(self) -> None:
        plan = self.plan
        granted, errors = await grant_credits(
            list(plan.targets), plan.secret, list(zip(self.users, self.indices, strict=True)),
            self.work.grant, plan.run_tag, timeout_s=self.work.timeout_s, attempts=RETRY_ROUNDS,
        )  # fmt: skip
        self.granted.update(granted)
        self.errors.update(errors)

    async def _join(self, slot: int, gate: asyncio.Semaphore) -> None:
        index = self.indices[slot]
        target = self.plan.targets[index % len(self.plan.targets)]
        async with gate:
            try:
                viewer = await open_viewer(
                    slot, target, NAMESPACE, {"token": self.tokens[slot]}, self, CONNECT_TIMEOUT_S
                )
            except SioError as exc:
                self.errors[exc.kind] += 1
                return
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT_S):
                    ack = await viewer.call("join", {"room": self.work.room})
            except (TimeoutError, SioError) as exc:
                self.errors["join_" + getattr(exc, "kind", "timeout")] += 1
                viewer.abort()
                return
        if not (isinstance(ack, dict) and ack.get("ok")):
            code = ack.get("error") if isinstance(ack, dict) else "bad_ack"
            self.errors[f"join_refused:{code}"] += 1
            viewer.close()
            return
        self.viewers[slot] = viewer

    @property
    def joined(self) -> int:
        return sum(1 for v in self.viewers if v is not None and not v.closed)

    async def fire(self, t0: float) -> None:
        """Every attempt of this worker from wall-clock `t0`, bounded by the duration."""
        work, plan = self.work, self.plan
        delay = t0 - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        attempts = plan.attempt_indices()
        deadline = t0 + work.duration_s
        gate = asyncio.Semaphore(max(1, work.concurrency // plan.workers))
        tasks: set[asyncio.Task[None]] = set()
        rate = work.rate / plan.workers if work.rate > 0 else 0.0
        n = len(self.users)
        for j, k in enumerate(attempts):
            if not n:
                break
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
            task = asyncio.create_task(self._attempt(j % n, k))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            task.add_done_callback(lambda _t: gate.release())
        if tasks:
            await asyncio.wait(tasks, timeout=work.timeout_s + 1)
        for _ in range(RETRY_ROUNDS):
            pending, self._unanswered = self._unanswered, []
            if not pending:
                break
            await asyncio.sleep(0.5)  # the store was slow: give it a moment
            await asyncio.gather(*(self._ask(slot, k, retry=True) for slot, k in pending))

    async def _attempt(self, slot: int, k: int) -> None:
        began = _now_us()
        if not self.first_send_us:
            self.first_send_us = began
        self.sent += 1
        outcome = await self._ask(slot, k, retry=False)
        done = _now_us()
        self.answered += 1
        self.last_answer_us = max(self.last_answer_us, done)
        if outcome in ("ok", "refused:insufficient_credits", "refused:rate_limited"):
            self.latency.record(done - began)
            self.recent.record(done - began)
        self.outcomes[outcome] += 1

    async def _ask(self, slot: int, k: int, *, retry: bool) -> str:
        work = self.work
        viewer = self.viewers[slot]
        if viewer is None or viewer.closed:
            return "gifter_unavailable"
        key = f"{self.plan.run_tag}-k{k}"
        payload = {"room": work.room, "gift_id": work.gift_id, "count": work.count, "key": key}
        try:
            async with asyncio.timeout(work.timeout_s):
                ack = await viewer.call("gift", payload)
        except TimeoutError:
            self._unanswered.append((slot, k))
            return "timeout"
        except SioError as exc:
            return "lost:" + exc.kind
        if retry:
            self.recovered += 1
        if not isinstance(ack, dict):
            return "bad_ack"
        if not ack.get("ok"):
            outcome = f"refused:{ack.get('error')}"
            if ack.get("error") in RETRIED:
                # The gift may have gone through before the node gave up on the store: ask
                # again with the same key, as a client told to retry does.
                self._unanswered.append((slot, k))
            if retry:
                self.outcomes["retry " + outcome] += 1
            return outcome
        user = self.users[slot]
        if ack.get("replayed") and not retry:
            return "ok replayed"
        self.accepted[f"{user}/{ack.get('entry_id')}"] = (
            user,
            int(ack["amount"]),
            int(ack["balance"]),
        )
        if retry:
            self.outcomes["retry ok"] += 1
        return "ok"

    def result(self) -> dict[str, Any]:
        return {
            "gifters": len(self.users),
            "users": self.users,
            "joined": self.joined,
            "granted": self.granted,
            "errors": dict(self.errors),
            "lost": dict(self.dropped),
            "latency": self.latency.to_wire(),
            "send_lag": self.send_lag.to_wire(),
            "outcomes": dict(self.outcomes),
            "accepted": self.accepted,
            "recovered": self.recovered,
            "sent": self.sent,
            "answered": self.answered,
            "first_send_us": self.first_send_us,
            "last_answer_us": self.last_answer_us,
        }

    async def close(self) -> None:
        for viewer in self.viewers:
            if viewer is not None:
                viewer.close()
        await asyncio.sleep(0.1)
        for viewer in self.viewers:
            if viewer is not None:
                viewer.abort()


class GifterCrowd:
    """The worker's main loop around `Gifters`."""

    def __init__(self, plan: GifterPlan, conn: Connection) -> None:
        self.conn = conn
        self.plan = plan
        self.gifters = Gifters(plan)
        self.phase = "setup"

    async def run(self) -> None:
        commands = Commands(self.conn)
        progress = asyncio.create_task(self._progress())
        try:
            if await commands.run_until_stopped(self.gifters.setup()):
                g = self.gifters
                self._send("ready", gifters=len(g.users), joined=g.joined, granted=len(g.granted))
                with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                    async with asyncio.timeout(GO_TIMEOUT_S):
                        t0 = await commands.go
                    self.phase = "run"
                    await commands.run_until_stopped(self.gifters.fire(t0))
            self.phase = "closing"
            self._send("done", partial=commands.stop.is_set(), **self.gifters.result())
        finally:
            commands.close()
            progress.cancel()
            await self.gifters.close()

    def _send(self, kind: str, **body: Any) -> None:
        self.conn.send({"kind": kind, "worker": self.plan.index, **body})

    async def _progress(self) -> None:
        g = self.gifters
        for _ in range(int(GO_TIMEOUT_S * 2 / PROGRESS_EVERY_S)):
            await asyncio.sleep(PROGRESS_EVERY_S)
            accepted = g.outcomes.get("ok", 0)
            errors = sum(n for o, n in g.outcomes.items() if not o.startswith(("ok", "refused")))
            self._send(
                "progress", phase=self.phase, joined=g.joined, sent=g.sent, answered=g.answered,
                accepted=accepted, errors=errors + sum(g.errors.values()),
                recent=g.recent.to_wire(),
            )  # fmt: skip
            g.recent = Histogram()
