"""A WebRTC viewer worker process: its share of the receive-only WHEP viewers
(`loadtest.clients.whep`), which never decode.

A worker process (`main`) runs its share of the viewers on one event loop and speaks the
`loadtest.fleet.control` protocol: `ready`, then after `go` it joins its viewers at its share of the
join rate, holds them until the end, and sends `done` with merged figures.

With `failover` (a scenario that kills a node), viewers do what the viewer page does: a watching
viewer whose frames stop for LOST_AFTER_S (or whose connection fails) asks its node's /healthz;
a node that does not answer is dead, and the viewer asks the selection API at once for another
node, excluding the dead ones (`?exclude=`), and plays from it (later attempts back off). The
worker reports when each viewer lost its node and when its first frame from the next arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import Counter
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import aiohttp

from core.auth import TokenAuthority
from core.limits import raise_open_files_limit
from loadtest.clients.whep import ICE_ADDRESSES, MediaViewer, WhepError
from loadtest.fleet.control import Commands, worker_signals
from loadtest.plan.arrivals import TokenBucket
from loadtest.report.histogram import Histogram
from media.aiortc_compat import set_ice_addresses

GO_TIMEOUT_S = 600.0
PROGRESS_EVERY_S = 1.0
LOST_AFTER_S = 1.0  # a watching viewer's frames stopping this long: is its node there?
CHECK_EVERY_S = 0.25
PROBE_TIMEOUT_S = 1.0  # a node that does not answer /healthz in this long is dead
RECHECK_S = 2.0  # a viewer whose node answered is not checked again before this
MAX_EXCLUDE = 8  # the selection route's bound


@dataclass(frozen=True, slots=True)
class RtcPlan:
    """One worker's share of the WebRTC viewers: `index, index + workers, ...` over `targets`."""

    index: int
    workers: int
    targets: tuple[str, ...]
    secret: str
    room: str
    viewers: int
    duration_s: float
    join_rate: float = 20.0  # WHEP sessions started per second, across all workers
    cpus: tuple[int, ...] = ()
    run_tag: str = "lt"
    setup_timeout_s: float = 15.0
    regions: tuple[str, ...] = ()  # the region of each target (`loadtest.plan.regions`); () none
    failover: bool = False  # viewers whose node dies move to the node selection names
    ask: tuple[str, ...] = ()  # where to ask for a node first (the origin), then the targets
    lean: bool = False  # after the first frame, count through the lean receive path (cheaper)

    def viewer_indices(self) -> range:
        return range(self.index, self.viewers, self.workers)

    def region_of(self, viewer: int) -> str:
        return self.regions[viewer % len(self.regions)] if self.regions else "-"


def main(plan: RtcPlan, conn: Connection) -> None:
    """Process entry point (multiprocessing `spawn`)."""
    worker_signals()
    if plan.cpus:
        os.sched_setaffinity(0, plan.cpus)
    raise_open_files_limit()
    set_ice_addresses(ICE_ADDRESSES)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(RtcCrowd(plan, conn).run())


