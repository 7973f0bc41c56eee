"""The processes of `live loadtest media` (`loadtest.benches.media`): server, host and viewers.

Each runs as `python -m loadtest.benches.media_roles ROLE_JSON`, started by the driver with its
role (`ServerRole`, `HostRole` or `ClientRole`) on the command line:

- server: our `MediaServer` (or aiortc's MediaRelay in the relay mode) behind WHIP, WHEP and a
  /stats endpoint with its CPU, RSS and counters; prints "ready";
- host: publishes the pre-encoded stream (VP8 + Opus, encoded once and cached) until stdin
  closes, or feeds it to Janus over plain RTP; prints one JSON line when live;
- client: the receive-only viewers, measured over the run; prints one JSON line of figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pickle
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from aiohttp import ClientSession, web
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaRelay

from devtools.synthetic import ReplayTrack, encode_opus, encode_vp8
from loadtest.benches import janus
from loadtest.benches.media import ClientRole, HostRole, ServerRole, role_from
from loadtest.report import procfs
from media import MediaConfig, MediaError, MediaServer
from media import aiortc_compat as hooks
from media.aiortc_compat.lean_receive import RtpSequence, payload_types, take_over_receive
from media.frames import EncodedFrame

# -- server -------------------------------------------------------------------------------------


def process_figures(pid: int) -> procfs.ProcSample:
    """CPU, RSS and run-queue wait of a process of the run (gone: the run failed)."""
    sample = procfs.sample(pid, run_queue=True)
    if sample is None:
        raise RuntimeError(f"process {pid} is gone")
    return sample


def sdp_response(sdp: str) -> web.Response:
    return web.Response(status=201, text=sdp, content_type="application/sdp")


async def until(condition: Any, limit_s: float) -> None:
    """Poll `condition` (state of aiortc objects that fire no event we can await) within limit_s."""
    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark setup took too long")
        await asyncio.sleep(0.05)


async def run_server(role: ServerRole) -> None:
    mode = role.mode
    hooks.set_ice_addresses(["127.0.0.1"])
    media = MediaServer(
        MediaConfig(
            ice_addresses=["127.0.0.1"],
            send_path="aiortc" if mode == "aiortc" else "fast",
            workers=role.workers,
            admission=role.admission,
            admit_max_cpu=role.admit_max_cpu,
            admit_max_lag_s=role.admit_max_lag_ms / 1000,
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
            try:
                _, ans = await media.play("bench", sdp)
            except MediaError as exc:
                if exc.code != "full":
                    raise
                return web.json_response(
                    exc.body(), status=503, headers={"Retry-After": str(exc.retry_after or 2)}
                )
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
                "cpu": sum(f.cpu_s for f in figures),
                "cpu_sys": sum(f.system_s for f in figures),
                "wall": time.monotonic(),
                "rss": sum(f.rss_kb * 1024 for f in figures),
                "runqueue_wait": sum(f.runqueue_wait_s for f in figures),
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
                "admission_refusals": dict(media.admission_refusals),
                "loads": {name: load.to_json() for name, load in media.loads().items()},
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
    await web.TCPSite(runner, "127.0.0.1", role.port).start()
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


def stream(results: Path) -> tuple[list[tuple[bytes, bool]], list[bytes]]:
    """The pre-encoded stream, encoded once and kept under `results` (bench-results/) so every run
    and mode sends the same bytes (libvpx's realtime mode adapts its output to the CPU it gets)."""
    cache = results / "stream-vp8-640x480-opus.pickle"
    if cache.exists():
        video, audio = pickle.loads(cache.read_bytes())
        return video, audio
    video, audio = encode_vp8(120), encode_opus(150)
    results.mkdir(exist_ok=True)
    cache.write_bytes(pickle.dumps((video, audio)))
    return video, audio


# -- viewers ------------------------------------------------------------------------------------


class StreamCount(RtpSequence):
    """Counts one RTP stream: packets, frames (marker bits) and the extended highest sequence."""

    __slots__ = ("frames",)

    def __init__(self) -> None:
        super().__init__()
        self.frames = 0

    def add(self, seq: int, marker: int) -> None:
        self.advance(seq)
        self.frames += marker

    def snapshot(self) -> tuple[int, int, int]:
        """(packets expected, packets received, frames)."""
        return self.expected, self.received, self.frames


class Viewer:
    """Receive-only peer; nothing is decoded. aiortc's receivers hold a ReceiverTap from the start
    (frames that arrive before `lean()` are assembled, never decoded). A `lean` viewer counts
    through `media.aiortc_compat.lean_receive.take_over_receive` once connected."""

    def __init__(self, lean: bool, offerer: bool = True) -> None:
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
            if self.pc.connectionState == "connected" and lean:
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
        streams = {
            pt: self.video if kind == "video" else self.audio
            for pt, kind in payload_types(self.pc).items()
        }
        self.lean_attached = take_over_receive(self.pc, self, streams, self.video)

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


async def negotiate(http: ClientSession, url: str, pc: RTCPeerConnection) -> None:
    await pc.setLocalDescription(await pc.createOffer())
    async with http.post(url, data=pc.localDescription.sdp) as r:
        assert r.status == 201, await r.text()
        sdp = await r.text()
    await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))


