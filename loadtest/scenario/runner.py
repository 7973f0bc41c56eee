"""`live loadtest run scenario.toml`: a show's crowd of mixed roles, judged by thresholds.

Lurkers and chatters (and likers among them) are the chat driver's crowd in one room; buyers are
the sale driver's, racing a sale the scenario starts in the same room at the same time; WebRTC
viewers watch the room, which a synthetic publisher makes live first; browser pages open the real
viewer page. All run side by side; the result is one JSON document (and an HTML report) with the
nodes' /metrics before and after and the rules' verdicts. Ctrl-C or an abort rule stops the run
with a partial report. The file format is in `loadtest.scenario.spec`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from devtools.spawn import NodeProcess, stop_all
from loadtest.benches.chat import run_chat
from loadtest.benches.gifts import check_gift_invariants, run_gifters
from loadtest.benches.sale import RAISED_LIMITS, check_invariants, run_buyers
from loadtest.benches.webrtc import publishing, run_viewers
from loadtest.clients import browsers as browser_role
from loadtest.clients.rest import HOST_USER, create_room, start_sale
from loadtest.fleet import servers
from loadtest.plan import regions as region_map
from loadtest.plan.regions import Placement, RegionMap
from loadtest.plan.workloads import ChatWorkload, SaleWorkload, senders_for
from loadtest.report import procfs, scrape, thresholds
from loadtest.report.display import Display, Monitor, Progress
from loadtest.report.histogram import Histogram
from loadtest.scenario.spec import ORIGIN_ID, Scenario, ScenarioError

BACK_WITHIN_S = 5.0  # the bound for a viewer whose node died
FAULT_WINDOW_S = (3.0, 5.0)  # the origin's CPU: this long before a kill, and after it
SAMPLE_EVERY_S = 0.5
Samples = list[tuple[float, float]]  # (wall clock, CPU seconds) of one process


def _renice(nice: int, progress: Progress) -> None:
    try:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    except OSError as exc:
        progress(f"generator priority {nice} not set: {exc}")
    else:
        progress(f"generator runs at nice {nice}")


async def run(
    scenario: Scenario, progress: Progress = print, monitor: Monitor | None = None
) -> dict[str, Any]:
    """Run the scenario; the document with metrics, rule verdicts and `passed`.

    A stop through `monitor` (Ctrl-C, an abort rule) ends the drivers early: the document is
    then partial (`partial`, `stopped`) and does not pass.
    """
    if monitor is None:
        monitor = Monitor(Display(), scenario.rules, scenario.abort_after_s)
    progress = monitor.display.log
    pinning = servers.pinning_for()
    async with _system(scenario, pinning, progress) as (urls, pids, secret, redis_url, procs):
        if scenario.nice is not None:
            # After the servers started (they keep theirs); the workers spawned next inherit it.
            _renice(scenario.nice, progress)
        room = "show-" + secrets.token_hex(4)
        await create_room(urls[0], secret, room, required=True)
        placement = await _placement(scenario, room, urls, progress)
        scraped = list(dict.fromkeys([*urls, *placement.targets]))
        metrics_before = await scrape.scrape(scraped)
        jobs: dict[str, Any] = {}
        if scenario.lurkers + scenario.chatters + scenario.likers:
            jobs["chat"] = _chat(scenario, room, placement, secret, pids, pinning, progress,
                                 monitor)  # fmt: skip
        sale_info: dict[str, Any] = {}
        if scenario.buyers and scenario.sale is not None:
            sale = await start_sale(urls[0], secret, room, scenario.sale)
            sale_info = {"sale_id": sale["sale_id"], "quantity": scenario.sale.quantity}
            jobs["sale"] = _sale(scenario, room, sale["sale_id"], list(placement.targets), secret,
                                 pids, pinning, progress, monitor)  # fmt: skip
        if scenario.gifts is not None:
            jobs["gifts"] = run_gifters(
                replace(scenario.gifts, room=room), list(placement.targets), secret,
                server_pids=pids, workers=scenario.workers, client_cpus=pinning.client_cpus,
                label="gifts", progress=progress, monitor=monitor,
            )  # fmt: skip
        names = list(jobs)
        started: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        if not scenario.webrtc_viewers:
            started.set_result(time.time())
        faults = (
            asyncio.ensure_future(_faults(scenario, procs, started, progress))
            if scenario.faults else None
        )  # fmt: skip
        try:
            async with contextlib.AsyncExitStack() as live:
                if scenario.webrtc_viewers or scenario.browsers:
                    # The viewers need a live room: publish first, keep it up until they are done.
                    await live.enter_async_context(
                        publishing(urls[0], secret, room, scenario.duration_s + 180)
                    )
                if scenario.webrtc_viewers:
                    names.append("webrtc")
                    jobs["webrtc"] = run_viewers(
                        list(placement.targets), secret, room, scenario.webrtc_viewers,
                        scenario.duration_s, join_rate=scenario.webrtc_join_rate,
                        workers=scenario.workers, client_cpus=pinning.client_cpus,
                        progress=progress, monitor=monitor, regions=placement.regions,
                        failover=bool(scenario.faults), ask=(urls[0],), started=started,
                    )  # fmt: skip
                results = await _with_browsers(
                    scenario, names, jobs, room, secret, placement, pinning, progress, monitor
                )
        finally:
            monitor.display.close()
            fault_log: tuple[list[dict[str, Any]], dict[str, Samples]] = ([], {})
            if faults is not None:
                if not faults.done():
                    faults.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    fault_log = await faults
        server_metrics = scrape.compare(metrics_before, await scrape.scrape(scraped))
        if "sale" in results and scenario.sale is not None:
            sale_doc = results["sale"]
            units = sale_doc.pop("units_by_user")
            sale_doc["invariants"] = await check_invariants(
                redis_url, urls[0], room, sale_info["sale_id"],
                quantity=scenario.sale.quantity, per_user_limit=scenario.sale.per_user_limit,
                reserved_201=sale_doc["attempts"]["reserved"], units_by_user=units,
            )  # fmt: skip
            sale_doc.update(sale_info)
        if "gifts" in results and redis_url is not None:
            gifts = results["gifts"]
            gifts["invariants"] = await check_gift_invariants(
                redis_url,
                room,
                HOST_USER,
                gifts.pop("granted"),
                gifts.pop("accepted"),
                gifts.pop("users"),
            )
    where = (
        f"targets {' '.join(dict.fromkeys([*scenario.urls, *placement.targets]))} (not pinned "
        "here); load generator on CPU "
        + ",".join(map(str, pinning.client_cpus or procfs.available_cpus()))
        if scenario.urls or scenario.regions
        else pinning.describe()
    )
    doc: dict[str, Any] = {"name": scenario.name, "pinning": where, **results}
    if scenario.regions is not None:
        doc["regions"] = _by_region(scenario.regions, placement, results)
    if scenario.faults:
        doc["failover"] = failover_report(scenario, placement, results.get("webrtc"), *fault_log)
    doc["server_metrics"] = server_metrics
    doc["partial"] = monitor.stop.is_set() or any(
        r.get("partial") for r in results.values() if isinstance(r, dict)
    )
    doc["stopped"] = monitor.reason
    metrics = thresholds.metrics_of(doc)
    doc["thresholds"] = thresholds.evaluate(scenario.rules, metrics, partial=doc["partial"])
    doc["metrics"] = thresholds.finite(metrics)
    invariants_ok = ("sale" not in doc or doc["sale"]["invariants"]["ok"]) and (
        "gifts" not in doc or doc["gifts"].get("invariants", {}).get("ok", False)
    )
    doc["passed"] = (
        invariants_ok and all(r["passed"] for r in doc["thresholds"]) and not doc["partial"]
    )
    return doc


async def _faults(
    s: Scenario, procs: dict[str, NodeProcess], started: asyncio.Future[float], progress: Progress
) -> tuple[list[dict[str, Any]], dict[str, Samples]]:
    """Kill the scenario's nodes on time; the kills and every started node's CPU samples from
    the start to a window past the last kill."""
    t0 = await started
    kills: list[dict[str, Any]] = []
    samples: dict[str, Samples] = {node_id: [] for node_id in procs}
    pending = sorted(s.faults, key=lambda f: f.at_s)
    stop_at = t0 + pending[-1].at_s + FAULT_WINDOW_S[1] + 1.0
    try:
        while time.time() < stop_at:
            now = time.time()
            for node_id, proc in procs.items():
                sample = procfs.sample(proc.pid) if proc.running else None
                if sample is not None:
                    samples[node_id].append((now, sample.cpu_s))
            while pending and now >= t0 + pending[0].at_s:
                fault = pending.pop(0)
                procs[fault.kill].kill()  # SIGKILL: no drain, no goodbye
                kills.append({"kill": fault.kill, "at_s": fault.at_s, "killed_at": time.time(),
                              "url": procs[fault.kill].url})  # fmt: skip
                progress(f"fault: {fault.kill} killed (SIGKILL) at {now - t0:.1f} s")
            await asyncio.sleep(SAMPLE_EVERY_S if not pending else min(
                SAMPLE_EVERY_S, max(0.0, t0 + pending[0].at_s - time.time())))  # fmt: skip
    except asyncio.CancelledError:
        pass  # the run ended early: report what happened
    return kills, samples


def _cpu_pct(samples: list[tuple[float, float]], start: float, end: float) -> float | None:
    """The origin's CPU between two wall-clock times, in % of one core (nearest samples)."""
    inside = [x for x in samples if start - SAMPLE_EVERY_S / 2 <= x[0] <= end + SAMPLE_EVERY_S / 2]
    if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
        return None
    (t1, c1), (t2, c2) = inside[0], inside[-1]
    return round(100.0 * (c2 - c1) / (t2 - t1), 1)


