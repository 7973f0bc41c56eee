"""`live loadtest media`: WebRTC fan-out, one host stream to N viewers, per mode."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from loadtest.benches.media import MODES, MediaBench, missing_janus, run_matrix, table
from loadtest.cli.options import missing_extra, refuse, warn_unless_loopback_only, write_json

_MEDIA_HELP = """\
Media fan-out: one host stream (pre-encoded VP8 640x480 30 fps at ~1.5 Mbps + Opus, encoded
once and cached in bench-results/) sent to N receive-only viewers, for each viewer count and
each mode. Measured per run: server CPU (cores, % per viewer, viewers per core), runqueue wait,
RSS per viewer, frames per second and packet loss per viewer (min/median/max), time to first
frame, setup time; `all_viewers_ok` means every viewer got >= 29 fps with < 1% loss.

Past capacity (--admission): our server refuses viewers by its measured load (503 full, with a
reason); a refused viewer offers again after Retry-After (--retries times). Reported besides:
viewers admitted and refused (with the reasons), and the figures (fps min, p5, median; CPU per
viewer) over the admitted viewers; `all_viewers_ok` then means every admitted viewer.

Modes: forward (the fast send path), aiortc (each viewer's RTCRtpSender), relay (aiortc's
MediaRelay: decode once, encode per viewer), janus and janus1 (the Debian `janus` streaming
plugin as the reference SFU; stock, and with event_loops = 1).

Pinning: the server (ours or Janus) runs under `taskset -c SERVER_CPU`, the host and the viewers
under `taskset -c CLIENT_CPU`, each in its own process; as root they also run at nice -15 (the
host at -20) with this session's autogroup at -15.

WebRTC: only 127.0.0.1 is offered as an ICE candidate. Run it loopback-only, as root for the
priorities and the janus modes (they add a veth holding 127.0.0.2, refused outside a
loopback-only namespace):

    sudo scripts/loopback-only .venv/bin/live loadtest media --viewers 50,100 --seconds 10 \\
        --modes forward,aiortc,janus1 --json bench-results/media.json

