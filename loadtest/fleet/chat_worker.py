"""A load-generator worker process: its share of the crowd as coroutines on one event loop.

The coordinator hands each worker a `WorkerPlan` and talks to it over a pipe:
worker -> `progress` (about once a second), `ready` (crowd connected and joined);
coordinator -> `go` (a wall-clock start shared by every worker) or `stop`;
worker -> `done` (histograms as bucket counts, per-message delivery counts, errors).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import time
from collections import Counter
from functools import partial
from multiprocessing.connection import Connection
from typing import Any

from core.auth import TokenAuthority
from core.limits import raise_open_files_limit
from loadtest.clients.rest import grant_credits
from loadtest.clients.sioclient import SioError, Viewer, chat_text, open_viewer
from loadtest.fleet.control import Commands, worker_signals
from loadtest.plan.arrivals import TokenBucket
from loadtest.plan.workloads import NAMESPACE, WorkerPlan
from loadtest.report.histogram import Histogram, Timeline

GO_TIMEOUT_S = 600.0
_SENDER_MARK = b'"sender":{"id":"'
PROGRESS_EVERY_S = 1.0
LAG_TICK_S = 0.05


def main(plan: WorkerPlan, conn: Connection) -> None:
    """Process entry point (multiprocessing `spawn`)."""
    import uvloop

    worker_signals()
    if plan.cpus:
        os.sched_setaffinity(0, plan.cpus)
    raise_open_files_limit()
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(ChatCrowd(plan, conn).run())


def _now_us() -> int:
    return time.time_ns() // 1000


class ChatCrowd:
    """The viewers of one worker; also the `Sink` they all report deliveries to."""

    def __init__(self, plan: WorkerPlan, conn: Connection) -> None:
        self.plan = plan
        self.conn = conn
        self.work = plan.workload
        self.m = plan.workload.messages
        self.indices = list(plan.viewer_indices())
        n = len(self.indices)
        self.viewers: list[Viewer | None] = [None] * n
        self.joined = bytearray(n)
        self.per_viewer = [0] * n
        # The first message each viewer is owed: 0 for a closed crowd, the first one sent after
        # its join for a viewer that arrived during the run.
        self.first_seq = [self.m if self.work.arrives_open(i) else 0 for i in self.indices]
        self.attempted = 0
        self.early = 0  # messages sent before a late viewer joined that still reached it
        self.recent = Histogram()  # deliveries since the last progress report
        self.like_delay = Histogram()
        self.recent_likes = Histogram()
        self.like_sent_us: list[int] = []
        self.likes_confirmed = 0
        self.joins_per_s = [0] * (int(self.work.duration_s + self.work.drain_s) + 2)
        # Joins before the start, by second since this worker began joining (the closed ramp).
        self.ramp_per_s: list[int] = []
        self.ramp_start = time.time()
        self.arrived = 0
        self.commands: Commands | None = None
        self.authority = TokenAuthority(plan.secret)
        self.bitmaps = [bytearray((self.m + 7) // 8) for _ in range(n)]
        self.seq_counts = [0] * self.m
        self.latency = Histogram()
        self.region = [plan.region_of(i) for i in self.indices]
        self.region_latency = {r: Histogram() for r in set(self.region)}
        self.connect_hist = Histogram()
        self.join_hist = Histogram()
        self.ack_hist = Histogram()
        self.lag_hist = Histogram()
        self.send_lag_hist = Histogram()
        self.timeline = Timeline(int(self.work.duration_s + self.work.drain_s) + 1)
        self.t0 = 0.0
        self.likes = 0
        self.errors: Counter[str] = Counter()
        self.acks: dict[int, str] = {}
        self.received = 0
        self.duplicates = 0
        self.foreign = 0
        self.sent = 0
        self.first_delivery_us = 0
        self.last_delivery_us = 0
        self.phase = "connect"
        self._stop = asyncio.Event()
        # Gift delivery (`ChatWorkload.gifters`): per viewer, the gifts it got (a bit each).
        self.gift_seen = [bytearray((self.work.gifts + 7) // 8) for _ in range(n)]
        self.gift_hist = Histogram()  # the gift's scheduled send to its `gift` event
        self.gift_ack_hist = Histogram()
        self.gift_send_lag = Histogram()
        self.gift_acks: dict[int, str] = {}  # n -> outcome
        self.gifts_received = 0
        self.gift_events = 0  # `gift` events of any sender (combos of others, repeats)
        self.granted = 0
        self._tag = plan.run_tag.encode()

    # Sink
    def chat(self, slot: int, seq: int, sent_us: int) -> None:
        now = _now_us()
        if seq >= self.m:
            self.foreign += 1
            return
        if seq < self.first_seq[slot]:
            self.early += 1
            return
        bitmap = self.bitmaps[slot]
        byte, bit = seq >> 3, 1 << (seq & 7)
        if bitmap[byte] & bit:
            self.duplicates += 1
            return
        bitmap[byte] |= bit
        self.seq_counts[seq] += 1
        self.per_viewer[slot] += 1
        self.received += 1
        self.latency.record(now - sent_us)
        self.region_latency[self.region[slot]].record(now - sent_us)
        self.recent.record(now - sent_us)
        self.timeline.record(int(sent_us / 1e6 - self.t0), now - sent_us, "delivered")
        if not self.first_delivery_us:
            self.first_delivery_us = now
        self.last_delivery_us = now

    def gift(self, slot: int, event: bytes) -> None:
        """A `gift` event: gift `n` (its sender is viewer `first + n`) measured from its due."""
        now = _now_us()
        self.gift_events += 1
        work = self.work
        if not self.t0 or not work.gifts:
            return
        # The sender's id by a byte search, not a JSON parse: thousands of viewers per worker
        # get each event at once, and the time to parse them all would count as delivery time.
        i = event.find(_SENDER_MARK)
        j = event.find(b'"', i + len(_SENDER_MARK)) if i >= 0 else -1
        tag, _, digits = event[i + len(_SENDER_MARK) : j].rpartition(b"-")
        if j < 0 or tag != self._tag or not digits.isdigit():
            return
        n = work.gifter_of(int(digits))
        if n is None:
            return
        seen = self.gift_seen[slot]
        if seen[n >> 3] & (1 << (n & 7)):
            return
        seen[n >> 3] |= 1 << (n & 7)
        self.gifts_received += 1
        self.gift_hist.record(now - int((self.t0 + n / work.gift_rate) * 1e6))

    def lost(self, slot: int, reason: str) -> None:
        self.errors[f"lost_in_{self.phase}:{reason}"] += 1

    def likes_total(self, total: int) -> None:
        """A room `likes` total: every like of ours up to `total` is now counted in it."""
        now = _now_us()
        sent = self.like_sent_us
        for _ in range(len(sent)):
            if self.likes_confirmed >= min(total, len(sent)):
                break
            delay = now - sent[self.likes_confirmed]
            self.like_delay.record(delay)
            self.recent_likes.record(delay)
            self.likes_confirmed += 1

    # Phases
    async def run(self) -> None:
        self.commands = commands = Commands(self.conn)
        background = [
            asyncio.create_task(self._progress(), name="progress"),
            asyncio.create_task(self._lag_monitor(), name="lag"),
        ]
        try:
            await self._grant()
            early = [(s, i) for s, i in enumerate(self.indices) if not self.work.arrives_open(i)]
            finished = await commands.run_until_stopped(self._connect_all(early))
            self._send("ready", **self._connect_report())
            if finished:
                with contextlib.suppress(asyncio.CancelledError):
                    async with asyncio.timeout(GO_TIMEOUT_S):
                        t0 = await commands.go
                    self.phase = "run"
                    await commands.run_until_stopped(self._chat(t0))
            self.phase = "closing"
            self._send("done", partial=commands.stop.is_set(), **self._result())
        finally:
            commands.close()
            self._stop.set()
            for task in background:
                task.cancel()
            await self._close_all()

    async def _grant(self) -> None:
        """Each of this worker's gifters gets one gift's worth of credits."""
        work, plan = self.work, self.plan
        mine = [(f"{plan.run_tag}-{i}", i) for i in self.indices if work.gifter_of(i) is not None]
        if not mine:
            return
        granted, errors = await grant_credits(
            list(plan.targets), plan.secret, mine, work.gift_price, plan.run_tag
        )
        self.granted = len(granted)
        self.errors.update(errors)

    async def _connect_all(self, slots: list[tuple[int, int]]) -> None:
        """Join `slots` (slot, viewer index) before the start, paced at this worker's share."""
        work = self.work
        self.ramp_start = time.time()
        bucket = TokenBucket(work.connect_rate / self.plan.workers)
        gate = asyncio.Semaphore(max(1, work.connect_concurrency // self.plan.workers))
        tasks = []
        for slot, index in slots:
            if not await bucket.take(work.connect_timeout_s * 4):
                self.errors["join_pacing_timeout"] += 1
                continue
            tasks.append(asyncio.create_task(self._join(slot, index, gate)))
        await asyncio.gather(*tasks)

    async def _arrive(self, t0: float) -> None:
        """Open model: the late viewers of this worker arrive at its share of the steps' rates."""
        work = self.work
        late = [(s, i) for s, i in enumerate(self.indices) if work.arrives_open(i)]
        if not late:
            return
        share = self.plan.workers
        bucket = TokenBucket(max(work.arrivals.rate_at(0) / share, 1e-9))
        gate = asyncio.Semaphore(max(1, work.connect_concurrency // share))
        tasks: list[asyncio.Task[None]] = []
        end = t0 + work.duration_s
        for slot, index in late:
            for _ in range(int(work.duration_s / 0.05) + 1):
                now = time.time()
                if now >= end:
                    break
                rate = work.arrivals.rate_at(now - t0) / share
                if rate > 0:
                    bucket.set_rate(rate)
                    if await bucket.take(min(0.25, end - now)):
                        break
                else:
                    await asyncio.sleep(min(0.05, end - now))
            else:
                break
            if time.time() >= end:
                break
            self.arrived += 1
            tasks.append(asyncio.create_task(self._join(slot, index, gate)))
        await asyncio.gather(*tasks)

    async def _join(self, slot: int, index: int, gate: asyncio.Semaphore) -> None:
        plan, work = self.plan, self.work
        self.attempted += 1
        role = work.sender_role if index < work.senders else "viewer"
        token = self.authority.issue(
            user=f"{plan.run_tag}-{index}", role=role, name=f"Viewer {index}",
            rooms=[work.room], ttl_s=int(work.duration_s + work.drain_s) + 3600,
        )  # fmt: skip
        async with gate:
            began = time.perf_counter()
            try:
                viewer = await open_viewer(
                    slot, plan.target_of(index), NAMESPACE, {"token": token}, self,
                    work.connect_timeout_s,
                )  # fmt: skip
            except SioError as exc:
                self.errors[exc.kind] += 1
                return
            self.connect_hist.record(int((time.perf_counter() - began) * 1e6))
            self.viewers[slot] = viewer
            began = time.perf_counter()
            try:
                async with asyncio.timeout(work.connect_timeout_s):
                    ack = await viewer.call("join", {"room": work.room})
            except TimeoutError:
                self.errors["join_timeout"] += 1
                return
            except SioError as exc:
                self.errors["join_" + exc.kind] += 1
                return
        if not (isinstance(ack, dict) and ack.get("ok")):
            code = ack.get("error") if isinstance(ack, dict) else "bad_ack"
            self.errors[f"join_refused:{code}"] += 1
            return
        self.join_hist.record(int((time.perf_counter() - began) * 1e6))
        if self.t0:
            # Owed every message sent after the join was acknowledged.
            owed_from = math.ceil((time.time() - self.t0) * work.rate)
            self.first_seq[slot] = min(self.m, max(0, owed_from))
            second = int(time.time() - self.t0)
            self.joins_per_s[min(max(second, 0), len(self.joins_per_s) - 1)] += 1
        else:
            ramp = min(int(time.time() - self.ramp_start), 3600)
            self.ramp_per_s.extend([0] * (ramp + 1 - len(self.ramp_per_s)))
            self.ramp_per_s[ramp] += 1
        self.joined[slot] = 1

    async def _chat(self, t0: float) -> None:
        work = self.work
        self.t0 = t0
        liking = asyncio.create_task(self._like(t0)) if work.likers and work.like_rate else None
        arriving = asyncio.create_task(self._arrive(t0))
        gifting = asyncio.create_task(self._gifts(t0)) if work.gifts else None
        slot_of = {index: slot for slot, index in enumerate(self.indices) if index < work.senders}
        mine = [k for k in range(self.m) if work.sender_of(k) in slot_of]
        await self._warm_up(t0 - work.warmup_s, slot_of)
        for seq in mine:
            due = t0 + work.send_offset_s(seq)
            delay = due - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            slot = slot_of[work.sender_of(seq)]
            viewer = self.viewers[slot]
            if viewer is None or not self.joined[slot] or viewer.closed:
                self.acks[seq] = "sender_unavailable"
                continue
            sent_us = _now_us()
            self.send_lag_hist.record(max(0, sent_us - int(due * 1e6)))
            future = viewer.call("chat", {"room": work.room, "text": chat_text(seq, sent_us)})
            future.add_done_callback(partial(self._acked, seq, sent_us))
            self.sent += 1
        # Drain: wait until every joined viewer has every message, or the drain time is up.
        deadline = max(time.time(), t0 + work.duration_s) + work.drain_s
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, deadline - time.time())):
                await arriving
        for _ in range(int((deadline - time.time()) / 0.05) + 1):
            pairs = zip(self.first_seq, self.joined, strict=True)
            complete = sum(self.m - f for f, j in pairs if j)
            likes_in = self.likes_confirmed >= len(self.like_sent_us)
            gifts_in = gifting is None or (
                gifting.done() and self.gifts_received >= self._gifts_owed()
            )
            if (
                self.received >= complete and len(self.acks) >= len(mine) and likes_in
                and gifts_in
            ):  # fmt: skip
                break
            await asyncio.sleep(0.05)
        for seq in mine:
            self.acks.setdefault(seq, "ack_timeout")
        arriving.cancel()
        if liking is not None:
            liking.cancel()
        if gifting is not None:
            gifting.cancel()

    def _gifts_owed(self) -> int:
        """Deliveries this worker waits for: every gift to each of its joined viewers (a gift
        that failed, here or in another worker, makes it wait until the drain time is up)."""
        return sum(self.joined) * self.work.gifts

    async def _gifts(self, t0: float) -> None:
        """This worker's gifters each send their one gift at its due time."""
        work = self.work
        plan = self.plan
        mine = sorted(
            (n, slot) for slot, index in enumerate(self.indices)
            if (n := work.gifter_of(index)) is not None
        )  # fmt: skip
        pending = []
        for n, slot in mine:
            due = t0 + n / work.gift_rate
            delay = due - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            viewer = self.viewers[slot]
            if viewer is None or not self.joined[slot] or viewer.closed:
                self.gift_acks[n] = "gifter_unavailable"
                continue
            sent_us = _now_us()
            self.gift_send_lag.record(max(0, sent_us - int(due * 1e6)))
            future = viewer.call("gift", {"room": work.room, "gift_id": work.gift_id, "count": 1,
                                          "key": f"{plan.run_tag}-gift-{n}"})  # fmt: skip
            future.add_done_callback(partial(self._gift_acked, n, sent_us))
            pending.append(future)
        if pending:
            await asyncio.wait(pending, timeout=work.connect_timeout_s)

    def _gift_acked(self, n: int, sent_us: int, future: asyncio.Future[Any]) -> None:
        if future.cancelled():
            self.gift_acks[n] = "cancelled"
        elif (exc := future.exception()) is not None:
            self.gift_acks[n] = exc.kind if isinstance(exc, SioError) else type(exc).__name__
        else:
            ack = future.result()
            ok = isinstance(ack, dict) and ack.get("ok")
            self.gift_acks[n] = "ok" if ok else f"refused:{ack.get('error') if ack else ack}"
            if ok:
                self.gift_ack_hist.record(_now_us() - sent_us)

    async def _like(self, t0: float) -> None:
        """The first worker sends the room's likes at `like_rate` until the end.

        Only one worker likes, so the room totals it sees count its own likes alone: a like is
        aggregated once a `likes` total reaches its number, which makes the delay exact.
        """
        work = self.work
        if self.plan.index != 0:
            return
        likers = [
            slot for slot, index in enumerate(self.indices)
            if work.senders <= index < work.senders + work.likers
        ] or list(range(len(self.indices)))  # fmt: skip
        observer = next((v for v in self.viewers if v is not None and not v.closed), None)
        if observer is None:
            return
        observer.observe_likes(True)
        interval = 1 / work.like_rate
        for n in range(int(work.duration_s / interval)):
            delay = t0 + n * interval - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            slot = likers[n % len(likers)]
            viewer = self.viewers[slot]
            if viewer is not None and self.joined[slot] and not viewer.closed:
                self.like_sent_us.append(_now_us())
                viewer.emit("like", {"room": work.room, "count": 1})
                self.likes += 1

    async def _warm_up(self, start: float, slot_of: dict[int, int]) -> None:
        """The same rate before `t0`, in messages viewers do not count (no `lt:` mark)."""
        work = self.work
        for seq in range(work.warmup_messages):
            slot = slot_of.get(work.sender_of(seq))
            if slot is None:
                continue
            delay = start + work.send_offset_s(seq) - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            viewer = self.viewers[slot]
            if viewer is not None and self.joined[slot] and not viewer.closed:
                viewer.emit("chat", {"room": work.room, "text": "warm-up"})

    def _acked(self, seq: int, sent_us: int, future: asyncio.Future[Any]) -> None:
        if future.cancelled():
            status = "cancelled"
        elif (exc := future.exception()) is not None:
            status = exc.kind if isinstance(exc, SioError) else type(exc).__name__
        else:
            ack = future.result()
            if isinstance(ack, dict) and ack.get("ok") and not ack.get("held"):
                status = "ok"
                self.ack_hist.record(_now_us() - sent_us)
            elif isinstance(ack, dict):
                status = "held" if ack.get("held") else f"refused:{ack.get('error')}"
            else:
                status = "bad_ack"
        self.acks.setdefault(seq, status)

    # Reports
    def _connect_report(self) -> dict[str, Any]:
        unfinished = sum(
            1 for v, j in zip(self.viewers, self.joined, strict=True) if v is not None and not j
        )
        errors = Counter(self.errors)
        if unfinished:
            errors["join_unfinished"] += unfinished  # still joining when the run ended
        return {
            "attempted": self.attempted,
            "connected": sum(1 for v in self.viewers if v is not None),
            "joined": sum(self.joined),
            "errors": dict(errors),
            "connect": self.connect_hist.to_wire(),
            "join": self.join_hist.to_wire(),
        }

    def _result(self) -> dict[str, Any]:
        return {
            **self._connect_report(),
            "held": sum(1 for v in self.viewers if v is not None and not v.closed),
            "latency": self.latency.to_wire(),
            "regions": {
                r: {
                    "joined": sum(
                        j for j, rr in zip(self.joined, self.region, strict=True) if rr == r
                    ),
                    "latency": h.to_wire(),
                }
                for r, h in self.region_latency.items()
            },
            "ack": self.ack_hist.to_wire(),
            "lag": self.lag_hist.to_wire(),
            "send_lag": self.send_lag_hist.to_wire(),
            "timeline": self.timeline.to_wire(),
            "likes": self.likes,
            "seq_counts": self.seq_counts,
            "acks": self.acks,
            "per_viewer": [c for c, j in zip(self.per_viewer, self.joined, strict=True) if j],
            "first_seq": [f for f, j in zip(self.first_seq, self.joined, strict=True) if j],
            "early": self.early,
            "arrived": self.arrived,
            "joins_per_s": self.joins_per_s,
            "ramp_per_s": self.ramp_per_s,
            "like_delay": self.like_delay.to_wire(),
            "likes_confirmed": self.likes_confirmed,
            "received": self.received,
            "gifts": {
                "granted": self.granted,
                "acks": self.gift_acks,
                "received": self.gifts_received,
                "events": self.gift_events,
                "latency": self.gift_hist.to_wire(),
                "ack": self.gift_ack_hist.to_wire(),
                "send_lag": self.gift_send_lag.to_wire(),
            },
            "duplicates": self.duplicates,
            "foreign": self.foreign,
            "sent": self.sent,
            "first_delivery_us": self.first_delivery_us,
            "last_delivery_us": self.last_delivery_us,
        }

    def _send(self, kind: str, **body: Any) -> None:
        self.conn.send({"kind": kind, "worker": self.plan.index, **body})

    async def _progress(self) -> None:
        limit = GO_TIMEOUT_S * 2 / PROGRESS_EVERY_S
        for _ in range(int(limit)):
            await asyncio.sleep(PROGRESS_EVERY_S)
            self._send(
                "progress", phase=self.phase, connected=sum(1 for v in self.viewers if v),
                joined=sum(self.joined), sent=self.sent, received=self.received,
                errors=sum(self.errors.values()), likes=self.likes, arrived=self.arrived,
                recent=self.recent.to_wire(), recent_likes=self.recent_likes.to_wire(),
            )  # fmt: skip
            self.recent = Histogram()
            self.recent_likes = Histogram()

    async def _lag_monitor(self) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(int(GO_TIMEOUT_S * 2 / LAG_TICK_S)):
            before = loop.time()
            await asyncio.sleep(LAG_TICK_S)
            if self.phase == "run":
                self.lag_hist.record(int((loop.time() - before - LAG_TICK_S) * 1e6))

    async def _close_all(self) -> None:
        for viewer in self.viewers:
            if viewer is not None:
                viewer.close()
        await asyncio.sleep(0.2)
        for viewer in self.viewers:
            if viewer is not None:
                viewer.abort()
