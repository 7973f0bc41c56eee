"""The WebRTC part of a scenario: a synthetic publisher makes the room live, viewers watch it.

The publisher sends VP8 over WHIP (a moving bar on grey, encoded by aiortc; no camera, no file).
The viewers (`loadtest.fleet.rtc_worker`) run in worker processes and never decode. ICE offers
loopback candidates only; run WebRTC scenarios in a loopback-only network namespace
(`scripts/loopback-only live loadtest run ...`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import aiohttp
from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)

from core.auth import TokenAuthority
from devtools.synthetic import FPS, PacedTrack, SyntheticVideoTrack, moving_bar
from loadtest.clients.whep import ICE_ADDRESSES
from loadtest.fleet import rtc_worker
from loadtest.fleet.control import Fleet
from loadtest.fleet.rtc_worker import RtcPlan
from loadtest.report import procfs
from loadtest.report.display import Monitor, Progress
from loadtest.report.histogram import Histogram
from media.aiortc_compat import set_ice_addresses

START_DELAY_S = 1.0
PER_VIEWER = ("viewer_frames_per_s", "viewer_packets_per_s", "viewer_lost_per_s")


@contextlib.asynccontextmanager
async def publishing(
    url: str,
    secret: str,
    room: str,
    seconds: float,
    tracks: Sequence[PacedTrack] = (),
) -> AsyncIterator[Any]:
    """A WHIP publisher live in `room` for the block (at most `seconds` of frames), yielding its
    video track. `tracks` (a VP8 video track first, e.g. `ReplayTrack`s of a pre-encoded stream)
    replace the default: a moving bar encoded here."""
    set_ice_addresses(ICE_ADDRESSES)
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    track, *others = tracks or [SyntheticVideoTrack(moving_bar, limit=int(seconds * FPS))]
    transceiver = pc.addTransceiver(track, direction="sendonly")
    vp8 = [c for c in RTCRtpSender.getCapabilities("video").codecs
           if c.mimeType.lower() in ("video/vp8", "video/rtx")]  # fmt: skip
    transceiver.setCodecPreferences(vp8)
    for other in others:
        pc.addTransceiver(other, direction="sendonly")
    token = TokenAuthority(secret).issue(user="loadtest-publisher", role="host", rooms=[room])
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/sdp"}
    location: str | None = None
    timeout = aiohttp.ClientTimeout(total=15)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        try:
            await pc.setLocalDescription(await pc.createOffer())
            body = pc.localDescription.sdp
            async with http.post(f"{url.rstrip('/')}/whip/{room}", data=body,
                                 headers=headers) as resp:  # fmt: skip
                if resp.status != 201:
                    raise RuntimeError(f"WHIP publish: {resp.status} {await resp.text()}")
                answer = await resp.text()
                location = resp.headers.get("Location")
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
            for _ in range(200):  # up to 10 s for ICE, DTLS and the first frames
                if pc.connectionState == "connected" and track.sent >= 5:
                    break
                if pc.connectionState == "failed":
                    raise RuntimeError("WHIP publish: the connection failed (ICE on loopback?)")
                await asyncio.sleep(0.05)
            else:
                raise RuntimeError("WHIP publish: not connected within 10 s")
            yield track
        finally:
            if location:
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with http.delete(url.rstrip("/") + location, headers=headers):
                        pass
            await pc.close()


async def run_viewers(
    urls: list[str],
    secret: str,
    room: str,
    viewers: int,
    duration_s: float,
    *,
    join_rate: float,
    workers: int,
    client_cpus: list[int] | None,
    label: str = "webrtc",
    progress: Progress = print,
    monitor: Monitor | None = None,
    regions: tuple[str, ...] = (),
    failover: bool = False,
    ask: tuple[str, ...] = (),
    started: asyncio.Future[float] | None = None,
) -> dict[str, Any]:
    """`viewers` WHEP viewers of `room` for `duration_s` from `workers` processes; merged.

    Viewer `i` watches from `urls[i % n]`, in region `regions[i % n]` when given. `failover`:
    viewers whose node dies ask selection (`ask` first, then `urls`) for another and play there.
    `started` gets the run's start time (wall clock) when the workers are told to go."""
    workers = max(1, min(workers, viewers))
    tag = f"lt{time.time_ns() % 10**9:x}"
    plans = [
        RtcPlan(i, workers, tuple(urls), secret, room, viewers, duration_s, join_rate,
                tuple(client_cpus or ()), tag, regions=regions, failover=failover, ask=ask)
        for i in range(workers)
    ]  # fmt: skip
    result = await drive_viewers(
        plans, duration_s, label=label, progress=progress, monitor=monitor, started=started
    )
    for key in ("t0", *PER_VIEWER):  # a scenario reports the crowd's totals only
        result.pop(key)
    return result


