"""`live loadtest media`: one host stream (pre-encoded VP8 ~1.5 Mbps 30 fps + Opus) to N viewers.

    scripts/loopback-only live loadtest media --viewers 50,100,200 --seconds 10 \
        --modes forward,aiortc,relay --json bench-results/media.json

The server runs pinned to one core (taskset), the host and the receive-only viewers to another.
Modes: `forward` (the fast send path: media.rtp_writer), `aiortc` (forwarding through each
viewer's aiortc RTCRtpSender), `relay` (aiortc's MediaRelay: decode once, encode per viewer),
`janus` and `janus1` (the Debian Janus streaming plugin as a reference, see loadtest.benches.janus).
Viewers (`--viewer lean`, the default) let aiortc do ICE and DTLS, then SRTP-decrypt each datagram
and read its RTP header in one plain callback: sequence gaps are loss, marker bits are frames;
nothing is decoded. `--viewer aiortc` counts through aiortc's receivers instead (heavier).
Only loopback is used; every loop is bounded by --seconds and setup timeouts. One JSON line per
run is printed; --out appends them to a file, --json writes them as one document.

The server, host and client processes are this module's own roles
(`python -m loadtest.benches.media server|host|client ...`), started by the driver (`run_matrix`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fractions
import json
import os
import pickle
import shutil
import socket
import struct
import subprocess
import sys
import time
import urllib.request
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

from loadtest.benches import janus
from loadtest.cli.media import MODES
from media import MediaConfig, MediaServer
from media import aiortc_hooks as hooks
from media.frames import EncodedFrame

VIDEO_TB = fractions.Fraction(1, 90000)
AUDIO_TB = fractions.Fraction(1, 48000)


# -- server -------------------------------------------------------------------------------------


TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def process_figures(pid: int) -> tuple[float, float, int, float]:
    """(user+system CPU s, system CPU s, RSS bytes, seconds its threads were runnable but
    waiting for a CPU) of one process, from /proc."""
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    user, system = int(stat[11]) / TICKS, int(stat[12]) / TICKS
    wait = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            wait += int((task / "schedstat").read_text().split()[1])
    return user + system, system, int(stat[21]) * PAGE, wait / 1e9


def sdp_response(sdp: str) -> web.Response:
    return web.Response(status=201, text=sdp, content_type="application/sdp")


async def until(condition: Any, limit_s: float) -> None:
    """Poll `condition` (state of aiortc objects that fire no event we can await) within limit_s."""
    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark setup took too long")
        await asyncio.sleep(0.05)


async def run_server(port: int, mode: str, workers: int = 0) -> None:
    hooks.set_ice_addresses(["127.0.0.1"])
    media = MediaServer(
        MediaConfig(
            ice_addresses=["127.0.0.1"],
            send_path="aiortc" if mode == "aiortc" else "fast",
            workers=workers,
        )
    )
    await media.start()
    # Say on stderr when the host's session ends: a stream that stops mid-run is then explained.
    media.add_listener(lambda e: print(f"server: {e.kind} {e.session_id}", file=sys.stderr))
    relay = MediaRelay()
    relay_tracks: dict[str, MediaStreamTrack] = {}
    pcs: list[RTCPeerConnection] = []

    async def answer(pc: RTCPeerConnection, sdp: str) -> str:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        return sdp

    async def whip(request: web.Request) -> web.Response:
        sdp = await request.text()
        if mode != "relay":
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
        if mode != "relay":
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
        # The server's figures include its media worker processes'.
        pids = [os.getpid()]
        if media.workers is not None:
            pids += [link.pid for link in media.workers.links if link is not None and link.pid]
        figures = [process_figures(pid) for pid in pids]
        s = media.stats()
        return web.json_response(
            {
                "cpu": sum(f[0] for f in figures),
                "cpu_sys": sum(f[1] for f in figures),
                "wall": time.monotonic(),
                "rss": sum(f[2] for f in figures),
                "runqueue_wait": sum(f[3] for f in figures),
                "workers": [w.viewers for w in s.workers],
                "viewers": s.viewers,
                "frames_in": s.frames_in,
                "video_frames_in": sum(r.video.frames_in for r in media.rooms.values()),
                "udp_send_drops": sum(
                    sender._udp.dropped
                    for session in media.sessions.values()
                    for sender in session.senders.values()
                    if sender._udp is not None
                ),
                "packets_in": s.packets_in,
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


def stream() -> tuple[list[tuple[bytes, bool]], list[bytes]]:
    """The pre-encoded stream, encoded once and kept under bench-results/ so every run and mode
    sends the same bytes (libvpx's realtime mode adapts its output to the CPU it gets)."""
    cache = RESULTS / "stream-vp8-640x480-opus.pickle"
    if cache.exists():
        video, audio = pickle.loads(cache.read_bytes())
        return video, audio
    video, audio = encode_vp8(120), encode_opus(150)
    RESULTS.mkdir(exist_ok=True)
    cache.write_bytes(pickle.dumps((video, audio)))
    return video, audio


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
        elif wait < -3 * self._interval:
            # Starved by the shared core: resume at the frame rate instead of bursting to catch up.
            self._t0 -= wait
        packet = av.Packet(self._packets[self._i % len(self._packets)])
        packet.pts = self._i * self._ticks
        packet.time_base = VIDEO_TB if self.kind == "video" else AUDIO_TB
        self._i += 1
        return packet


# -- viewers ------------------------------------------------------------------------------------


class StreamCount:
    """Counts one RTP stream: packets, frames (marker bits) and the extended highest sequence."""

    __slots__ = ("first", "frames", "highest", "received")

    def __init__(self) -> None:
        self.first: int | None = None
        self.highest = 0
        self.received = 0
        self.frames = 0

    def add(self, seq: int, marker: int) -> None:
        if DEBUG_SEQ is not None and len(DEBUG_SEQ) < 400:
            DEBUG_SEQ.append((seq, marker))
        if self.first is None:
            self.first = self.highest = seq
        else:
            delta = (seq - self.highest) & 0xFFFF
            if delta < 0x8000:
                self.highest += delta
        self.received += 1
        self.frames += marker

    def snapshot(self) -> tuple[int, int, int]:
        """(packets expected, packets received, frames)."""
        expected = 0 if self.first is None else self.highest - self.first + 1
        return expected, self.received, self.frames


class Viewer:
    """Receive-only peer; nothing is decoded. aiortc's receivers hold a ReceiverTap from the start
    (frames that arrive before `lean()` are assembled, never decoded)."""

    def __init__(self, offerer: bool = True) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.video = StreamCount()
        self.audio = StreamCount()
        self.first_frame_at: float | None = None
        self.started = time.monotonic()
        self.undecryptable = 0
        self.lean_attached = False
        if offerer:
            for kind in ("video", "audio"):
                self.pc.addTransceiver(kind, direction="recvonly")
            self.tap()

        @self.pc.on("connectionstatechange")
        def _state() -> None:
            if self.pc.connectionState == "connected" and LEAN:
                self.lean()

    def tap(self) -> None:
        """Put a ReceiverTap on each receiver (as answerer: after setRemoteDescription)."""
        for t in self.pc.getTransceivers():
            hooks.ReceiverTap(t.receiver, t.kind, self._on_frame, epoch=0)

    def _on_frame(self, frame: EncodedFrame) -> None:
        # the aiortc path (before lean() or with --viewer aiortc)
        count = self.video if frame.kind == "video" else self.audio
        count.frames += 1
        if frame.kind == "video" and self.first_frame_at is None:
            self.first_frame_at = time.monotonic()

    def lean(self) -> None:
        """From now on each SRTP datagram is decrypted and counted in one plain callback."""
        if self.lean_attached:
            return
        transceivers = self.pc.getTransceivers()
        dtls = transceivers[0].receiver.transport
        pair = dtls.transport._connection._nominated.get(1)
        if pair is None or dtls._rx_srtp is None:
            return
        streams: dict[int, StreamCount] = {}
        for t in transceivers:
            count = self.video if t.kind == "video" else self.audio
            for codec in t._codecs:
                if codec.payloadType is not None and not codec.mimeType.lower().endswith("/rtx"):
                    streams[codec.payloadType] = count
        protocol = pair.protocol
        # These viewers share one core: a deep receive buffer stands in for a client's own CPU
        # keeping up (kernel drops on a full buffer would count as loss).
        sock = protocol.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 4 << 20)
        original = protocol.datagram_received
        unprotect = dtls._rx_srtp.unprotect
        video = self.video
        unpack = struct.Struct("!BBH").unpack_from

        def datagram_received(data: bytes | str, addr: tuple[Any, ...]) -> None:
            # RTP: version 2 and not an RTCP packet type (RFC 5761); anything else goes to aioice.
            if (
                isinstance(data, bytes)
                and 127 < data[0] < 192
                and len(data) > 12
                and not 191 < data[1] < 224
            ):
                try:
                    data = unprotect(data)
                except Exception:
                    self.undecryptable += 1
                    return
                _, second, seq = unpack(data)
                count = streams.get(second & 0x7F)
                if count is not None:
                    count.add(seq, second >> 7)
                    if count is video and second >> 7 and self.first_frame_at is None:
                        self.first_frame_at = time.monotonic()
                return
            original(data, addr)

        # Replacing the bound method on this one protocol instance is the point of the lean
        # viewer (aioice calls it for every datagram); mypy forbids assigning to methods.
        protocol.datagram_received = datagram_received  # type: ignore[method-assign]
        self.lean_attached = True

    async def aiortc_loss(self) -> tuple[int, int]:
        received = lost = 0
        for t in self.pc.getTransceivers():
            report = await t.receiver.getStats()
            for s in report.values():
                if s.type == "inbound-rtp" and s.kind == "video":
                    received += s.packetsReceived
                    lost += max(0, s.packetsLost)
        return received + lost, received

    async def snapshot(self) -> tuple[int, int, int]:
        """(video packets expected, received, video frames) so far."""
        if self.lean_attached:
            return self.video.snapshot()
        expected, received = await self.aiortc_loss()
        return expected, received, self.video.frames


