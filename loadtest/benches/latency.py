"""`live loadtest latency`: edge hop latency and origin egress (options in cli/latency.py).

A synthetic host (counter-stamped video) publishes to an origin process (region na); N viewers on
the origin and N on an edge process (region eu) decode the counters. Latency per frame = decode
time - capture time (one process clock). The edge hop is the edge viewers' latency minus the
origin viewers' minus the one-way delay origin -> edge. Run inside scripts/loopback-only.

    scripts/loopback-only .venv/bin/live loadtest latency --viewers 4 --seconds 10
    sudo .venv/bin/live loadtest latency --wan   # nodes in namespaces, na-eu delay (edge/wan.py)

With --wan the host and viewers sit on the host's end of the WAN, next to both nodes (no delay):
only the origin -> edge path carries the inter-region delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError
from av import VideoFrame

from core.auth import TokenAuthority
from core.rooms import RoomStore
from core.store import embedded_valkey, redis_client
from devtools import wan as wan_net
from devtools.spawn import child_env, start_cluster, stop_all, valkey_on
from devtools.synthetic import BITS, SyntheticVideoTrack, counter_bits, read_counter
from edge.config import EdgeSettings
from edge.selection import RegionDistances
from loadtest.report.scrape import metric
from media import aiortc_compat

WARMUP_S = 2.0  # first keyframe, jitter buffers
SETUP_TIMEOUT_S = 60.0


def stamped_track(captured: dict[int, float]) -> SyntheticVideoTrack:
    """Counter-stamped frames (`counter_bits`); notes each counter's capture time in `captured`."""

    def capture(counter: int) -> None:
        captured[counter % (1 << BITS)] = time.monotonic()

    return SyntheticVideoTrack(counter_bits, on_frame=capture)


class TimedViewer:
    """A WHEP player (video only) that decodes each frame and notes its delay since capture."""

    def __init__(self, captured: dict[int, float]) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pc.addTransceiver("video", direction="recvonly")
        self.captured = captured
        self.delays: list[float] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        self._tasks.append(asyncio.ensure_future(self._consume(track)))

    async def _consume(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                if not isinstance(frame, VideoFrame):
                    continue
                t = self.captured.get(read_counter(frame))
                if t is not None:
                    self.delays.append(time.monotonic() - t)

    async def close(self) -> None:
        await self.pc.close()
        for task in self._tasks:
            task.cancel()


async def negotiate(
    http: aiohttp.ClientSession, url: str, token: str, pc: RTCPeerConnection
) -> None:
    """WHIP or WHEP: POST the offer (every candidate gathered: no trickle), apply the answer."""
    await pc.setLocalDescription(await pc.createOffer())
    headers = {"Content-Type": "application/sdp", "Authorization": f"Bearer {token}"}
    async with http.post(url, data=str(pc.localDescription.sdp).encode(), headers=headers) as r:
        answer = await r.text()
        if r.status != 201:
            raise RuntimeError(f"POST {url}: {r.status} {answer}")
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))


def pct(xs: list[float], q: float) -> float:
    """The q-quantile of `xs` seconds, in milliseconds (nan when nothing was measured)."""
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000


def summary(delays: list[float]) -> dict[str, float]:
    return {
        "frames": len(delays),
        "p50_ms": round(pct(delays, 0.5), 1),
        "p95_ms": round(pct(delays, 0.95), 1),
        "mean_ms": round(statistics.mean(delays) * 1000, 1) if delays else float("nan"),
    }


async def run(viewers: int, seconds: float, wan: bool) -> dict[str, Any]:
    """Start Valkey, origin and edge, publish, measure for `seconds`, stop everything."""
    secret = secrets.token_urlsafe(32)
    auth = TokenAuthority(secret)
    captured: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        net: wan_net.Wan | None = None
        if wan:
            distances = RegionDistances(EdgeSettings().region_distances)
            net = stack.enter_context(wan_net.wan({"origin": "na", "edge-eu": "eu"}, distances))
            url = stack.enter_context(valkey_on(Path(tmp), net.host_address))
        else:
            url = stack.enter_context(embedded_valkey(Path(tmp)))
        aiortc_compat.set_ice_addresses([net.host_address if net else "127.0.0.1"])
        one_way_ms = net.delays_ms["origin", "edge-eu"] if net else 0.0
        async with redis_client(url) as r:
            await RoomStore(r).create(title="bench", owner="h", room_id="b")
        # No drain on SIGTERM: nobody is left to move when the benchmark stops its nodes.
        extra = {"LIVE_LOG_LEVEL": "WARNING", "LIVE_DATA_DIR": tmp, "LIVE_DRAIN_S": "0"}
        env = child_env(url, secret, extra)
        origin, edge = await start_cluster(["eu"], env, origin_region="na", wan=net)
        host = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        sender = host.addTransceiver(stamped_track(captured), direction="sendonly")
        sender.setCodecPreferences(
            [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/VP8"]
        )
        on_origin = [TimedViewer(captured) for _ in range(viewers)]
        on_edge = [TimedViewer(captured) for _ in range(viewers)]
        out: dict[str, Any] = {"viewers_per_node": viewers, "seconds": seconds, "wan": wan}
        try:
            async with aiohttp.ClientSession() as http, asyncio.timeout(SETUP_TIMEOUT_S):
                host_token = auth.issue(user="h", role="host")
                await negotiate(http, f"{origin.url}/whip/b", host_token, host)
                # One user per viewer: a node takes a few sessions per user (WHEP limits).
                for i, v in enumerate(on_origin):
                    tok = auth.issue(user=f"v{i}", role="viewer")
                    await negotiate(http, f"{origin.url}/whep/b", tok, v.pc)
                for i, v in enumerate(on_edge):
                    tok = auth.issue(user=f"e{i}", role="viewer")
                    await negotiate(http, f"{edge.url}/whep/b", tok, v.pc)
            async with aiohttp.ClientSession() as http:
                await asyncio.sleep(WARMUP_S)
                for v in on_origin + on_edge:
                    v.delays.clear()
                b0 = await metric(http, origin.url, "live_media_bytes_forwarded_total")
                await asyncio.sleep(seconds)
                b1 = await metric(http, origin.url, "live_media_bytes_forwarded_total")
                sides = {"origin": on_origin, "edge": on_edge}
                figures = {k: summary([x for v in g for x in v.delays]) for k, g in sides.items()}
                out.update(figures)
                out["wan_one_way_ms"] = one_way_ms
                for q in ("p50_ms", "p95_ms"):
                    hop = figures["edge"][q] - figures["origin"][q] - one_way_ms
                    out[f"edge_hop_{q}"] = round(hop, 1)
                out["origin_egress_kbps"] = round(((b1 or 0) - (b0 or 0)) * 8 / seconds / 1000)
                out["origin_viewer_sessions"] = await metric(http, origin.url, "live_media_viewers")
        finally:
            for v in on_origin + on_edge:
                await v.close()
            await host.close()
            await stop_all([edge, origin])
    return out
