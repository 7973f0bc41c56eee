"""Edge hop latency and origin egress: a synthetic host (counter video) publishes to an origin
process (region na); N viewers on the origin and N on an edge process (region eu) decode the
counters. Latency per frame = decode time - capture time (one process clock). The edge hop is
the edge viewers' latency minus the origin viewers' minus the one-way delay origin -> edge.
Run inside scripts/loopback-only.

    python bench/edge_latency.py --viewers 4 --seconds 10
    python bench/edge_latency.py --wan   # root: nodes in namespaces, na-eu delay (edge/wan.py)

With --wan the host and viewers sit on the host's end of the WAN, next to both nodes (no delay):
only the origin -> edge path carries the inter-region delay.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge import wan as wan_net
from edge.selection import RegionDistances
from live.auth import TokenAuthority
from live.cmd_cluster import child_env, start_cluster, stop_all, valkey_on
from live.config import Settings
from live.rooms import RoomStore
from live.store import embedded_valkey, redis_client
from media import aiortc_hooks
from tests.edge.media_peers import metric, whep, whip
from tests.media.peers import BITS, CounterVideoTrack, Host, Viewer

captured: dict[int, float] = {}


class StampedTrack(CounterVideoTrack):
    async def recv(self):  # type: ignore[no-untyped-def]
        frame = await super().recv()
        captured[(self.counter - 1) % (1 << BITS)] = time.monotonic()
        return frame


class TimedViewer(Viewer):
    def __init__(self) -> None:
        super().__init__(audio=False)
        self.delays: list[float] = []

    def _on_track(self, track) -> None:  # type: ignore[no-untyped-def]
        async def consume() -> None:
            while True:
                try:
                    frame = await track.recv()
                except Exception:
                    return
                from tests.media.peers import read_counter

                c = read_counter(frame)
                t = captured.get(c)
                if t is not None:
                    self.delays.append(time.monotonic() - t)

        self._tasks.append(asyncio.ensure_future(consume()))


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000


async def main(viewers: int, seconds: float, wan: bool) -> dict[str, object]:
    secret = secrets.token_urlsafe(32)
    auth = TokenAuthority(secret)
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        net: wan_net.Wan | None = None
        if wan:
            distances = RegionDistances(Settings().region_distances)
            net = stack.enter_context(wan_net.wan({"origin": "na", "edge-eu": "eu"}, distances))
            url = stack.enter_context(valkey_on(Path(tmp), net.host_address))
        else:
            url = stack.enter_context(embedded_valkey(Path(tmp)))
        aiortc_hooks.set_ice_addresses([net.host_address if net else "127.0.0.1"])
        one_way_ms = net.delays_ms["origin", "edge-eu"] if net else 0.0
        async with redis_client(url) as r:
            await RoomStore(r).create(title="bench", owner="h", room_id="b")
        env = child_env(url, secret, {"LIVE_LOG_LEVEL": "WARNING", "LIVE_DATA_DIR": tmp})
        origin, edge = await start_cluster(["eu"], env, origin_region="na", wan=net)
        host = Host(audio=False)
        host.pc.getTransceivers()[0].sender.replaceTrack(StampedTrack())
        out: dict[str, object] = {}
        try:
            async with aiohttp.ClientSession() as http:
                await whip(http, origin.url, "b", auth.issue(user="h", role="host"), host)
                tok = auth.issue(user="v", role="viewer")
                on_origin = [TimedViewer() for _ in range(viewers)]
                on_edge = [TimedViewer() for _ in range(viewers)]
                for v in on_origin:
                    await whep(http, origin.url, "b", tok, v)
                for v in on_edge:
                    await whep(http, edge.url, "b", tok, v)
                await asyncio.sleep(2)  # warm-up: first keyframe, jitter buffers
                for v in on_origin + on_edge:
                    v.delays.clear()
                b0 = await metric(http, origin.url, "live_media_bytes_forwarded_total")
                await asyncio.sleep(seconds)
                b1 = await metric(http, origin.url, "live_media_bytes_forwarded_total")
                for name, group in (("origin", on_origin), ("edge", on_edge)):
                    d = [x for v in group for x in v.delays]
                    out[name] = {
                        "frames": len(d),
                        "p50_ms": round(pct(d, 0.5), 1),
                        "p95_ms": round(pct(d, 0.95), 1),
                        "mean_ms": round(statistics.mean(d) * 1000, 1),
                    }
                out["wan_one_way_ms"] = one_way_ms
                for q in ("p50_ms", "p95_ms"):
                    hop = out["edge"][q] - out["origin"][q] - one_way_ms  # type: ignore[index]
                    out[f"edge_hop_{q}"] = round(hop, 1)
                out["origin_egress_kbps"] = round(((b1 or 0) - (b0 or 0)) * 8 / seconds / 1000)
                out["origin_viewer_sessions"] = await metric(http, origin.url, "live_media_viewers")
                for v in on_origin + on_edge:
                    await v.close()
        finally:
            await host.close()
            await stop_all([edge, origin])
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--viewers", type=int, default=4)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--wan", action="store_true", help="nodes in network namespaces (root)")
    a = p.parse_args()
    os.environ.setdefault("LIVE_LOG_JSON", "false")
    print(json.dumps(asyncio.run(main(a.viewers, a.seconds, a.wan)), indent=2))
