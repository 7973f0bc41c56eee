"""Media fan-out with media worker processes: `loadtest.media_bench`'s host and lean viewers (same
stream, pinning and figures as `live loadtest media`) against a server whose viewers are served by
N media workers. Server CPU, RSS and run-queue wait include the workers.

    sudo scripts/loopback-only .venv/bin/python scripts/media_workers_fanout.py --workers 0,2 \\
        --viewers 100,200 --seconds 10 --loop uvloop --server-cpu 0 --client-cpu 1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from loadtest import media_bench
from media import MediaConfig, MediaServer

TICK = os.sysconf("SC_CLK_TCK")


def _proc(pid: int) -> tuple[float, float, int, float]:
    """(user+system CPU s, system CPU s, RSS bytes, run-queue wait s) of one process."""
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    user, system = int(stat[11]) / TICK, int(stat[12]) / TICK
    rss = int(stat[21]) * os.sysconf("SC_PAGE_SIZE")
    wait = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            wait += int((task / "schedstat").read_text().split()[1])
        except OSError:
            continue
    return user + system, system, rss, wait / 1e9


async def run_server(port: int, workers: int) -> None:
    media = MediaServer(MediaConfig(ice_addresses=["127.0.0.1"], workers=workers))
    await media.start()
    stop = asyncio.Event()

    async def whip(request: web.Request) -> web.Response:
        _, answer = await media.publish("bench", await request.text())
        return media_bench.sdp_response(answer)

    async def whep(request: web.Request) -> web.Response:
        _, answer = await media.play("bench", await request.text())
        return media_bench.sdp_response(answer)

    async def stats(request: web.Request) -> web.Response:
        pids = [os.getpid()]
        if media.workers is not None:
            pids += [link.pid for link in media.workers.links if link is not None and link.pid]
        figures = [_proc(pid) for pid in pids]
        s = media.stats()
        room = media.rooms.get("bench")
        return web.json_response(
            {
                "cpu": sum(f[0] for f in figures),
                "cpu_sys": sum(f[1] for f in figures),
                "wall": time.monotonic(),
                "rss": sum(f[2] for f in figures),
                "runqueue_wait": sum(f[3] for f in figures),
                "viewers": s.viewers,
                "frames_in": s.frames_in,
                "video_frames_in": room.video.frames_in if room is not None else 0,
                "udp_send_drops": 0,
                "packets_in": s.packets_in,
                "dropped": s.frames_dropped,
                "skips": s.viewer_skips,
                "keyframe_requests": s.keyframe_requests,
                "workers": [w.viewers for w in s.workers],
            }
        )

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
        await stop.wait()
    finally:
        await media.shutdown()
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="role")
    s = sub.add_parser("server")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--workers", type=int, default=0)
    s.add_argument("--loop", default="uvloop", choices=["asyncio", "uvloop"])
    parser.add_argument("--workers", default="0,2", help="worker counts to compare")
    parser.add_argument("--viewers", default="100,200")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--loop", default="uvloop", choices=["asyncio", "uvloop"])
    parser.add_argument("--server-cpu", default="0")
    parser.add_argument("--client-cpu", default="1")
    parser.add_argument("--port", type=int, default=18555)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.role == "server":
        # Session ends (never connected, no transport) and worker restarts explain a failed run.
        logging.basicConfig(level=logging.INFO, format="server %(levelname)s %(name)s %(message)s")
        media_bench.run_loop(run_server(args.port, args.workers), args.loop)
        return
    for workers in [int(w) for w in args.workers.split(",")]:

        def start_server(
            a: argparse.Namespace, me: list[str], mode: str, workers: int = workers
        ) -> subprocess.Popen[str]:
            server = subprocess.Popen(
                [
                    *media_bench.taskset(a.server_cpu),
                    sys.executable,
                    __file__,
                    "server",
                    *("--port", str(a.port), "--workers", str(workers), "--loop", a.loop),
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            assert server.stdout is not None
            assert server.stdout.readline().strip() == "ready"
            return server

        media_bench.start_server = start_server  # type: ignore[assignment]
        matrix: dict[str, Any] = {
            "viewers": [int(n) for n in args.viewers.split(",")],
            "modes": ["forward"],
            "seconds": args.seconds,
            "batch": args.batch,
            "viewer": "lean",
            "loop": args.loop,
            "server_cpu": args.server_cpu,
            "client_cpu": args.client_cpu,
            "port": args.port,
            "out": None,
        }
        for result in media_bench.run_matrix(argparse.Namespace(**matrix)):
            line = json.dumps({"workers": workers, **result})
            if args.out:
                with args.out.open("a") as f:
                    f.write(line + "\n")


if __name__ == "__main__":
    main()