async def offer_to(http: ClientSession, url: str, pc: RTCPeerConnection) -> tuple[int, str, float]:
    """Negotiate like `negotiate`, but a 503 refusal is an answer too: (status, the refusal's
    reason, its Retry-After); on 201 the answer is set."""
    await pc.setLocalDescription(await pc.createOffer())
    async with http.post(url, data=pc.localDescription.sdp) as r:
        if r.status == 503:
            body = await r.json()
            return 503, str(body.get("reason", body.get("error"))), float(r.headers["Retry-After"])
        assert r.status == 201, await r.text()
        sdp = await r.text()
    await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
    return 201, "", 0.0


async def admit(
    http: ClientSession, url: str, role: ClientRole
) -> tuple[list[Viewer], Counter[str], int]:
    """Offer `role.viewers` viewers, `role.batch` at once, each batch's admitted ones getting a
    first frame before the next batch; viewers refused with 503 offer again after Retry-After,
    at most `role.retries` more times. (admitted viewers, last refusal reasons of those refused
    for good, refusals in all)."""
    admitted: list[Viewer] = []
    waiting, refusals, last = role.viewers, 0, Counter[str]()
    for attempt in range(role.retries + 1):
        refused, pause, last = 0, 0.0, Counter()
        for start in range(0, waiting, role.batch):
            group = [Viewer(role.lean) for _ in range(min(role.batch, waiting - start))]
            async with asyncio.timeout(120):
                answers = await asyncio.gather(*(offer_to(http, url, v.pc) for v in group))
            ok = []
            for viewer, (status, reason, retry_after) in zip(group, answers, strict=True):
                if status == 201:
                    ok.append(viewer)
                else:
                    refused += 1
                    last[reason] += 1
                    pause = max(pause, retry_after)
                    await viewer.pc.close()
            admitted += ok
            await until(lambda g=ok: all(v.first_frame_at is not None for v in g), 120)
        refusals += refused
        waiting = refused
        if not waiting or attempt == role.retries:
            break
        await asyncio.sleep(pause)
    return admitted, last, refusals


async def janus_negotiate(api: janus.JanusApi, viewer: Viewer) -> None:
    path, offer = await api.watch()
    await viewer.pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
    viewer.tap()
    await viewer.pc.setLocalDescription(await viewer.pc.createAnswer())
    await api.start(path, viewer.pc.localDescription.sdp)


def proc_stats(pid: int) -> dict[str, Any]:
    """What /stats reports, read from /proc for a server we do not run (Janus)."""
    f = process_figures(pid)
    return {
        "cpu": f.cpu_s,
        "cpu_sys": f.system_s,
        "wall": time.monotonic(),
        "rss": f.rss_kb * 1024,
        "runqueue_wait": f.runqueue_wait_s,
        "video_frames_in": 0,
        "udp_send_drops": 0,
        "dropped": None,
        "skips": None,
    }


async def server_stats(http: ClientSession, base: str, janus_pid: int) -> dict[str, Any]:
    if janus_pid:
        return proc_stats(janus_pid)
    async with http.get(f"{base}/stats") as r:
        result: dict[str, Any] = await r.json()
        return result


