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
from collections.abc import AsyncIterator
from typing import Any

from devtools.spawn import NodeProcess, stop_all
from loadtest.benches.chat import run_chat
from loadtest.benches.sale import RAISED_LIMITS, check_invariants, run_buyers
from loadtest.benches.webrtc import publishing, run_viewers
from loadtest.clients import browsers as browser_role
from loadtest.clients.rest import create_room, start_sale
from loadtest.fleet import servers
from loadtest.plan import regions as region_map
from loadtest.plan.regions import Placement, RegionMap
from loadtest.plan.workloads import ChatWorkload, SaleWorkload, senders_for
from loadtest.report import procfs, scrape, thresholds
from loadtest.report.display import Display, Monitor, Progress
from loadtest.report.histogram import Histogram
from loadtest.scenario.spec import Scenario, ScenarioError


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
    async with _system(scenario, pinning, progress) as (urls, pids, secret, redis_url):
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
        names = list(jobs)
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
                    )  # fmt: skip
                results = await _with_browsers(
                    scenario, names, jobs, room, secret, placement, pinning, progress, monitor
                )
        finally:
            monitor.display.close()
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
    doc["server_metrics"] = server_metrics
    doc["partial"] = monitor.stop.is_set() or any(
        r.get("partial") for r in results.values() if isinstance(r, dict)
    )
    doc["stopped"] = monitor.reason
    metrics = thresholds.metrics_of(doc)
    doc["thresholds"] = thresholds.evaluate(scenario.rules, metrics, partial=doc["partial"])
    doc["metrics"] = thresholds.finite(metrics)
    invariants_ok = "sale" not in doc or doc["sale"]["invariants"]["ok"]
    doc["passed"] = (
        invariants_ok and all(r["passed"] for r in doc["thresholds"]) and not doc["partial"]
    )
    return doc


async def _placement(s: Scenario, room: str, urls: list[str], progress: Progress) -> Placement:
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
) -> AsyncIterator[tuple[list[str], dict[str, int], str, str | None]]:
    """The given targets, or Valkey and pinned nodes started here: (urls, pids, secret, redis)."""
    if s.urls or s.regions:
        if not s.secret:
            raise ScenarioError(
                "targets need their token secret (target.secret or LIVE_JWT_SECRET)"
            )
        home = s.urls or ([next(iter(s.regions.urls.values()))] if s.regions else [])
        yield home, {}, s.secret, s.redis_url
        return
    progress(pinning.describe() + "; nodes run with the commerce rate limits raised")
    async with servers.store(None, None, pinning) as (redis_url, valkey_pid, work_dir):
        secret = s.secret or secrets.token_urlsafe(32)
        started: list[NodeProcess] = []
        try:
            for i in range(s.nodes):
                started.append(await servers.start_python_node(
                    f"python-{i + 1}", redis_url, secret, pinning.server_cpus,
                    work_dir / "logs", RAISED_LIMITS,
                ))  # fmt: skip
            pids = {p.node_id: p.pid for p in started}
            if valkey_pid is not None:
                pids["valkey"] = valkey_pid
            yield [p.url for p in started], pids, secret, redis_url
        finally:
            await stop_all(started)
