"""`live loadtest chat`: a crowd in one chat room, measured end to end, optionally against Node.

Starts an embedded Valkey and 1 or 2 `live serve` nodes (unless --target is given), pinned to CPUs
apart from the load generator, connects N simulated viewers, sends a room-wide chat rate for the
duration, and reports deliveries, losses, latency percentiles, server RSS per connection and CPU.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from loadtest.plan.safety import UnsafeTarget, check_targets
from loadtest.plan.workloads import MAX_VIEWERS, ChatWorkload, senders_for


def register(sub: Any) -> None:
    """Add `loadtest` (with its `chat` subcommand) to the `live` command."""
    from loadtest.cli import media as benchcli

    loadtest = sub.add_parser(
        "loadtest",
        help="load-test a deployment; the chat, sale, media and latency benchmarks",
        description=benchcli.OVERVIEW,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    kinds = loadtest.add_subparsers(dest="loadtest_kind", required=True, metavar="KIND")
    chat = kinds.add_parser(
        "chat", help="N viewers in one room at a room-wide chat rate", description=__doc__
    )
    chat.add_argument(
        "--viewers",
        type=int,
        nargs="+",
        default=[1000],
        help="simulated viewers (several values run one after another)",
    )
    chat.add_argument("--rate", type=float, default=20.0, help="room-wide chat messages per second")
    chat.add_argument("--duration", type=float, default=20.0, help="seconds of sending")
    chat.add_argument(
        "--nodes",
        type=int,
        nargs="+",
        choices=[1, 2],
        default=[1],
        help="server nodes to start and split the viewers over (1, 2 or both)",
    )
    chat.add_argument(
        "--target",
        action="append",
        default=[],
        metavar="URL",
        help="an already running node (repeat); nothing is started",
    )
    chat.add_argument(
        "--secret", default=None, help="token secret of --target nodes (default LIVE_JWT_SECRET)"
    )
    chat.add_argument(
        "--reference",
        action="store_true",
        help="also run the Node.js reference server with the same workload",
    )
    chat.add_argument("--json", type=Path, default=None, metavar="PATH", help="write results here")
    chat.add_argument(
        "--workers",
        type=int,
        default=None,
        help="load-generator processes (default: one per generator CPU)",
    )
    chat.add_argument(
        "--senders",
        type=int,
        default=None,
        help="viewers that send (default: enough to stay under the rate limit)",
    )
    chat.add_argument(
        "--sender-role",
        choices=["viewer", "moderator"],
        default="viewer",
        help="token role of senders; moderators are exempt from the rate limit",
    )
    chat.add_argument(
        "--drain",
        type=float,
        default=10.0,
        help="seconds to wait for late deliveries after sending ends",
    )
    chat.add_argument(
        "--warmup", type=float, default=2.0, help="seconds of unmeasured sending first"
    )
    chat.add_argument(
        "--connect-rate", type=float, default=1000.0, help="new connections per second"
    )
    chat.add_argument(
        "--server-cpus",
        type=_cpu_list,
        default=None,
        help="CPUs for servers and Valkey, e.g. 1 or 2,3 (default: upper half)",
    )
    chat.add_argument(
        "--client-cpus",
        type=_cpu_list,
        default=None,
        help="CPUs for the load generator (default: lower half)",
    )
    chat.add_argument(
        "--allow-remote", action="store_true", help="allow --target URLs outside loopback"
    )
    chat.set_defaults(run=run_chat_command)
    _register_sale(kinds)
    benchcli.register(kinds)  # media and latency
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
        "--allow-remote", action="store_true", help="allow target URLs outside loopback"
    )
    scenario.set_defaults(run=run_scenario_command)


_SCENARIO_HELP = """\
Run a scenario file (TOML; the format is in loadtest/scenario.py and docs/loadtest.md, an
example in docs/examples/cluster-show.toml): lurkers, chatters, likers, buyers racing a flash
sale, WebRTC viewers of a synthetic publisher and a few real browsers ([roles] browsers = N, at
most 20: headless Chromium pages on the viewer page, [browser] executable = PATH), arriving as
a closed crowd ([arrival] join_rate) or an open one ([arrival] model = "open", steps =
[[0, 50], [5, 200]]).

Targets: nodes started here ([target] nodes = 1 or 2), running ones ([target] urls, the first
being the origin), or a region map spreading viewers by weight: [target] regions = {na = URL,
eu = URL}, weights = {na = 3, eu = 1}, select = true to ask each region's URL
GET /api/rooms/{room}/edge?region=R for the node, as the viewer page does. Results then come per
region too (rules like region.eu.chat.delivery.p99 < 300ms).