async def run_janus_feed(role: HostRole) -> None:
    """Feed Janus's mountpoint the same pre-encoded stream over plain RTP until stdin closes."""
    limit_s = role.limit_s
    video_frames, audio = stream(Path(role.results))
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


async def run_host(role: HostRole) -> None:
    """Publish the pre-encoded stream until stdin closes (or its limit): its own process, so the
    viewers' event loop does not pace it."""
    base, limit_s = role.url, role.limit_s
    hooks.set_ice_addresses(["127.0.0.1"])
    video, audio = stream(Path(role.results))
    host = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    vt = host.addTransceiver(
        ReplayTrack("video", [d for d, _ in video], 30, 3000), direction="sendonly"
    )
    vt.setCodecPreferences(
        [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/VP8"]
    )
    host.addTransceiver(ReplayTrack("audio", audio, 50, 960), direction="sendonly")
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


async def run_client(role: ClientRole) -> dict[str, Any]:
    """The viewers of one run, measured: the JSON line the driver reads."""
    base, viewers, seconds, batch = role.url, role.viewers, role.seconds, role.batch
    janus_pid = role.janus_pid
    # Janus's libnice ignores a loopback-interface peer: its viewers use Janus's 127.0.0.2 too.
    hooks.set_ice_addresses([janus.ADDRESS if janus_pid else "127.0.0.1"])
    peers: list[Viewer] = []
    async with ClientSession() as http:
        idle = await server_stats(http, base, janus_pid)
        base_stats = idle
        setup_t0 = time.monotonic()
        refused_for_good, refusals = Counter[str](), 0
        if janus_pid:
            for start in range(0, viewers, batch):
                size = min(batch, viewers - start)
                group = [Viewer(role.lean, offerer=False) for _ in range(size)]
                peers += group
                async with asyncio.timeout(120):
                    api = janus.JanusApi(http, base)
                    await asyncio.gather(*(janus_negotiate(api, v) for v in group))
                await until(lambda g=group: all(v.first_frame_at is not None for v in g), 120)
        else:
            peers, refused_for_good, refusals = await admit(http, f"{base}/whep", role)
        if not peers:
            raise RuntimeError(f"every viewer was refused: {dict(refused_for_good)}")
        setup_s = time.monotonic() - setup_t0
        ttff = sorted(v.first_frame_at - v.started for v in peers if v.first_frame_at)
        if role.lean:
            # A viewer whose DTLS finished after its "connected" event attaches now.
            for v in peers:
                v.lean()
        await asyncio.sleep(2.0)  # settle: GOP bursts are not steady state
        before = await server_stats(http, base, janus_pid)
        snaps0 = [await v.snapshot() for v in peers]
        client0 = os.times()
        t0 = time.monotonic()
        await asyncio.sleep(seconds)
        snaps1 = [await v.snapshot() for v in peers]
        elapsed = time.monotonic() - t0
        client1 = os.times()
        after = await server_stats(http, base, janus_pid)
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
    offered, viewers = viewers, len(peers)  # per-viewer figures are the admitted viewers'
    admission: dict[str, Any] = {}
    if role.retries or refusals:
        admission = {
            "admitted": viewers,
            "refused": offered - viewers,
            "refused_reasons": dict(refused_for_good),
            "refusals_with_retries": refusals,
            "fps_p5": round(fps[int(0.05 * (len(fps) - 1))], 1),
            "server_refusals": after.get("admission_refusals", {}),
            "server_loads": after.get("loads", {}),
        }
    return {
        "viewers": offered,
        **admission,
        "viewer_kind": "lean" if role.lean else "aiortc",
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


# -- the process --------------------------------------------------------------------------------


def run_role(doc: str) -> None:
    """Run the role `doc` (`media.role_command`) in this process."""
    role = role_from(doc)
    if isinstance(role, ServerRole):
        if role.loop == "uvloop":
            import uvloop

            uvloop.run(run_server(role))
        else:
            asyncio.run(run_server(role))
    elif isinstance(role, HostRole):
        asyncio.run(run_janus_feed(role) if role.janus else run_host(role))
    else:
        # asyncio, whatever the server runs: uvloop caches datagram_received, so the lean hook
        # (an instance attribute on aioice's protocol) would never be called.
        print(json.dumps(asyncio.run(run_client(role))))


if __name__ == "__main__":
    run_role(sys.argv[1])