LEAN = True
DEBUG_SEQ: list[tuple[int, int]] | None = [] if os.environ.get("BENCH_DEBUG_SEQ") else None
JANUS_PID = 0  # measure this Janus process instead of our server
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)


async def negotiate(http: ClientSession, url: str, pc: RTCPeerConnection) -> None:
    await pc.setLocalDescription(await pc.createOffer())
    async with http.post(url, data=pc.localDescription.sdp) as r:
        assert r.status == 201, await r.text()
        sdp = await r.text()
    await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))


async def janus_negotiate(api: janus.JanusApi, viewer: Viewer) -> None:
    path, offer = await api.watch()
    await viewer.pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
    viewer.tap()
    await viewer.pc.setLocalDescription(await viewer.pc.createAnswer())
    await api.start(path, viewer.pc.localDescription.sdp)


def proc_stats(pid: int) -> dict[str, Any]:
    """What /stats reports, read from /proc for a server we do not run (Janus)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    utime, stime = int(fields[11]) / tick, int(fields[12]) / tick
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
    wait = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            wait += int((task / "schedstat").read_text().split()[1])
    return {
        "cpu": utime + stime,
        "cpu_sys": stime,
        "wall": time.monotonic(),
        "rss": rss,
        "runqueue_wait": wait / 1e9,
        "video_frames_in": 0,
        "udp_send_drops": 0,
        "dropped": None,
        "skips": None,
    }


async def server_stats(http: ClientSession, base: str) -> dict[str, Any]:
    if JANUS_PID:
        return proc_stats(JANUS_PID)
    async with http.get(f"{base}/stats") as r:
        result: dict[str, Any] = await r.json()
        return result


async def run_janus_feed(limit_s: float) -> None:
    """Feed Janus's mountpoint the same pre-encoded stream over plain RTP until stdin closes."""
    video_frames, audio = stream()
    video = [d for d, _ in video_frames]
    bitrate = sum(len(d) for d in video) * 8 / (len(video) / 30)
    stop = asyncio.Event()
    feeding = asyncio.ensure_future(janus.feed(video, audio, limit_s, stop))
    await asyncio.sleep(2.0)
    print(json.dumps({"live": True, "stream_kbps": round(bitrate / 1000)}), flush=True)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.to_thread(sys.stdin.read), limit_s)
    stop.set()
    await feeding