def failover_report(
    s: Scenario,
    placement: Placement,
    rtc: dict[str, Any] | None,
    kills: list[dict[str, Any]],
    nodes: dict[str, Samples],
) -> dict[str, Any]:
    """Per kill: the WebRTC viewers that were on the node, lost it, were back within
    BACK_WITHIN_S (first frame from another node, counted from the kill), and the origin's CPU
    before, after and second by second; and those figures over all kills."""
    moves = (rtc or {}).get("failover", {"lost_at": [], "back_at": [], "errors": {}})
    per_kill: list[dict[str, Any]] = []
    samples = nodes.get(ORIGIN_ID, [])
    total = Histogram()
    counts = {"on_node": 0, "lost": 0, "back": 0, "back_within_5s": 0}
    for i, kill in enumerate(kills):
        at = kill["killed_at"]
        until = kills[i + 1]["killed_at"] if i + 1 < len(kills) else float("inf")
        lost = [t for t in moves["lost_at"] if at <= t < until]
        back = [t - at for t in moves["back_at"] if at <= t < until]
        recovery = Histogram()
        for seconds in back:
            recovery.record(int(seconds * 1e6))
        total.merge(recovery)
        n = len(placement.targets)
        on_node = sum(1 for v in range(s.webrtc_viewers) if placement.targets[v % n] == kill["url"])
        figures = {"on_node": on_node, "lost": len(lost), "back": len(back),
                   "back_within_5s": sum(1 for b in back if b < BACK_WITHIN_S)}  # fmt: skip
        for k, v in figures.items():
            counts[k] += v
        before, after = FAULT_WINDOW_S
        per_kill.append({
            **kill,
            **figures,
            "recovery_ms": recovery.summary_ms(),
            "origin_cpu_pct": {
                f"{before:g}s_before": _cpu_pct(samples, at - before, at),
                f"{after:g}s_after": _cpu_pct(samples, at, at + after),
                "by_second": [_cpu_pct(samples, at + k, at + k + 1)
                              for k in range(-int(before), int(after))],
            },
            # Every started node (the killed one only before), the origin included.
            "nodes_cpu_pct": {
                node_id: {f"{before:g}s_before": _cpu_pct(series, at - before, at),
                          f"{after:g}s_after": _cpu_pct(series, at, at + after)}
                for node_id, series in nodes.items()
            },
        })  # fmt: skip
    return {
        **counts,
        "back_5s_fraction": round(counts["back_within_5s"] / counts["lost"], 4)
        if counts["lost"]
        else None,
        "recovery_ms": total.summary_ms(),
        "errors": moves["errors"],
        "kills": per_kill,
    }


