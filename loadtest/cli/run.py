"""`live loadtest run SCENARIO.toml`: a scenario file, judged by its thresholds."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from loadtest.cli.options import missing_extra, refuse, write_json
from loadtest.plan.safety import UnsafeTarget, check_targets

_SCENARIO_HELP = """\
Run a scenario file (TOML; the format is in loadtest/scenario/spec.py and docs/loadtest.md, an
example in docs/examples/cluster-show.toml): lurkers, chatters, likers, buyers racing a flash
sale, gifters sending gifts over Socket.IO ([roles] gifters, [gifts] rate, grant, gift_id; the
books checked after the run), WebRTC viewers of a synthetic publisher and a few real browsers
([roles] browsers = N, at most 20: headless Chromium pages on the viewer page, [browser]
executable = PATH), arriving as a closed crowd ([arrival] join_rate) or an open one ([arrival]
model = "open", steps = [[0, 50], [5, 200]]).

Targets: nodes started here ([target] nodes = 1 or 2), running ones ([target] urls, the first
being the origin), or a region map spreading viewers by weight: [target] regions = {na = URL,
eu = URL}, weights = {na = 3, eu = 1}, select = true to ask each region's URL
GET /api/rooms/{room}/edge?region=R for the node, as the viewer page does. Results then come per
region too (rules like region.eu.chat.delivery.p99 < 300ms). [target] edges = ["eu", "sea"]
starts an origin and one edge per region, the crowd on the edges; [[faults]] at_s = 10, kill =
"edge-eu" SIGKILLs a started node mid-show: WebRTC viewers fail over like the viewer page, and
failover.* (lost, back, back_5s, recovery.p95) reports them with the origin's CPU meanwhile
(example: docs/examples/edge-failover.toml).

Progress is live on a terminal; the final table, --json and --html follow. Rules in [thresholds]
(chat.*, likes.*, sale.*, gifts.*, webrtc.*, failover.*, browser.load/join/
chat.delivery/video.first_frame/video.fps/errors, errors.*) decide the exit code (0 pass, 1
fail, 2 scenario error, 130 Ctrl-C, which still writes the partial report); abort_after = "10s"
stops a run whose live rule keeps failing. Targets outside loopback are refused without
--allow-remote (and browser pages cannot reach them). WebRTC offers loopback ICE candidates
only: run it under scripts/loopback-only together with the target."""


def register(kinds: Any) -> None:
    """Add `live loadtest run`."""
    scenario = kinds.add_parser(
        "run",
        help="a scenario file: mixed roles, thresholds, JSON and HTML report",
        description=_SCENARIO_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    scenario.add_argument("scenario", type=Path, help="scenario TOML")
    scenario.add_argument("--json", type=Path, default=None, metavar="PATH")
    scenario.add_argument("--html", type=Path, default=None, metavar="PATH")
    scenario.add_argument(
        "--lang",
        choices=("en", "zh", "es", "fr", "de", "ja", "ko", "th"),
        default="en",
        help="the language of the --html report's labels (default en; zh is Simplified Chinese)",
    )
    scenario.add_argument(
        "--allow-remote", action="store_true", help="allow target URLs outside loopback"
    )
    scenario.set_defaults(run=run)


async def run(args: argparse.Namespace) -> int:
    """Exit 0 when every rule passes, 1 when one fails, 2 when the scenario is in error, 130
    when stopped by Ctrl-C (the partial report is written all the same)."""
    import asyncio
    import signal

    if missing := missing_extra():
        return refuse(missing)
    from loadtest.report import html
    from loadtest.report.display import Display, Monitor
    from loadtest.scenario import runner
    from loadtest.scenario.spec import ScenarioError, load
    from loadtest.scenario.summary import summary

    try:
        plan = load(args.scenario)
        check_targets(plan.all_urls(), args.allow_remote)
        plan.allow_remote = args.allow_remote
    except (ScenarioError, UnsafeTarget) as exc:
        return refuse(str(exc))
    display = Display()
    monitor = Monitor(display, plan.rules, plan.abort_after_s)
    interrupted = False

    def on_interrupt() -> None:
        nonlocal interrupted
        interrupted = True
        monitor.request_stop("interrupted (Ctrl-C)")

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_interrupt)
    try:
        doc = await runner.run(plan, monitor=monitor)
    except ScenarioError as exc:
        return refuse(str(exc))
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    print(summary(doc))
    if args.json:
        write_json(doc, args.json)
        print(f"JSON written to {args.json}")
    if args.html:
        args.html.parent.mkdir(parents=True, exist_ok=True)
        args.html.write_text(html.render(doc, args.lang), encoding="utf-8")
        print(f"HTML report written to {args.html}")
    if interrupted:
        return 130
    return 0 if doc["passed"] else 1
