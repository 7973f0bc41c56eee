"""A load-generator worker process: its share of the crowd as coroutines on one event loop.

The coordinator hands each worker a `WorkerPlan` and talks to it over a pipe:
worker -> `progress` (about once a second), `ready` (crowd connected and joined);
coordinator -> `go` (a wall-clock start shared by every worker) or `stop`;
worker -> `done` (histograms as bucket counts, per-message delivery counts, errors).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import Counter
from functools import partial
from multiprocessing.connection import Connection
from typing import Any

from live.auth import TokenAuthority
from loadtest.fleet import raise_fd_limit
from loadtest.histogram import Histogram, Timeline
from loadtest.plan import NAMESPACE, WorkerPlan
from loadtest.sioclient import SioError, Viewer, chat_text, open_viewer

GO_TIMEOUT_S = 600.0
PROGRESS_EVERY_S = 1.0
LAG_TICK_S = 0.05


def main(plan: WorkerPlan, conn: Connection) -> None:
    """Process entry point (multiprocessing `spawn`)."""
    import uvloop

    if plan.cpus:
        os.sched_setaffinity(0, plan.cpus)
    raise_fd_limit()
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
        self.bitmaps = [bytearray((self.m + 7) // 8) for _ in range(n)]
        self.seq_counts = [0] * self.m
        self.latency = Histogram()
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

    # Sink
    def chat(self, slot: int, seq: int, sent_us: int) -> None:
        now = _now_us()
        if seq >= self.m:
            self.foreign += 1
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
        self.timeline.record(int(sent_us / 1e6 - self.t0), now - sent_us, "delivered")
        if not self.first_delivery_us:
            self.first_delivery_us = now
        self.last_delivery_us = now

    def lost(self, slot: int, reason: str) -> None:
        self.errors[f"lost_in_{self.phase}:{reason}"] += 1

    # Phases
    async def run(self) -> None:
        background = [
            asyncio.create_task(self._progress(), name="progress"),
            asyncio.create_task(self._lag_monitor(), name="lag"),
        ]
        try:
            await self._connect_all()
            self._send("ready", **self._connect_report())
            command = await self._receive(GO_TIMEOUT_S)
            if command.get("kind") == "go":
                self.phase = "run"
                await self._chat(float(command["t0"]))
            self.phase = "closing"
            self._send("done", **self._result())
        finally:
            self._stop.set()
            for task in background:
                task.cancel()
            await self._close_all()

    async def _connect_all(self) -> None:
        plan, work = self.plan, self.work
        loop = asyncio.get_running_loop()
        rate = work.connect_rate / plan.workers
        gate = asyncio.Semaphore(max(1, work.connect_concurrency // plan.workers))
        authority = TokenAuthority(plan.secret)
        ttl = int(work.duration_s + work.drain_s) + 3600
        start = loop.time()

        async def one(slot: int, index: int) -> None:
            await asyncio.sleep(max(0.0, start + slot / rate - loop.time()))
            role = work.sender_role if index < work.senders else "viewer"
            token = authority.issue(
                user=f"{plan.run_tag}-{index}", role=role, name=f"Viewer {index}",
                rooms=[work.room], ttl_s=ttl,
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
            self.joined[slot] = 1

        await asyncio.gather(*(one(s, i) for s, i in enumerate(self.indices)))

    async def _chat(self, t0: float) -> None:
        work = self.work
        self.t0 = t0
        liking = asyncio.create_task(self._like(t0)) if work.likers and work.like_rate else None
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
        complete = sum(self.joined) * self.m
        for _ in range(int((deadline - time.time()) / 0.05) + 1):
            if self.received >= complete and len(self.acks) >= len(mine):
                break
            await asyncio.sleep(0.05)
        for seq in mine:
            self.acks.setdefault(seq, "ack_timeout")
        if liking is not None:
            liking.cancel()

    async def _like(self, t0: float) -> None:
        """This worker's likers share its part of the room-wide like rate until the end."""
        work = self.work
        likers = [
            slot for slot, index in enumerate(self.indices)
            if work.senders <= index < work.senders + work.likers
        ]  # fmt: skip
        if not likers:
            return
        interval = self.plan.workers / work.like_rate
        for n in range(int(work.duration_s / interval)):
            delay = t0 + n * interval - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            slot = likers[n % len(likers)]
            viewer = self.viewers[slot]
            if viewer is not None and self.joined[slot] and not viewer.closed:
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
        return {
            "connected": sum(1 for v in self.viewers if v is not None),
            "joined": sum(self.joined),
            "errors": dict(self.errors),
            "connect": self.connect_hist.to_wire(),
            "join": self.join_hist.to_wire(),
        }

    def _result(self) -> dict[str, Any]:
        return {
            **self._connect_report(),
            "held": sum(1 for v in self.viewers if v is not None and not v.closed),
            "latency": self.latency.to_wire(),
            "ack": self.ack_hist.to_wire(),
            "lag": self.lag_hist.to_wire(),
            "send_lag": self.send_lag_hist.to_wire(),
            "timeline": self.timeline.to_wire(),
            "likes": self.likes,
            "seq_counts": self.seq_counts,
            "acks": self.acks,
            "per_viewer": [c for c, j in zip(self.per_viewer, self.joined, strict=True) if j],
            "received": self.received,
            "duplicates": self.duplicates,
            "foreign": self.foreign,
            "sent": self.sent,
            "first_delivery_us": self.first_delivery_us,
            "last_delivery_us": self.last_delivery_us,
        }

    def _send(self, kind: str, **body: Any) -> None:
        self.conn.send({"kind": kind, "worker": self.plan.index, **body})

    async def _receive(self, wait_s: float) -> dict[str, Any]:
        if not await asyncio.to_thread(self.conn.poll, wait_s):
            return {"kind": "stop"}
        message: dict[str, Any] = self.conn.recv()
        return message

    async def _progress(self) -> None:
        limit = GO_TIMEOUT_S * 2 / PROGRESS_EVERY_S
        for _ in range(int(limit)):
            await asyncio.sleep(PROGRESS_EVERY_S)
            self._send(
                "progress", phase=self.phase, connected=sum(1 for v in self.viewers if v),
                joined=sum(self.joined), sent=self.sent, received=self.received,
                errors=sum(self.errors.values()),
            )  # fmt: skip

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