async def _placement(s: Scenario, room: str, urls: list[str], progress: Progress) -> Placement:
    if s.edges:
        # The origin is urls[0]; viewers and the crowd use the edges, in their regions. Pages
        # open on the origin with ?region=R and choose their edge (and another when it dies).
        edges = tuple(urls[1:])
        return Placement(edges, tuple(s.edges), (urls[0],) * len(edges), select=True)
    if s.regions is None:
        return region_map.single(urls)
    try:
        placement = await region_map.place(s.regions, room, s.allow_remote)
    except region_map.RegionError as exc:
        raise ScenarioError(str(exc)) from None
    progress(s.regions.describe() + "; slots: " + ", ".join(
        f"{r} -> {t}" for r, t in zip(placement.regions, placement.targets, strict=True)
    ))  # fmt: skip
    return placement


async def _with_browsers(
    s: Scenario, names: list[str], jobs: dict[str, Any], room: str, secret: str,
    placement: Placement, pinning: servers.Pinning, progress: Progress, monitor: Monitor,
) -> dict[str, Any]:  # fmt: skip
    """The drivers' results; browser pages, when asked for, stay open until the others end."""
    if not s.browsers:
        return dict(zip(names, await asyncio.gather(*jobs.values()), strict=True))
    others_done = asyncio.Event()

    async def hold() -> None:
        waits = [
            asyncio.ensure_future(others_done.wait()),
            asyncio.ensure_future(monitor.stop.wait()),
        ]
        # Browsers alone: the run's duration. With others: until they are done (they are bounded).
        limit = s.duration_s if not jobs else s.duration_s + s.drain_s + 600
        try:
            await asyncio.wait(waits, timeout=limit, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    plan = browser_role.BrowserPlan(
        pages=s.browsers, room=room, secret=secret, placement=placement,
        executable=s.browser_executable, live=True, allow_remote=s.allow_remote,
        join_rate=s.browser_join_rate, client_cpus=tuple(pinning.client_cpus),
        run_tag=f"lt{secrets.token_hex(3)}",
    )  # fmt: skip
    ready = asyncio.Event()
    pages = asyncio.ensure_future(
        browser_role.run_pages(plan, hold, ready=ready, progress=progress, monitor=monitor)
    )
    # The pages join first, like a closed crowd, so they see the whole run; a launch that
    # fails ends here with its error.
    opened = asyncio.ensure_future(ready.wait())
    try:
        await asyncio.wait([pages, opened], return_when=asyncio.FIRST_COMPLETED)
    finally:
        opened.cancel()
    if pages.done():
        for job in jobs.values():
            job.close()  # never started
        try:
            pages.result()
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            raise ScenarioError(f"the browsers could not start: {first}") from None
        raise ScenarioError("the browser pages ended before the run started")
    try:
        done = await asyncio.gather(*jobs.values())
    except BaseException:
        pages.cancel()
        with contextlib.suppress(BaseException):
            await pages
        raise
    finally:
        others_done.set()
    results = dict(zip(names, done, strict=True))
    results["browser"] = await pages
    return results


def _by_region(regions: RegionMap, placement: Placement, results: dict[str, Any]) -> dict[str, Any]:
    """Chat delivery, media first frame and browser figures for each region of the map."""
    empty = Histogram().summary_ms()
    nodes = placement.describe()
    out: dict[str, Any] = {}
    for name, weight in regions.weights.items():
        entry: dict[str, Any] = {"weight": weight, "url": regions.urls[name],
                                 "nodes": nodes.get(name, {}).get("nodes", [])}  # fmt: skip
        if "chat" in results:
            chat = results["chat"]["regions"].get(name, {"joined": 0, "latency_ms": empty})
            entry["chat"] = {"joined": chat["joined"], "delivery_ms": chat["latency_ms"]}
        if "webrtc" in results:
            rtc = results["webrtc"]["regions"].get(name, {"watching": 0, "first_frame_ms": empty})
            entry["webrtc"] = rtc
        if "browser" in results:
            page = results["browser"]["regions"].get(name, {
                "pages": 0, "joined": 0, "playing": 0, "chat_latency_ms": empty,
                "first_frame_ms": empty,
            })  # fmt: skip
            page["nodes"] = sorted({p["node"] for p in results["browser"]["per_page"]
                                    if p["region"] == name and p["node"]})  # fmt: skip
            entry["browser"] = page
        out[name] = entry
    return out


async def _chat(
    s: Scenario, room: str, placement: Placement, secret: str, pids: dict[str, int],
    pinning: servers.Pinning, progress: Progress, monitor: Monitor,
) -> dict[str, Any]:  # fmt: skip
    viewers = s.lurkers + s.chatters + s.likers
    senders = max(1, s.chatters or 1)
    senders = max(senders, min(viewers - s.likers, senders_for(s.chat_rate or 1, viewers)))
    work = ChatWorkload(
        viewers=viewers, rate=s.chat_rate or 1.0, duration_s=s.duration_s, room=room,
        senders=senders, drain_s=s.drain_s, warmup_s=0.0, connect_rate=s.connect_rate,
        likers=s.likers, like_rate=s.like_rate, arrivals=s.arrivals,
    )  # fmt: skip
    cpus = pinning.client_cpus
    return await run_chat(
        work, list(placement.targets), secret, server_pids=pids, workers=s.workers,
        client_cpus=cpus, label="chat", progress=progress, monitor=monitor,
        regions=placement.regions,
    )  # fmt: skip


async def _sale(
    s: Scenario, room: str, sale_id: str, urls: list[str], secret: str, pids: dict[str, int],
    pinning: servers.Pinning, progress: Progress, monitor: Monitor,
) -> dict[str, Any]:  # fmt: skip
    work = SaleWorkload(
        users=s.buyers, attempts=s.attempts, rate=s.sale_rate, duration_s=s.duration_s,
        room=room, sale_id=sale_id, concurrency=s.concurrency,
    )  # fmt: skip
    cpus = pinning.client_cpus
    return await run_buyers(
        work, urls, secret, server_pids=pids, workers=s.workers, client_cpus=cpus,
        label="sale", progress=progress, monitor=monitor,
        quantity=s.sale.quantity if s.sale else None,
    )  # fmt: skip


@contextlib.asynccontextmanager
async def _system(
    s: Scenario, pinning: servers.Pinning, progress: Progress
) -> AsyncIterator[tuple[list[str], dict[str, int], str, str | None, dict[str, NodeProcess]]]:
    """The given targets, or Valkey and pinned nodes started here: (urls, pids, secret, redis,
    the started processes by id). With edges, the origin comes first, then an edge per region."""
    if s.urls or s.regions:
        if not s.secret:
            raise ScenarioError(
                "targets need their token secret (target.secret or LIVE_JWT_SECRET)"
            )
        home = s.urls or ([next(iter(s.regions.urls.values()))] if s.regions else [])
        yield home, {}, s.secret, s.redis_url, {}
        return
    progress(pinning.describe() + "; nodes run with the commerce rate limits raised")
    async with servers.store(None, None, pinning) as (redis_url, valkey_pid, work_dir):
        secret = s.secret or secrets.token_urlsafe(32)
        started: list[NodeProcess] = []
        try:
            origin_role = {"role": "origin", "region": "na"} if s.edges else {}
            for i in range(s.nodes):
                started.append(await servers.start_python_node(
                    f"python-{i + 1}", redis_url, secret, pinning.server_cpus,
                    work_dir / "logs", RAISED_LIMITS, **origin_role,
                ))  # fmt: skip
            for region in s.edges:
                started.append(await servers.start_python_node(
                    f"edge-{region}", redis_url, secret, pinning.server_cpus, work_dir / "logs",
                    RAISED_LIMITS, role="edge", region=region, origin=started[0].url,
                ))  # fmt: skip
            if s.edges:
                progress("origin python-1 (na), edges " + ", ".join(
                    f"{p.node_id} {p.url}" for p in started[1:]))  # fmt: skip
            pids = {p.node_id: p.pid for p in started}
            if valkey_pid is not None:
                pids["valkey"] = valkey_pid
            yield ([p.url for p in started], pids, secret, redis_url,
                   {p.node_id: p for p in started})  # fmt: skip
        finally:
            await stop_all(started)