Exit status: 0, or 1 when a run failed (its JSON line then holds "error")."""


def register(kinds: Any) -> None:
    """Add `live loadtest media`."""
    media = kinds.add_parser(
        "media",
        help="WebRTC fan-out: one host stream to N viewers, per mode (loopback-only)",
        description=_MEDIA_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    media.add_argument(
        "--viewers",
        type=_int_list,
        nargs="+",
        default=[[10, 25, 50]],
        metavar="N[,N...]",
        help="viewer counts, run one after another (default 10,25,50)",
    )
    media.add_argument("--seconds", type=float, default=10.0, help="measured seconds per run")
    media.add_argument(
        "--modes",
        "--mode",
        type=_mode_list,
        nargs="+",
        default=[["forward"]],
        metavar="MODE[,MODE...]",
        help="forward, aiortc, relay, janus, janus1 (default forward)",
    )
    media.add_argument(
        "--viewer",
        choices=["lean", "aiortc"],
        default="lean",
        help="lean: SRTP-decrypt and read RTP headers only; aiortc: count through its receivers",
    )
    media.add_argument(
        "--loop", choices=["asyncio", "uvloop"], default="asyncio", help="the server's event loop"
    )
    media.add_argument(
        "--server-cpu",
        default=None,
        help="taskset CPU list of the server (default: the first CPU this process may use)",
    )
    media.add_argument(
        "--client-cpu",
        default=None,
        help="taskset CPU list of host and viewers (default: the second, or the first if alone)",
    )
    media.add_argument(
        "--media-workers",
        type=int,
        default=0,
        metavar="N",
        help="media worker processes serving the viewers in the forward and aiortc modes "
        "(default 0: in the server process); the server's CPU and RSS include them",
    )
    media.add_argument(
        "--admission",
        action="store_true",
        help="our server refuses viewers by its measured load (LIVE_MEDIA_ADMISSION=measured with "
        "the default bounds; forward and aiortc modes): offer more viewers than it carries to "
        "see admitted and refused viewers and the admitted ones' frame rates",
    )
    media.add_argument(
        "--retries",
        type=int,
        default=2,
        metavar="R",
        help="with --admission, a refused viewer offers again after Retry-After up to R times "
        "(default 2)",
    )
    media.add_argument(
        "--admit-max-cpu",
        type=float,
        default=0.85,
        metavar="F",
        help="with --admission, the server's CPU bound (LIVE_MEDIA_ADMIT_MAX_CPU, default 0.85)",
    )
    media.add_argument(
        "--admit-max-lag-ms",
        type=float,
        default=50.0,
        metavar="MS",
        help="with --admission, the server's loop lag bound (LIVE_MEDIA_ADMIT_MAX_LAG_MS, "
        "default 50)",
    )
    media.add_argument("--port", type=int, default=18555, help="the server's HTTP port")
    media.add_argument("--batch", type=int, default=10, help="viewers connecting at once")
    media.add_argument("--out", type=Path, default=None, metavar="PATH",
                       help="append each run's JSON line to this file")  # fmt: skip
    media.add_argument("--json", type=Path, default=None, metavar="PATH",
                       help="write all runs as one JSON document")  # fmt: skip
    media.add_argument(
        "--skip-unavailable",
        action="store_true",
        help="leave out the janus modes, with a message, when Janus is not installed or this is "
        "not a loopback-only namespace (instead of failing those runs)",
    )
    media.set_defaults(run=run)


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"viewer counts must be positive: {text!r}")
    return values


def _mode_list(text: str) -> list[str]:
    modes = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if not modes or unknown:
        raise argparse.ArgumentTypeError(f"modes are {', '.join(MODES)}, not {text!r}")
    return modes


def run(args: argparse.Namespace) -> int:
    if missing := missing_extra():
        return refuse(missing)
    viewers = [n for group in args.viewers for n in group]
    modes = [m for group in args.modes for m in group]
    if args.seconds <= 0 or args.batch < 1:
        return refuse("--seconds and --batch must be positive")
    if args.retries < 0:
        return refuse("--retries must be 0 or more")
    if not 0 <= args.admit_max_cpu <= 1 or args.admit_max_lag_ms < 0:
        return refuse("--admit-max-cpu is 0 to 1, --admit-max-lag-ms 0 or more (0: not used)")
    if args.admission and any(m not in ("forward", "aiortc") for m in modes):
        return refuse("--admission applies to our server only: the forward and aiortc modes")
    cpus = sorted(os.sched_getaffinity(0))
    warn_unless_loopback_only()
    if any(m.startswith("janus") for m in modes):
        missing = missing_janus()
        if missing and args.skip_unavailable:
            print(f"live loadtest: skipping the Janus reference: {missing}", flush=True)
            modes = [m for m in modes if not m.startswith("janus")]
        elif missing:
            return refuse(missing)
    if not modes:
        return refuse("no mode left to run")
    bench = MediaBench(
        viewers=viewers,
        modes=modes,
        seconds=args.seconds,
        server_cpu=args.server_cpu or str(cpus[0]),
        client_cpu=args.client_cpu or str(cpus[1] if len(cpus) > 1 else cpus[0]),
        results=Path("bench-results").resolve(),
        viewer=args.viewer,
        loop=args.loop,
        media_workers=args.media_workers,
        port=args.port,
        batch=args.batch,
        out=args.out,
        admission=args.admission,
        retries=args.retries,
        admit_max_cpu=args.admit_max_cpu,
        admit_max_lag_ms=args.admit_max_lag_ms,
    )
    runs = run_matrix(bench)
    print()
    print(table(runs))
    if args.json:
        write_json({"benchmark": "media", "root": os.geteuid() == 0, "runs": runs}, args.json)
        print(f"JSON written to {args.json}")
    if any("error" in r for r in runs):
        print('live loadtest: a media run failed (see its "error")', file=sys.stderr)
        return 1
    return 0