async def drive_viewers(
    plans: list[RtcPlan],
    duration_s: float,
    *,
    label: str = "webrtc",
    progress: Progress = print,
    monitor: Monitor | None = None,
    measure: Callable[[Fleet, Callable[[], None]], Awaitable[None]] | None = None,
    started: asyncio.Future[float] | None = None,
) -> dict[str, Any]:
    """One worker process per plan (plans may be of different rooms); merged figures.

    With `measure`, it is awaited once the workers started (with the fleet and its progress
    tick), and the workers are stopped when it returns (`partial` then says so). `started`
    gets the run's start time (wall clock) when the workers are told to go."""
    workers = len(plans)
    viewers = sum(len(p.viewer_indices()) for p in plans)
    fleet = Fleet.spawn(rtc_worker.main, plans)
    stop = monitor.stop if monitor is not None else None
    every = 0.5 if monitor is not None else 2.0

    def tick() -> None:
        line = (
            f"started {fleet.total('started')} watching {fleet.total('watching')}"
            f" frames {fleet.total('frames')} packets {fleet.total('packets')}"
            f" errors {fleet.total('errors')}"
        )
        if monitor is None:
            progress(f"  [{label}] {line}")
        else:
            monitor.status(label, line)

    t0 = time.time()
    try:
        ready = await fleet.until(lambda: len(fleet.ready) == workers, 60, tick, every, stop)
        if not ready and not (stop is not None and stop.is_set()):
            if monitor is None:
                raise RuntimeError("WebRTC workers were not ready within 60 s")
            monitor.request_stop(f"[{label}] WebRTC workers were not ready within 60 s")
        pids = fleet.pids
        start = {n: procfs.sample(p) for n, p in pids.items()}
        if ready:
            t0 = time.time() + START_DELAY_S
            fleet.broadcast({"kind": "go", "t0": t0})
            if started is not None and not started.done():
                started.set_result(t0)
            if measure is not None:
                await measure(fleet, tick)
                fleet.broadcast({"kind": "stop"})
        budget = START_DELAY_S + duration_s + 60
        done = await fleet.until(lambda: len(fleet.done) == workers, budget, tick, every, stop)
        if not done:
            fleet.broadcast({"kind": "stop"})
            await fleet.until(lambda: len(fleet.done) + len(fleet.dead) >= workers, 20.0)
        end = {n: procfs.sample(p) for n, p in pids.items()}
        wall = max(1e-3, time.time() - t0)
    finally:
        await fleet.reap()
    result = merge(viewers, list(fleet.done.values()))
    result["t0"] = t0
    result["partial"] = len(fleet.done) < workers or any(
        p.get("partial") for p in fleet.done.values()
    )
    cpu = sum(procfs.cpu_percent(start.get(n), end.get(n), wall) for n in pids)
    result["generator"] = {"workers": workers, "cpu_pct": round(cpu, 1)}
    return result


def merge(viewers: int, parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The workers' figures added up: loss as a fraction, bitrate per watching viewer."""
    setup, first = Histogram(), Histogram()
    by_region: dict[str, tuple[list[int], Histogram]] = {}
    errors: Counter[str] = Counter()
    frames_per_s: list[int] = []
    lost_at: list[float] = []
    back_at: list[float] = []
    failover_errors: Counter[str] = Counter()
    per_viewer: dict[str, list[list[int]]] = {key: [] for key in PER_VIEWER}
    for part in parts:
        moves = part.get("failover", {})
        lost_at += moves.get("lost_at", [])
        back_at += moves.get("back_at", [])
        failover_errors.update(moves.get("errors", {}))
        for key, lists in per_viewer.items():
            lists += part.get(key, [])
        setup.merge(Histogram.from_wire(part["setup"]))
        first.merge(Histogram.from_wire(part["first_frame"]))
        errors.update(part["errors"])
        for region, figures in part.get("regions", {}).items():
            watching, hist = by_region.setdefault(region, ([0], Histogram()))
            watching[0] += figures["watching"]
            hist.merge(Histogram.from_wire(figures["first_frame"]))
        for s, n in enumerate(part["frames_per_s"]):
            if s >= len(frames_per_s):
                frames_per_s.append(0)
            frames_per_s[s] += n
    total = {k: sum(p[k] for p in parts)
             for k in ("started", "watching", "packets", "bytes", "frames", "keyframes",
                       "rtp_received", "rtp_lost", "watch_s")}  # fmt: skip
    expected = total["rtp_received"] + total["rtp_lost"]
    watch_s = total["watch_s"]
    return {
        "viewers": viewers,
        **{k: v for k, v in total.items() if k != "watch_s"},
        "loss": round(total["rtp_lost"] / expected, 6) if expected else 0.0,
        "bitrate_kbps": round(total["bytes"] * 8 / 1000 / watch_s, 1) if watch_s else 0.0,
        "fps": round(total["frames"] / watch_s, 2) if watch_s else 0.0,
        "setup_ms": setup.summary_ms(),
        "first_frame_ms": first.summary_ms(),
        "regions": {
            r: {"watching": w[0], "first_frame_ms": h.summary_ms()}
            for r, (w, h) in sorted(by_region.items())
        },
        "frames_per_s": frames_per_s,
        **per_viewer,  # each viewer's count in each second after t0
        "errors": dict(errors),
        # Wall-clock times: viewers that found their node dead, first frames from the next node.
        "failover": {
            "lost_at": sorted(lost_at),
            "back_at": sorted(back_at),
            "errors": dict(failover_errors),
        },
    }
