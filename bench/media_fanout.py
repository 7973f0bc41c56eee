"""Fan-out benchmark: one host stream (pre-encoded VP8 ~1.5 Mbps 30 fps + Opus) to N viewers.

    python bench/media_fanout.py --viewers 10,25,50 --seconds 10 [--mode forward|relay]

The server runs pinned to one core (taskset), the host and the receive-only viewers to another.
Viewers count RTP packets and assembled frames without decoding (media.aiortc_hooks.ReceiverTap).
`--mode relay` runs aiortc's MediaRelay instead (decode once, encode per viewer) for comparison.
Only loopback is used; every loop is bounded by --seconds and a setup timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import av
import numpy as np
from aiohttp import ClientSession, web
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaRelay

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from media import MediaConfig, MediaServer
from media import aiortc_hooks as hooks
from media.frames import EncodedFrame

VIDEO_TB = fractions.Fraction(1, 90000)
AUDIO_TB = fractions.Fraction(1, 48000)


# -- server -------------------------------------------------------------------------------------


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def sdp_response(sdp: str) -> web.Response:
    return web.Response(status=201, text=sdp, content_type="application/sdp")


async def until(condition: Any, limit_s: float) -> None:
    """Poll `condition` (state of aiortc objects that fire no event we can await) within limit_s."""
    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark setup took too long")
        await asyncio.sleep(0.05)


async def run_server(port: int, mode: str) -> None:
    hooks.set_ice_addresses(["127.0.0.1"])
    media = MediaServer(MediaConfig(ice_addresses=["127.0.0.1"]))
    relay = MediaRelay()
    relay_tracks: dict[str, MediaStreamTrack] = {}
    pcs: list[RTCPeerConnection] = []

    async def answer(pc: RTCPeerConnection, sdp: str) -> str:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        return sdp

    async def whip(request: web.Request) -> web.Response:
        sdp = await request.text()
        if mode == "forward":
            _, ans = await media.publish("bench", sdp)
            return sdp_response(ans)
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pcs.append(pc)
        pc.on("track", lambda t: relay_tracks.__setitem__(t.kind, t))
        await answer(pc, sdp)
        await pc.setLocalDescription(await pc.createAnswer())
        return sdp_response(pc.localDescription.sdp)

    async def whep(request: web.Request) -> web.Response:
        sdp = await request.text()
        if mode == "forward":
            _, ans = await media.play("bench", sdp)
            return sdp_response(ans)
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pcs.append(pc)
        await answer(pc, sdp)
        for t in pc.getTransceivers():
            if t.kind in relay_tracks:
                t.sender.replaceTrack(relay.subscribe(relay_tracks[t.kind]))
                t.direction = "sendonly"
        await pc.setLocalDescription(await pc.createAnswer())
        return sdp_response(pc.localDescription.sdp)

    async def stats(request: web.Request) -> web.Response:
        t = os.times()
        s = media.stats()
        return web.json_response(
            {
                "cpu": t.user + t.system,
                "wall": time.monotonic(),
                "rss": rss_bytes(),
                "viewers": s.viewers,
                "dropped": s.frames_dropped,
                "skips": s.viewer_skips,
                "keyframe_requests": s.keyframe_requests,
            }
        )

    stop = asyncio.Event()

    async def quit_(request: web.Request) -> web.Response:
        stop.set()
        return web.Response(text="bye")

    app = web.Application()
    app.add_routes(
        [
            web.post("/whip", whip),
            web.post("/whep", whep),
            web.get("/stats", stats),
            web.post("/quit", quit_),
        ]
    )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("ready", flush=True)
    try:
        async with asyncio.timeout(3600):
            await stop.wait()
    finally:
        await media.shutdown()
        for pc in pcs:
            await pc.close()
        await runner.cleanup()


# -- host ---------------------------------------------------------------------------------------


def encode_vp8(frames: int, width: int = 640, height: int = 480) -> list[tuple[bytes, bool]]:
    """Pre-encode a changing picture once, so the host costs no encoding during the run."""
    ctx = av.CodecContext.create("libvpx", "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
    ctx.time_base = fractions.Fraction(1, 30)
    ctx.framerate = fractions.Fraction(30, 1)
    ctx.bit_rate = 1_500_000
    ctx.gop_size = 60
    ctx.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    out: list[tuple[bytes, bool]] = []
    for i in range(frames):
        img = np.roll(noise, i * 4, axis=1)
        frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        out += [(bytes(p), p.is_keyframe) for p in ctx.encode(frame)]
    return out


def encode_opus(frames: int) -> list[bytes]:
    ctx = av.CodecContext.create("libopus", "w")
    ctx.sample_rate, ctx.format, ctx.layout = 48000, "s16", "stereo"
    ctx.bit_rate = 64000
    out: list[bytes] = []
    for i in range(frames):
        t = (np.arange(960) + i * 960) / 48000
        pcm = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(np.repeat(pcm, 2).reshape(1, -1), layout="stereo")
        frame.sample_rate, frame.pts = 48000, i * 960
        out += [bytes(p) for p in ctx.encode(frame)]
    return out


class LoopTrack(MediaStreamTrack):
    """Replays pre-encoded packets in real time; the sender packs them (no encoder)."""

    def __init__(self, kind: str, packets: list[bytes], interval: float, ticks: int) -> None:
        super().__init__()
        self.kind = kind
        self._packets = packets
        self._interval = interval
        self._ticks = ticks
        self._i = 0
        self._t0: float | None = None

    async def recv(self) -> av.Packet:  # type: ignore[type-arg]
        loop = asyncio.get_running_loop()
        if self._t0 is None:
            self._t0 = loop.time()
        wait = self._t0 + self._i * self._interval - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        packet = av.Packet(self._packets[self._i % len(self._packets)])
        packet.pts = self._i * self._ticks
        packet.time_base = VIDEO_TB if self.kind == "video" else AUDIO_TB
        self._i += 1
        return packet


# -- viewers ------------------------------------------------------------------------------------


class CountingViewer:
    """Receive-only peer that counts packets and frames through the tap: nothing is decoded."""

    def __init__(self) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.frames = {"video": 0, "audio": 0}
        self.first_frame_at: float | None = None
        self.started = time.monotonic()
        self.taps: list[hooks.ReceiverTap] = []
        for kind in ("video", "audio"):
            t = self.pc.addTransceiver(kind, direction="recvonly")
            self.taps.append(hooks.ReceiverTap(t.receiver, kind, self._on_frame, epoch=0))

    def _on_frame(self, frame: EncodedFrame) -> None:
        self.frames[frame.kind] += 1
        if frame.kind == "video" and self.first_frame_at is None:
            self.first_frame_at = time.monotonic()

    async def loss(self) -> tuple[int, int]:
        received = lost = 0
        for t in self.pc.getTransceivers():
            report = await t.receiver.getStats()
            for s in report.values():
                if s.type == "inbound-rtp" and s.kind == "video":
                    received += s.packetsReceived
                    lost += max(0, s.packetsLost)
        return received, lost


async def negotiate(http: ClientSession, url: str, pc: RTCPeerConnection) -> None:
    await pc.setLocalDescription(await pc.createOffer())
    async with http.post(url, data=pc.localDescription.sdp) as r:
        assert r.status == 201, await r.text()
        sdp = await r.text()
    await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))


async def run_client(base: str, viewers: int, seconds: float) -> dict[str, Any]:
    hooks.set_ice_addresses(["127.0.0.1"])
    video = encode_vp8(120)
    audio = encode_opus(150)
    host = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    vt = host.addTransceiver(
        LoopTrack("video", [d for d, _ in video], 1 / 30, 3000), direction="sendonly"
    )
    vt.setCodecPreferences(
        [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/VP8"]
    )
    host.addTransceiver(LoopTrack("audio", audio, 0.02, 960), direction="sendonly")
    bitrate = sum(len(d) for d, _ in video) * 8 / (len(video) / 30)
    peers: list[CountingViewer] = []
    async with ClientSession() as http:
        await negotiate(http, f"{base}/whip", host)
        await until(lambda: host.connectionState == "connected", 60)
        await asyncio.sleep(1.0)
        for _ in range(viewers):
            v = CountingViewer()
            peers.append(v)
            await negotiate(http, f"{base}/whep", v.pc)
        await until(lambda: all(v.first_frame_at is not None for v in peers), 60)
        ttff = sorted(v.first_frame_at - v.started for v in peers if v.first_frame_at)
        await asyncio.sleep(1.0)  # settle: GOP bursts are not steady state
        async with http.get(f"{base}/stats") as r:
            before = await r.json()
        counts = [dict(v.frames) for v in peers]
        losses0 = [await v.loss() for v in peers]
        client0 = os.times()
        await asyncio.sleep(seconds)
        async with http.get(f"{base}/stats") as r:
            after = await r.json()
        client1 = os.times()
        losses1 = [await v.loss() for v in peers]
        fps = sorted(
            (v.frames["video"] - c["video"]) / seconds for v, c in zip(peers, counts, strict=True)
        )
        loss_pct = []
        for (r0, l0), (r1, l1) in zip(losses0, losses1, strict=True):
            got, lost = r1 - r0, l1 - l0
            loss_pct.append(100.0 * lost / max(1, got + lost))
        wall = after["wall"] - before["wall"]
        server_cpu = (after["cpu"] - before["cpu"]) / wall
        client_cpu = (client1.user + client1.system - client0.user - client0.system) / seconds
        for v in peers:
            await v.pc.close()
        await host.close()
        async with http.post(f"{base}/quit"):
            pass
    return {
        "viewers": viewers,
        "stream_kbps": round(bitrate / 1000),
        "server_cpu_cores": round(server_cpu, 3),
        "server_cpu_per_viewer_pct": round(100 * server_cpu / viewers, 3),
        "client_cpu_cores": round(client_cpu, 3),
        "fps_min": round(fps[0], 1),
        "fps_median": round(fps[len(fps) // 2], 1),
        "loss_pct_max": round(max(loss_pct), 2),
        "ttff_median_ms": round(1000 * ttff[len(ttff) // 2]),
        "ttff_max_ms": round(1000 * ttff[-1]),
        "server_rss_mb": round(after["rss"] / 2**20, 1),
        "dropped_frames": after["dropped"],
        "skips": after["skips"],
    }


# -- driver -------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd")
    s = sub.add_parser("server")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--mode", default="forward", choices=["forward", "relay"])
    c = sub.add_parser("client")
    c.add_argument("--url", required=True)
    c.add_argument("--viewers", type=int, required=True)
    c.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--viewers", default="10,25,50")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--mode", default="forward", choices=["forward", "relay"])
    parser.add_argument("--server-cpu", default="0")
    parser.add_argument("--client-cpu", default="1")
    parser.add_argument("--port", type=int, default=18555)
    args = parser.parse_args()
    if args.cmd == "server":
        asyncio.run(run_server(args.port, args.mode))
        return
    if args.cmd == "client":
        print(json.dumps(asyncio.run(run_client(args.url, args.viewers, args.seconds))))
        return
    me = [sys.executable, __file__]
    for n in [int(x) for x in args.viewers.split(",")]:
        server = subprocess.Popen(
            [
                "taskset",
                "-c",
                args.server_cpu,
                *me,
                "server",
                "--port",
                str(args.port),
                "--mode",
                args.mode,
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None
            assert server.stdout.readline().strip() == "ready"
            out = subprocess.run(
                [
                    "taskset",
                    "-c",
                    args.client_cpu,
                    *me,
                    "client",
                    "--url",
                    f"http://127.0.0.1:{args.port}",
                    "--viewers",
                    str(n),
                    "--seconds",
                    str(args.seconds),
                ],
                capture_output=True,
                text=True,
                timeout=args.seconds + 180,
            )
            line = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else out.stderr[-2000:]
            print(json.dumps({"mode": args.mode, **json.loads(line)}) if line[:1] == "{" else line)
        finally:
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()


if __name__ == "__main__":
    main()