Progress is live on a terminal; the final table, --json and --html follow. Rules in
[thresholds] (chat.*, likes.*, sale.*, webrtc.*, browser.load/join/chat.delivery/
video.first_frame/video.fps/errors, errors.*) decide the exit code (0 pass, 1 fail, 2 scenario
error, 130 Ctrl-C, which still writes the partial report); abort_after = "10s" stops a run
whose live rule keeps failing. Targets outside loopback are refused without --allow-remote (and
browser pages cannot reach them). WebRTC offers loopback ICE candidates only: run it under
scripts/loopback-only together with the target."""


def _register_sale(kinds: Any) -> None:
    from loadtest.benches import sale as salebench

    sale = kinds.add_parser(
        "sale",
        help="a flash-sale crowd pressing Buy; invariants checked",
        description=salebench.__doc__,
    )
    sale.add_argument("--attempts", type=int, default=100_000, help="reservation attempts (most)")
    sale.add_argument(
        "--rate", type=float, default=0.0, help="attempts per second (0: as fast as possible)"
    )
    sale.add_argument("--duration", type=float, default=20.0, help="seconds of firing (most)")
    sale.add_argument("--users", type=int, default=5000, help="simulated buyers (distinct tokens)")
    sale.add_argument("--quantity", type=int, default=10_000, help="units in the sale")
    sale.add_argument("--per-user-limit", type=int, default=2, help="units one buyer may hold")
    sale.add_argument(
        "--concurrency", type=int, default=256, help="requests in flight, across all workers"
    )
    sale.add_argument(
        "--nodes", type=int, nargs="+", choices=[1, 2], default=[1], help="node counts to run"
    )
    sale.add_argument("--target", action="append", default=[], metavar="URL",
                      help="an already running node (repeat); nothing is started")  # fmt: skip
    sale.add_argument("--secret", default=None, help="token secret of --target nodes")
    sale.add_argument("--redis-url", default=None,
                      help="the --target nodes' Redis, for the store-side invariants")  # fmt: skip
    sale.add_argument(
        "--direct",
        choices=["auto", "redis-benchmark", "python", "none"],
        default="auto",
        help="call the reservation script directly on Valkey too (auto: redis-benchmark if found)",
    )
    sale.add_argument("--direct-calls", type=int, default=200_000, help="direct script calls")
    sale.add_argument("--workers", type=int, default=None, help="load-generator processes")
    sale.add_argument("--json", type=Path, default=None, metavar="PATH", help="write results here")
    sale.add_argument("--server-cpus", type=_cpu_list, default=None,
                      help="CPUs for servers and Valkey (default: upper half)")  # fmt: skip
    sale.add_argument("--client-cpus", type=_cpu_list, default=None,
                      help="CPUs for the load generator (default: lower half)")  # fmt: skip
    sale.add_argument(
        "--allow-remote", action="store_true", help="allow --target URLs outside loopback"
    )
    sale.set_defaults(run=run_sale_command)


def _cpu_list(text: str) -> list[int]:
    try:
        return [int(c) for c in text.split(",") if c.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a CPU list: {text!r}") from None


async def run_chat_command(args: argparse.Namespace) -> int:
    from loadtest.benches.chat_session import Session, run_session
    from loadtest.fleet.servers import default_pinning
    from loadtest.report import tables

    try:
        check_targets(args.target, args.allow_remote)
    except UnsafeTarget as exc:
        print(f"live loadtest: {exc}", file=sys.stderr)
        return 2
    if any(not 1 <= v <= MAX_VIEWERS for v in args.viewers):
        print(f"live loadtest: --viewers must be between 1 and {MAX_VIEWERS}", file=sys.stderr)
        return 2
    if args.target and args.reference:
        print("live loadtest: --reference starts its own servers; drop --target", file=sys.stderr)
        return 2
    smallest = min(args.viewers)
    workload = ChatWorkload(
        viewers=smallest,
        rate=args.rate,
        duration_s=args.duration,
        room="",
        senders=min(args.senders or senders_for(args.rate, smallest), smallest),
        drain_s=args.drain,
        warmup_s=args.warmup,
        connect_rate=args.connect_rate,
        sender_role=args.sender_role,
    )
    try:
        workload.validate()
    except ValueError as exc:
        print(f"live loadtest: {exc}", file=sys.stderr)
        return 2
    client_cpus = args.client_cpus or default_pinning(sorted(os.sched_getaffinity(0))).client_cpus
    session = Session(
        workload=workload,
        viewers=args.viewers,
        nodes=args.nodes,
        reference=args.reference,
        targets=args.target,
        secret=args.secret or os.environ.get("LIVE_JWT_SECRET") if args.target else args.secret,
        workers=args.workers or max(1, len(client_cpus)),
        server_cpus=args.server_cpus,
        client_cpus=args.client_cpus,
    )
    doc = await run_session(session, progress=lambda line: print(line, flush=True))
    print()
    print(tables.table(doc))
    if args.json:
        tables.write_json(doc, args.json)
        print(f"\nJSON written to {args.json}")
    return 0


async def run_sale_command(args: argparse.Namespace) -> int:
    """Exit 0 when every invariant holds, 1 on a breach, 2 on bad arguments."""
    from loadtest.benches.sale import SaleSession, run_sale_session, table
    from loadtest.benches.sale_driver import SaleSpec
    from loadtest.fleet.servers import default_pinning
    from loadtest.plan.workloads import SaleWorkload
    from loadtest.report import tables

    try:
        check_targets(args.target, args.allow_remote)
        if args.redis_url:
            check_targets([args.redis_url.replace("redis://", "http://", 1)], args.allow_remote)
    except UnsafeTarget as exc:
        print(f"live loadtest: {exc}", file=sys.stderr)
        return 2
    workload = SaleWorkload(
        users=args.users,
        attempts=args.attempts,
        rate=args.rate,
        duration_s=args.duration,
        concurrency=args.concurrency,
    )
    try:
        workload.validate()
        if not 1 <= args.quantity <= 1_000_000 or not 1 <= args.per_user_limit <= 1000:
            raise ValueError("quantity must be 1..1,000,000 and the per-user limit 1..1000")
        if not 1 <= args.direct_calls <= 10_000_000:
            raise ValueError("direct calls must be 1..10,000,000")
    except ValueError as exc:
        print(f"live loadtest: {exc}", file=sys.stderr)
        return 2
    client_cpus = args.client_cpus or default_pinning(sorted(os.sched_getaffinity(0))).client_cpus
    session = SaleSession(
        workload=workload,
        sale=SaleSpec(quantity=args.quantity, per_user_limit=args.per_user_limit),
        nodes=args.nodes,
        targets=args.target,
        secret=args.secret or os.environ.get("LIVE_JWT_SECRET") if args.target else args.secret,
        redis_url=args.redis_url,
        workers=args.workers or max(1, len(client_cpus)),
        server_cpus=args.server_cpus,
        client_cpus=args.client_cpus,
        direct=args.direct,
        direct_calls=args.direct_calls,
    )
    doc = await run_sale_session(session, progress=lambda line: print(line, flush=True))
    print()
    print(table(doc))
    if args.json:
        tables.write_json(doc, args.json)
        print(f"\nJSON written to {args.json}")
    if not doc["ok"]:
        print("live loadtest: an invariant of the sale was breached", file=sys.stderr)
        return 1
    return 0


async def run_scenario_command(args: argparse.Namespace) -> int:
    """Exit 0 when every rule passes, 1 when one fails, 2 when the scenario is in error, 130
    when stopped by Ctrl-C (the partial report is written all the same)."""
    import asyncio
    import signal

    from loadtest.report import html, tables
    from loadtest.report.display import Display, Monitor
    from loadtest.scenario import runner as scenario

    try:
        plan = scenario.load(args.scenario)
        check_targets(plan.all_urls(), args.allow_remote)
        plan.allow_remote = args.allow_remote
    except (scenario.ScenarioError, UnsafeTarget) as exc:
        print(f"live loadtest: {exc}", file=sys.stderr)
        return 2
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
        doc = await scenario.run(plan, monitor=monitor)
    except scenario.ScenarioError as exc:
        print(f"live loadtest: {exc}", file=sys.stderr)
        return 2
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    print(scenario.summary(doc))
    if args.json:
        tables.write_json(doc, args.json)
        print(f"JSON written to {args.json}")
    if args.html:
        args.html.parent.mkdir(parents=True, exist_ok=True)
        args.html.write_text(html.render(doc))
        print(f"HTML report written to {args.html}")
    if interrupted:
        return 130
    return 0 if doc["passed"] else 1
