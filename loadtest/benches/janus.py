"""Janus (Debian package `janus`) as the reference SFU for `live loadtest media`
(loadtest/benches/media.py).

The streaming plugin's RTP mountpoint is fed the same pre-encoded VP8 + Opus over plain RTP on
loopback; viewers watch it over Janus's HTTP API (Janus offers, the viewer answers). Only the
streaming plugin and the HTTP transport are loaded; every address is 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiohttp import ClientSession

from loadtest.report import procfs
from media.frames import EncodedFrame
from media.rtp_writer import RtpWriter

LIB = Path("/usr/lib/x86_64-linux-gnu/janus")
VIDEO_PORT = 15004
AUDIO_PORT = 15002
MOUNTPOINT = 1


def available() -> bool:
    return Path("/usr/bin/janus").exists() and (LIB / "plugins/libjanus_streaming.so").exists()


INTERFACE = "jbench0"
ADDRESS = "127.0.0.2"  # a loopback address (127/8): delivered through lo like 127.0.0.1


def add_loopback_alias() -> None:
    """Janus gathers no candidates on `lo` (it skips loopback interfaces): inside the bench's
    loopback-only network namespace give it a veth interface holding 127.0.0.2. Refused
    outside such a namespace so the host's network is never touched."""
    interfaces = procfs.interfaces()
    if INTERFACE in interfaces:
        return
    if interfaces != {"lo"}:
        raise RuntimeError("janus mode runs only inside scripts/loopback-only (lo alone)")
    # A veth pair with both ends in this namespace (no dummy driver here); it goes with it.
    for cmd in (
        ["ip", "link", "add", INTERFACE, "type", "veth", "peer", "name", f"{INTERFACE}p"],
        ["ip", "addr", "add", f"{ADDRESS}/32", "dev", INTERFACE],
        ["ip", "link", "set", f"{INTERFACE}p", "up"],
        ["ip", "link", "set", INTERFACE, "up"],
    ):
        subprocess.run(cmd, check=True, timeout=10)


def write_config(folder: Path, http_port: int, event_loops: int = 0) -> None:
    """A minimal Janus configuration under `folder`: streaming plugin, HTTP on loopback."""
    for sub, lib in (("plugins", "libjanus_streaming.so"), ("transports", "libjanus_http.so")):
        (folder / sub).mkdir(parents=True, exist_ok=True)
        link = folder / sub / lib
        if not link.exists():
            link.symlink_to(LIB / sub / lib)
    (folder / "empty").mkdir(exist_ok=True)
    (folder / "janus.jcfg").write_text(
        f"""general: {{
    configs_folder = "{folder}"
    plugins_folder = "{folder}/plugins"
    transports_folder = "{folder}/transports"
    events_folder = "{folder}/empty"
    loggers_folder = "{folder}/empty"
    debug_level = 3
    session_timeout = 0
    server_name = "bench"
    event_loops = {event_loops}
}}
media: {{
    rtp_port_range = "20000-40000"
}}
nat: {{
    ice_enforce_list = "{INTERFACE}"
    full_trickle = false
}}
"""
    )
    (folder / "janus.transport.http.jcfg").write_text(
        f"""general: {{
    base_path = "/janus"
    http = true
    port = {http_port}
    ip = "127.0.0.1"
    https = false
}}
admin: {{
    admin_http = false
}}
"""
    )
    (folder / "janus.plugin.streaming.jcfg").write_text(
        f"""general: {{
}}
bench: {{
    type = "rtp"
    id = {MOUNTPOINT}
    description = "bench"
    audio = true
    video = true
    audioport = {AUDIO_PORT}
    audiopt = 111
    audiocodec = "opus"
    videoport = {VIDEO_PORT}
    videopt = 96
    videocodec = "vp8"
}}
"""
    )


class _UdpSink:
    def __init__(self, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addr = ("127.0.0.1", port)

        self.pending: list[bytes] = []

    def send(self, headers: Sequence[bytes], bodies: Sequence[bytes]) -> None:
        self.pending += [h + b for h, b in zip(headers, bodies, strict=True)]

    async def paced(self) -> None:
        """Send what the writer produced, 4 packets a millisecond: a keyframe burst would
        overflow the mountpoint's receive buffer (browsers pace their packets too)."""
        for i in range(0, len(self.pending), 4):
            if i:
                await asyncio.sleep(0.001)
            for packet in self.pending[i : i + 4]:
                self.sock.sendto(packet, self.addr)
        self.pending.clear()


async def feed(video: list[bytes], audio: list[bytes], limit_s: float, stop: asyncio.Event) -> None:
    """Send the pre-encoded stream to the mountpoint as plain RTP at 30 and 50 frames a second."""
    video_sink, audio_sink = _UdpSink(VIDEO_PORT), _UdpSink(AUDIO_PORT)
    vw = RtpWriter(codec="VP8", ssrc=0x1111, payload_type=96, sink=video_sink)
    aw = RtpWriter(codec="opus", ssrc=0x2222, payload_type=111, sink=audio_sink)

    async def run(
        writer: RtpWriter, sink: _UdpSink, frames: list[bytes], codec: str, fps: int, ticks: int
    ) -> None:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        deadline = t0 + limit_s
        i = 0
        while not stop.is_set() and loop.time() < deadline:
            wait = t0 + i / fps - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            elif wait < -3 / fps:
                t0 -= wait  # starved: resume at the frame rate instead of bursting
            writer.write(EncodedFrame(codec, frames[i % len(frames)], i * ticks, False))
            await sink.paced()
            i += 1

    await asyncio.gather(
        run(vw, video_sink, video, "VP8", 30, 3000), run(aw, audio_sink, audio, "opus", 50, 960)
    )


class JanusApi:
    """Just enough of Janus's HTTP API to watch a streaming mountpoint."""

    def __init__(self, http: ClientSession, base: str) -> None:
        self.http = http
        self.base = base

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        body = {**body, "transaction": uuid.uuid4().hex}
        async with self.http.post(f"{self.base}{path}", data=json.dumps(body)) as r:
            result: dict[str, Any] = await r.json(content_type=None)
        if result.get("janus") == "error":
            raise RuntimeError(f"janus: {result}")
        return result

    async def ready(self, limit_s: float) -> None:
        deadline = time.monotonic() + limit_s
        while True:
            try:
                async with self.http.get(f"{self.base}/info") as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("janus did not start")
            await asyncio.sleep(0.2)

    async def watch(self) -> tuple[str, str]:
        """(handle path, Janus's SDP offer) for a new viewer of the mountpoint."""
        session = (await self._post("", {"janus": "create"}))["data"]["id"]
        handle = (
            await self._post(f"/{session}", {"janus": "attach", "plugin": "janus.plugin.streaming"})
        )["data"]["id"]
        path = f"/{session}/{handle}"
        await self._post(path, {"janus": "message", "body": {"request": "watch", "id": MOUNTPOINT}})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            async with self.http.get(f"{self.base}/{session}?maxev=1") as r:
                event: dict[str, Any] = await r.json(content_type=None)
            jsep = event.get("jsep")
            if jsep and jsep.get("type") == "offer":
                return path, str(jsep["sdp"])
        raise TimeoutError("janus sent no offer")

    async def start(self, path: str, answer_sdp: str) -> None:
        await self._post(
            path,
            {
                "janus": "message",
                "body": {"request": "start"},
                "jsep": {"type": "answer", "sdp": answer_sdp},
            },
        )