class RtcCrowd:
    """The WebRTC viewers of one worker."""

    def __init__(self, plan: RtcPlan, conn: Connection) -> None:
        self.plan = plan
        self.conn = conn
        self.viewers: list[MediaViewer] = []
        self.setup = Histogram()
        self.first_frame = Histogram()
        self.region_first_frame: dict[str, Histogram] = {}
        self.region_watching: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.phase = "setup"
        self.t0 = 0.0
        self.ended = 0.0
        # Failover: each slot's node after a move, the viewers it replaced, what nodes are called.
        self.moved_to: dict[int, str] = {}
        self.retired: list[MediaViewer] = []
        self.node_ids: dict[str, str] = {}  # url -> node id
        self.dead: dict[str, float] = {}  # url -> when it was found dead
        self.probes: dict[str, tuple[float, asyncio.Task[bool]]] = {}
        self.moving: set[int] = set()
        self.checked: dict[int, float] = {}  # slot -> when its live node last answered
        self.lost_at: list[float] = []
        self.back_at: list[float] = []
        self.failover_errors: Counter[str] = Counter()
        self.background: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        commands = Commands(self.conn)
        progress = asyncio.create_task(self._progress())
        timeout = aiohttp.ClientTimeout(total=self.plan.setup_timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            try:
                self._send("ready")
                with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                    async with asyncio.timeout(GO_TIMEOUT_S):
                        self.t0 = await commands.go
                    self.phase = "run"
                    await commands.run_until_stopped(self._watch(http))
                self.ended = time.time()
                self.phase = "closing"
                self._send("done", partial=commands.stop.is_set(), **await self._result())
            finally:
                commands.close()
                progress.cancel()
                for task in self.background:
                    task.cancel()
                await asyncio.gather(*self.background, return_exceptions=True)
                await asyncio.gather(*(v.pc.close() for v in self.retired), return_exceptions=True)
                await asyncio.gather(
                    *(v.close(http, self._target(i), self._token(i))
                      for i, v in enumerate(self.viewers)),
                    return_exceptions=True,
                )  # fmt: skip

    def _target(self, slot: int) -> str:
        if slot in self.moved_to:
            return self.moved_to[slot]
        # By the global viewer index, so a region map's weights hold across workers.
        index = self.plan.viewer_indices()[slot]
        return self.plan.targets[index % len(self.plan.targets)]

    def _token(self, slot: int) -> str:
        index = self.plan.viewer_indices()[slot]
        return TokenAuthority(self.plan.secret).issue(
            user=f"{self.plan.run_tag}-w{index}", role="viewer", rooms=[self.plan.room],
            ttl_s=int(self.plan.duration_s) + 3600,
        )  # fmt: skip

    async def _watch(self, http: aiohttp.ClientSession) -> None:
        plan = self.plan
        delay = self.t0 - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        end = self.t0 + plan.duration_s
        if plan.failover:
            await self._learn_ids(http)
            self._spawn(self._guard(http, end))
        bucket = TokenBucket(plan.join_rate / plan.workers)
        tasks = []
        for slot in range(len(plan.viewer_indices())):
            if not await bucket.take(max(0.0, end - time.time())) or time.time() >= end:
                break
            viewer = MediaViewer(self.t0, int(plan.duration_s) + 1)
            self.viewers.append(viewer)
            tasks.append(asyncio.create_task(self._join(http, slot, viewer)))
        await asyncio.gather(*tasks)
        await asyncio.sleep(max(0.0, end - time.time()))

    async def _join(self, http: aiohttp.ClientSession, slot: int, viewer: MediaViewer) -> None:
        began = time.perf_counter()
        try:
            async with asyncio.timeout(self.plan.setup_timeout_s):
                await viewer.play(http, self._target(slot), self.plan.room, self._token(slot))
        except WhepError as exc:
            self.errors[str(exc)] += 1
            return
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
            self.errors["whep_" + type(exc).__name__] += 1
            return
        self.setup.record(int((time.perf_counter() - began) * 1e6))
        for _ in range(int(self.plan.setup_timeout_s / 0.05)):
            if viewer.first_frame_s is not None:
                self.first_frame.record(int(viewer.first_frame_s * 1e6))
                region = self.plan.region_of(self.plan.viewer_indices()[slot])
                self.region_first_frame.setdefault(region, Histogram()).record(
                    int(viewer.first_frame_s * 1e6)
                )
                self.region_watching[region] += 1
                if self.plan.lean:
                    await self._lean(viewer)
                return
            await asyncio.sleep(0.05)
        self.errors["no_first_frame"] += 1

    # -- failover ------------------------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def _learn_ids(self, http: aiohttp.ClientSession) -> None:
        """The node id behind each target (for `exclude` once it is dead)."""
        for url in dict.fromkeys([*self.plan.ask, *self.plan.targets]):
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError, KeyError):
                async with http.get(f"{url.rstrip('/')}/healthz") as r:
                    self.node_ids[url] = (await r.json())["node"]

    async def _guard(self, http: aiohttp.ClientSession, end: float) -> None:
        """Every CHECK_EVERY_S: watching viewers whose frames stopped check their node."""
        while time.time() < end:
            await asyncio.sleep(CHECK_EVERY_S)
            now = time.time()
            for slot, v in enumerate(self.viewers):
                if slot in self.moving or v.first_frame_s is None:
                    continue
                stalled = now - v.last_frame_at > LOST_AFTER_S
                if not (stalled or v.pc.connectionState in ("failed", "closed")):
                    continue
                if now - self.checked.get(slot, 0.0) < RECHECK_S:
                    continue
                self.moving.add(slot)
                self._spawn(self._fail_over(http, slot, end))

    async def _alive(self, http: aiohttp.ClientSession, url: str) -> bool:
        """Whether the node at `url` answers (one probe per node at a time, shared)."""
        if url in self.dead:
            return False
        at, probe = self.probes.get(url, (0.0, None))
        if probe is None or (probe.done() and time.time() - at > CHECK_EVERY_S):
            probe = asyncio.ensure_future(self._probe(http, url))
            self.probes[url] = (time.time(), probe)
        return await asyncio.shield(probe)

    async def _probe(self, http: aiohttp.ClientSession, url: str) -> bool:
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                async with http.get(f"{url.rstrip('/')}/healthz"):
                    return True  # any answer
        except (aiohttp.ClientError, TimeoutError, OSError):
            self.dead.setdefault(url, time.time())
            return False

    async def _fail_over(self, http: aiohttp.ClientSession, slot: int, end: float) -> None:
        url = self._target(slot)
        if await self._alive(http, url):
            # Frames stopped for another reason (the host's uplink?): not this viewer's to fix.
            self.checked[slot] = time.time()
            self.moving.discard(slot)
            return
        self.lost_at.append(time.time())
        old, token = self.viewers[slot], self._token(slot)
        region = self.plan.region_of(self.plan.viewer_indices()[slot])
        attempt = 0
        while time.time() < end:
            target = await self._select(http, region)
            if target is not None and await self._replay(http, slot, target, token):
                self.retired.append(old)
                await old.pc.close()  # its node is gone: no DELETE to send
                self.moving.discard(slot)
                return
            attempt += 1
            await asyncio.sleep(min(2.0, 0.2 * attempt))  # the first retry at once, then slower

    async def _select(self, http: aiohttp.ClientSession, region: str) -> str | None:
        """A live node from the selection API, never one found dead."""
        exclude = [self.node_ids[u] for u in self.dead if u in self.node_ids][-MAX_EXCLUDE:]
        query = {"region": region} if region != "-" else {}
        if exclude:
            query["exclude"] = ",".join(exclude)
        for base in dict.fromkeys([*self.plan.ask, *self.plan.targets, *self.node_ids]):
            if base in self.dead:
                continue
            try:
                async with http.get(
                    f"{base.rstrip('/')}/api/rooms/{self.plan.room}/edge", params=query
                ) as r:
                    if r.status != 200:
                        self.failover_errors[f"select_{r.status}"] += 1
                        continue
                    body = await r.json()
            except (aiohttp.ClientError, TimeoutError, OSError, ValueError):
                continue
            url: str = body["url"]
            self.node_ids[url] = body["node_id"]
            if url not in self.dead:
                return url
        return None

    async def _replay(
        self, http: aiohttp.ClientSession, slot: int, target: str, token: str
    ) -> bool:
        """A new session on `target` for `slot`; True once its first frame arrived."""
        viewer = MediaViewer(self.t0, int(self.plan.duration_s) + 1)
        try:
            async with asyncio.timeout(self.plan.setup_timeout_s):
                await viewer.play(http, target, self.plan.room, token)
                await viewer.first_frame.wait()
        except WhepError as exc:
            self.failover_errors[str(exc)] += 1
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
            self.failover_errors["replay_" + type(exc).__name__] += 1
        else:
            self.back_at.append(viewer.started + (viewer.first_frame_s or 0.0))
            self.viewers[slot] = viewer
            self.moved_to[slot] = target
            return True
        await viewer.close(http, target, token)
        return False

    async def _lean(self, viewer: MediaViewer) -> None:
        """Hand the viewer to the lean path (a frame came, so DTLS is done; ICE may still be
        nominating its pair)."""
        for _ in range(int(self.plan.setup_timeout_s / 0.05)):
            if viewer.lean():
                return
            await asyncio.sleep(0.05)
        self.errors["lean_not_attached"] += 1

    async def _result(self) -> dict[str, Any]:
        received = lost = 0
        for v in [*self.viewers, *self.retired]:
            r, n = await v.loss()
            received += r
            lost += n
        seconds = int(self.plan.duration_s) + 1
        every = [*self.viewers, *self.retired]
        per_s = [sum(v.frames_per_s[s] for v in every) for s in range(seconds)]
        watched = [v for v in self.viewers if v.first_frame_s is not None]
        watch_s = sum(max(1e-3, self.ended - (v.started + (v.first_frame_s or 0.0)))
                      for v in watched)  # fmt: skip
        return {
            "started": len(self.viewers),
            "watching": len(watched),
            "packets": sum(v.packets for v in every),
            "bytes": sum(v.bytes for v in every),
            "frames": sum(v.frames for v in every),
            "keyframes": sum(v.keyframes for v in every),
            "rtp_received": received,
            "rtp_lost": lost,
            "watch_s": watch_s,
            "frames_per_s": per_s,
            "viewer_frames_per_s": [v.frames_per_s for v in self.viewers],
            "viewer_packets_per_s": [v.packets_per_s for v in self.viewers],  # lean viewers only
            "viewer_lost_per_s": [v.lost_per_s for v in self.viewers],  # lean viewers only
            "setup": self.setup.to_wire(),
            "first_frame": self.first_frame.to_wire(),
            "regions": {
                r: {"watching": self.region_watching[r], "first_frame": h.to_wire()}
                for r, h in self.region_first_frame.items()
            },
            "errors": dict(self.errors),
            "failover": {
                "lost_at": self.lost_at,
                "back_at": self.back_at,
                "errors": dict(self.failover_errors),
            },
        }

    def _send(self, kind: str, **body: Any) -> None:
        self.conn.send({"kind": kind, "worker": self.plan.index, **body})

    async def _progress(self) -> None:
        for _ in range(int(GO_TIMEOUT_S * 2 / PROGRESS_EVERY_S)):
            await asyncio.sleep(PROGRESS_EVERY_S)
            self._send(
                "progress", phase=self.phase, started=len(self.viewers),
                watching=sum(1 for v in self.viewers if v.first_frame_s is not None),
                frames=sum(v.frames for v in self.viewers),
                packets=sum(v.packets for v in self.viewers),
                errors=sum(self.errors.values()),
            )  # fmt: skip