async def run_host(base: str, limit_s: float) -> None:
    """Publish the pre-encoded stream until stdin closes (or limit_s): its own process, so the
    viewers' event loop does not pace it."""
    hooks.set_ice_addresses(["127.0.0.1"])
    video, audio = stream()
    host = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    vt = host.addTransceiver(
        LoopTrack("video", [d for d, _ in video], 1 / 30, 3000), direction="sendonly"
    )
    vt.setCodecPreferences(
        [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/VP8"]
    )
    host.addTransceiver(LoopTrack("audio", audio, 0.02, 960), direction="sendonly")
    bitrate = sum(len(d) for d, _ in video) * 8 / (len(video) / 30)
    host.on(
        "connectionstatechange",
        lambda: print(f"host: {host.connectionState} at {time.monotonic():.1f}", file=sys.stderr),
    )
    async with ClientSession() as http:
        await negotiate(http, f"{base}/whip", host)
        await until(lambda: host.connectionState == "connected", 60)
    await asyncio.sleep(1.0)
    print(json.dumps({"live": True, "stream_kbps": round(bitrate / 1000)}), flush=True)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.to_thread(sys.stdin.read), limit_s)
    await host.close()


async def run_client(base: str, viewers: int, seconds: float, batch: int) -> dict[str, Any]:
    # Janus's libnice ignores a loopback-interface peer: its viewers use Janus's 127.0.0.2 too.
    hooks.set_ice_addresses([janus.ADDRESS if JANUS_PID else "127.0.0.1"])
    peers: list[Viewer] = []
    async with ClientSession() as http:
        idle = await server_stats(http, base)
        base_stats = idle
        setup_t0 = time.monotonic()
        for start in range(0, viewers, batch):
            group = [Viewer(offerer=not JANUS_PID) for _ in range(min(batch, viewers - start))]
            peers += group
            async with asyncio.timeout(120):
                if JANUS_PID:
                    api = janus.JanusApi(http, base)
                    await asyncio.gather(*(janus_negotiate(api, v) for v in group))
                else:
                    await asyncio.gather(*(negotiate(http, f"{base}/whep", v.pc) for v in group))
            await until(lambda g=group: all(v.first_frame_at is not None for v in g), 120)
        setup_s = time.monotonic() - setup_t0
        ttff = sorted(v.first_frame_at - v.started for v in peers if v.first_frame_at)
        if LEAN:
            # A viewer whose DTLS finished after its "connected" event attaches now.
            for v in peers:
                v.lean()
        await asyncio.sleep(2.0)  # settle: GOP bursts are not steady state
        before = await server_stats(http, base)
        snaps0 = [await v.snapshot() for v in peers]
        client0 = os.times()
        t0 = time.monotonic()
        await asyncio.sleep(seconds)
        snaps1 = [await v.snapshot() for v in peers]
        elapsed = time.monotonic() - t0
        client1 = os.times()
        after = await server_stats(http, base)
        fps = sorted((b[2] - a[2]) / elapsed for a, b in zip(snaps0, snaps1, strict=True))
        loss_pct = sorted(
            100.0 * max(0, (b[0] - a[0]) - (b[1] - a[1])) / max(1, b[0] - a[0])
            for a, b in zip(snaps0, snaps1, strict=True)
        )
        wall = after["wall"] - before["wall"]
        server_cpu = (after["cpu"] - before["cpu"]) / wall
        client_cpu = (client1.user + client1.system - client0.user - client0.system) / elapsed
        for v in peers:
            await v.pc.close()
    ok = [f >= 29 and lo < 1 for f, lo in zip(fps, reversed(loss_pct), strict=True)]
    if DEBUG_SEQ is not None:
        print(DEBUG_SEQ, file=sys.stderr)
    return {
        "viewers": viewers,
        "viewer_kind": "lean" if LEAN else "aiortc",
        "seconds": round(elapsed, 1),
        "server_cpu_cores": round(server_cpu, 3),
        "server_cpu_per_viewer_pct": round(100 * server_cpu / viewers, 3),
        "viewers_per_core": round(viewers / server_cpu) if server_cpu > 0 else None,
        "server_cpu_sys_share": round(
            (after["cpu_sys"] - before["cpu_sys"]) / max(1e-9, after["cpu"] - before["cpu"]), 2
        ),
        "server_runqueue_wait_pct": round(
            100 * (after["runqueue_wait"] - before["runqueue_wait"]) / wall, 1
        ),
        "client_cpu_cores": round(client_cpu, 3),
        "fps_min": round(fps[0], 1),
        "fps_median": round(fps[len(fps) // 2], 1),
        "loss_pct_median": round(loss_pct[len(loss_pct) // 2], 2),
        "loss_pct_max": round(loss_pct[-1], 2),
        "all_viewers_ok": all(ok) and fps[0] >= 29 and loss_pct[-1] < 1,
        "ttff_median_ms": round(1000 * ttff[len(ttff) // 2]),
        "ttff_max_ms": round(1000 * ttff[-1]),
        "setup_s": round(setup_s, 1),
        "server_video_fps_in": round(
            (after["video_frames_in"] - before["video_frames_in"]) / wall, 1
        ),
        "server_rss_mb": round(after["rss"] / 2**20, 1),
        "server_rss_with_host_mb": round(idle["rss"] / 2**20, 1),
        "rss_per_viewer_kb": round((after["rss"] - base_stats["rss"]) / 1024 / viewers, 1),
        "undecryptable": sum(v.undecryptable for v in peers),
        "lean_viewers": sum(v.lean_attached for v in peers),
        "server_udp_send_drops": after["udp_send_drops"] - before["udp_send_drops"],
        "dropped_frames": after["dropped"],
        "skips": after["skips"],
        "worker_viewers": after.get("workers", []),  # per media worker process, if any
    }


# -- driver -------------------------------------------------------------------------------------


def run_loop(coro: Any, loop: str) -> Any:
    if loop == "uvloop":
        import uvloop

        return uvloop.run(coro)
    return asyncio.run(coro)


def main(argv: list[str] | None = None) -> None:
    """The roles the driver starts as processes: `server`, `host` and `client`."""
    global LEAN, JANUS_PID
    parser = argparse.ArgumentParser(description="a role of `live loadtest media` (internal)")
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("server")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--mode", default="forward", choices=MODES)
    s.add_argument("--loop", default="asyncio", choices=["asyncio", "uvloop"])
    s.add_argument("--workers", type=int, default=0, help="media worker processes")
    c = sub.add_parser("client")
    c.add_argument("--url", required=True)
    c.add_argument("--viewers", type=int, required=True)
    c.add_argument("--seconds", type=float, default=10)
    c.add_argument("--batch", type=int, default=10)
    c.add_argument("--viewer", default="lean", choices=["lean", "aiortc"])
    c.add_argument("--loop", default="asyncio", choices=["asyncio", "uvloop"])
    c.add_argument("--janus-pid", type=int, default=0)
    h = sub.add_parser("host")
    h.add_argument("--url", required=True)
    h.add_argument("--limit", type=float, default=900)
    h.add_argument("--janus", action="store_true", help="feed Janus over RTP instead of WHIP")
    args = parser.parse_args(argv)
    if args.cmd == "server":
        run_loop(run_server(args.port, args.mode, args.workers), args.loop)
    elif args.cmd == "host":
        asyncio.run(run_janus_feed(args.limit) if args.janus else run_host(args.url, args.limit))
    else:
        LEAN = args.viewer == "lean"
        JANUS_PID = args.janus_pid
        # asyncio, whatever the server runs: uvloop caches datagram_received, so the lean hook
        # (an instance attribute on aioice's protocol) would never be called.
        result = asyncio.run(run_client(args.url, args.viewers, args.seconds, args.batch))
        print(json.dumps(result))


def run_matrix(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Each viewer count with each mode, one after another; one JSON line printed per run (and
    appended to --out). `args` holds the options of `live loadtest media`."""
    me = [sys.executable, "-m", "loadtest.benches.media"]
    if os.geteuid() == 0:
        # With autogroup scheduling nice only ranks processes within a session: raise this
        # session's group (all the bench processes) above unrelated work sharing the machine.
        with contextlib.suppress(OSError):
            Path("/proc/self/autogroup").write_text("-15")
    results: list[dict[str, Any]] = []
    for n in args.viewers:
        for mode in args.modes:
            line = run_one(args, me, mode, n)
            print(line, flush=True)
            results.append(json.loads(line))
            if args.out:
                with open(args.out, "a") as f:
                    f.write(line + "\n")
    return results


def taskset(cpus: str, nice: int = -15) -> list[str]:
    """Pin to `cpus`; as root, also run ahead of unrelated work sharing the machine."""
    prio = ["nice", "-n", str(nice)] if os.geteuid() == 0 else []
    return [*prio, "taskset", "-c", cpus]


MODES_WITH_WORKERS = ("forward", "aiortc")  # our MediaServer's send paths


def start_server(args: argparse.Namespace, me: list[str], mode: str) -> subprocess.Popen[str]:
    """Our server (prints "ready"), or Janus configured in JANUS_DIR."""
    if mode.startswith("janus"):
        janus.add_loopback_alias()
        RESULTS.mkdir(exist_ok=True)
        folder = RESULTS / JANUS_DIR
        shutil.rmtree(folder, ignore_errors=True)  # the previous run's configuration and log
        folder.mkdir()
        # "janus": stock (a thread per session); "janus1": event_loops = 1, fairer on one core
        janus.write_config(folder, args.port, event_loops=1 if mode == "janus1" else 0)
        proc = subprocess.Popen(
            [*taskset(args.server_cpu), "janus", "-F", str(folder), "-C", f"{folder}/janus.jcfg"],
            stdout=open(folder / "janus.log", "w"),  # noqa: SIM115 (lives as long as janus)
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"http://127.0.0.1:{args.port}/janus/info", timeout=2)
                return proc
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError(f"janus did not start, see {folder}/janus.log")
            time.sleep(0.2)
    server = subprocess.Popen(
        [
            *taskset(args.server_cpu),
            *me,
            "server",
            *("--port", str(args.port), "--mode", mode, "--loop", args.loop),
            *(
                "--workers",
                str(getattr(args, "media_workers", 0) if mode in MODES_WITH_WORKERS else 0),
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    assert server.stdout.readline().strip() == "ready"
    return server


def run_one(args: argparse.Namespace, me: list[str], mode: str, n: int) -> str:
    workers = getattr(args, "media_workers", 0) if mode in MODES_WITH_WORKERS else 0
    pin: dict[str, Any] = {
        "server_cpu": args.server_cpu, "client_cpu": args.client_cpu, "loop": args.loop,
        "media_workers": workers,
    }  # fmt: skip
    if mode.startswith("janus"):
        pin["loop"] = mode
    server = start_server(args, me, mode)
    host: subprocess.Popen[str] | None = None
    url = f"http://127.0.0.1:{args.port}"
    try:
        janus_feed = ["--janus"] if mode.startswith("janus") else []
        host = subprocess.Popen(
            [*taskset(args.client_cpu, nice=-20), *me, "host", "--url", url, *janus_feed],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert host.stdout is not None
        live = json.loads(host.stdout.readline())
        out = subprocess.run(
            [
                *taskset(args.client_cpu),
                *me,
                "client",
                *("--url", f"{url}/janus" if mode.startswith("janus") else url),
                *("--viewers", str(n)),
                *("--seconds", str(args.seconds), "--batch", str(args.batch)),
                *("--viewer", args.viewer, "--loop", args.loop),
                *("--janus-pid", str(server.pid if mode.startswith("janus") else 0)),
            ],
            capture_output=True,
            text=True,
            timeout=args.seconds + 600,
        )
        line = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
        if line[:1] == "{":
            return json.dumps({"mode": mode, **pin, **live, **json.loads(line)})
        return json.dumps({"mode": mode, "viewers": n, **pin, "error": out.stderr[-1500:]})
    finally:
        if host is not None:
            assert host.stdin is not None
            host.stdin.close()
            try:
                host.wait(timeout=15)
            except subprocess.TimeoutExpired:
                host.kill()
        if mode.startswith("janus"):
            server.terminate()
        else:
            with contextlib.suppress(Exception):
                urllib.request.urlopen(f"{url}/quit", data=b"", timeout=5)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=15)


# The stream cache and Janus configurations; every role runs in the driver's directory.
RESULTS = Path("bench-results").resolve()
JANUS_DIR = "janus"  # under RESULTS: the last Janus run's configuration and janus.log


if __name__ == "__main__":
    main()
