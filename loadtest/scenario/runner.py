"""`live loadtest run scenario.toml`: a show's crowd of mixed roles, judged by thresholds.

Lurkers and chatters (and likers among them) are the chat driver's crowd in one room; buyers are
the sale driver's, racing a sale the scenario starts in the same room at the same time; WebRTC
viewers watch the room, which a synthetic publisher makes live first. All run side by side; the
result is one JSON document (and an HTML report) with the nodes' /metrics before and after and
the rules' verdicts. Ctrl-C or an abort rule stops the run with a partial report.

    name = "evening show"
    duration_s = 5
    [arrival]           # closed (default): the crowd joins before the start at join_rate/s
    model = "open"      # open: lurkers arrive during the run, at rates that step up
    steps = [[0, 50], [2, 200]]   # [from second, arrivals per second]; `rate = 100` is one step
    [target]            # no urls: start Valkey and `nodes` pinned `live serve` processes
    urls = []
    nodes = 1
    [roles]
    lurkers = 200
    chatters = 20
    chat_rate = 10      # room-wide messages per second
    likers = 20
    like_rate = 50
    buyers = 100
    webrtc_viewers = 20 # receive-only WHEP viewers of a synthetic publisher the scenario starts
    browsers = 2        # headless Chromium pages on the real viewer page (at most 20)
    [webrtc]
    join_rate = 20      # WHEP sessions started per second
    [browser]
    executable = "/usr/bin/chromium"  # default: `chromium` on PATH, else /usr/bin/chromium
    join_rate = 5       # pages opened per second
    [sale]
    quantity = 50
    per_user_limit = 2
    attempts = 300
    rate = 0            # attempts per second; 0: as fast as `concurrency` allows
    [thresholds]
    rules = ["chat.delivery.p99 < 250ms", "errors.rate < 0.1%", "sale.invariants == 1"]
    abort_after = "10s" # stop early when a rule measured live fails this long

Running nodes instead of started ones: `[target] urls` (the first is where the room is created,
the sale started and the publisher sends: the origin), and optionally a region map that spreads
the viewers and buyers by weight (`loadtest.plan.regions`): `regions = {na = URL, eu = URL}`,
`weights = {na = 3, eu = 1}`, `select = true` to ask each region's URL for the node the
deployment's selection API names. Results then come per region too (`regions` in the document,
`region.<name>.chat.delivery.p99` and the like in rules).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import tomllib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadtest.benches.chat import Progress, run_chat
from loadtest.benches.chat_session import create_room, store
from loadtest.benches.sale import RAISED_LIMITS
from loadtest.benches.sale_driver import SaleSpec, check_invariants, run_buyers, start_sale
from loadtest.benches.webrtc import publishing, run_viewers
from loadtest.clients import browsers as browser_role
from loadtest.fleet import servers
from loadtest.plan import regions as region_map
from loadtest.plan.arrivals import Arrivals
from loadtest.plan.regions import Placement, RegionMap
from loadtest.plan.workloads import ChatWorkload, SaleWorkload, senders_for
from loadtest.report import scrape, thresholds
from loadtest.report.display import Display, Monitor
from loadtest.report.histogram import Histogram
from loadtest.report.procfs import available_cpus


class ScenarioError(ValueError):
    """A scenario file that cannot be run as written."""


_TOP = {"name", "duration_s", "target", "roles", "sale", "thresholds", "generator", "arrival",
        "webrtc", "browser"}  # fmt: skip
_ARRIVAL = {"model", "steps", "rate", "join_rate"}
_TARGET = {"urls", "nodes", "secret", "redis_url", "regions", "weights", "select"}
_ROLES = {"lurkers", "chatters", "chat_rate", "likers", "like_rate", "buyers", "webrtc_viewers",
          "browsers"}  # fmt: skip
_WEBRTC = {"join_rate"}
_BROWSER = {"executable", "join_rate"}
_SALE = {"quantity", "per_user_limit", "attempts", "rate", "concurrency"}
_GENERATOR = {"workers", "drain_s", "connect_rate", "nice"}


@dataclass
class Scenario:
    name: str
    duration_s: float
    urls: list[str] = field(default_factory=list)
    nodes: int = 1
    secret: str | None = None
    redis_url: str | None = None
    lurkers: int = 0
    chatters: int = 0
    chat_rate: float = 0.0
    likers: int = 0
    like_rate: float = 0.0
    buyers: int = 0
    webrtc_viewers: int = 0
    webrtc_join_rate: float = 20.0
    browsers: int = 0
    browser_executable: str = field(default_factory=browser_role.default_executable)
    browser_join_rate: float = 5.0
    regions: RegionMap | None = None
    allow_remote: bool = False  # set by the command line (--allow-remote)
    sale: SaleSpec | None = None
    attempts: int = 0
    sale_rate: float = 0.0
    concurrency: int = 64
    rules: list[thresholds.Rule] = field(default_factory=list)
    workers: int = 1
    drain_s: float = 3.0
    connect_rate: float = 1000.0
    nice: int | None = None  # the generator's scheduling priority (negative: needs privileges)
    arrivals: Arrivals = field(default_factory=Arrivals)
    abort_after_s: float | None = None

    def all_urls(self) -> list[str]:
        """Every URL the scenario names (for the loopback check)."""
        return self.urls + (list(self.regions.urls.values()) if self.regions else [])


def _table(doc: dict[str, Any], key: str, allowed: set[str]) -> dict[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise ScenarioError(f"[{key}] must be a table")
    unknown = set(value) - allowed
    if unknown:
        raise ScenarioError(f"[{key}] has unknown keys {sorted(unknown)}; known: {sorted(allowed)}")
    return value


def load(path: Path) -> Scenario:
    """Read and check a scenario file; every rule is parsed (an unknown metric is an error)."""
    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ScenarioError(f"{path}: {exc}") from None
    unknown = set(doc) - _TOP
    if unknown:
        raise ScenarioError(f"unknown top-level keys {sorted(unknown)}; known: {sorted(_TOP)}")
    target = _table(doc, "target", _TARGET)
    roles = _table(doc, "roles", _ROLES)
    sale = _table(doc, "sale", _SALE)
    gen = _table(doc, "generator", _GENERATOR)
    rules_doc = _table(doc, "thresholds", {"rules", "abort_after"})
    arrival = _table(doc, "arrival", _ARRIVAL)
    rtc = _table(doc, "webrtc", _WEBRTC)
    chromium = _table(doc, "browser", _BROWSER)
    try:
        rules = [thresholds.parse(r) for r in rules_doc.get("rules", [])]
        s = Scenario(
            name=str(doc.get("name", path.stem)),
            duration_s=float(doc.get("duration_s", 10)),
            urls=list(target.get("urls", [])),
            nodes=int(target.get("nodes", 1)),
            secret=target.get("secret") or os.environ.get("LIVE_JWT_SECRET"),
            redis_url=target.get("redis_url"),
            lurkers=int(roles.get("lurkers", 0)),
            chatters=int(roles.get("chatters", 0)),
            chat_rate=float(roles.get("chat_rate", 0)),
            likers=int(roles.get("likers", 0)),
            like_rate=float(roles.get("like_rate", 0)),
            buyers=int(roles.get("buyers", 0)),
            webrtc_viewers=int(roles.get("webrtc_viewers", 0)),
            webrtc_join_rate=float(rtc.get("join_rate", 20.0)),
            browsers=int(roles.get("browsers", 0)),
            browser_executable=str(chromium.get("executable")
                                   or browser_role.default_executable()),
            browser_join_rate=float(chromium.get("join_rate", 5.0)),
            regions=RegionMap.parse(target["regions"], target.get("weights", {}),
                                    target.get("select", False))
            if "regions" in target else None,
            sale=SaleSpec(quantity=int(sale["quantity"]),
                          per_user_limit=int(sale.get("per_user_limit", 1)))
            if roles.get("buyers") else None,
            attempts=int(sale.get("attempts", 0)),
            sale_rate=float(sale.get("rate", 0)),
            concurrency=int(sale.get("concurrency", 64)),
            rules=rules,
            workers=int(gen.get("workers", 0)) or max(1, len(_client_cpus())),
            nice=int(gen["nice"]) if "nice" in gen else None,
            drain_s=float(gen.get("drain_s", 3.0)),
            connect_rate=float(arrival.get("join_rate", gen.get("connect_rate", 1000.0))),
            arrivals=_arrivals(arrival, gen),
            abort_after_s=_seconds(rules_doc["abort_after"]) if "abort_after" in rules_doc
            else None,
        )  # fmt: skip
        s.arrivals.validate()
    except ScenarioError:
        raise
    except region_map.RegionError as exc:
        raise ScenarioError(str(exc)) from None
    except thresholds.ThresholdError as exc:
        raise ScenarioError(str(exc)) from None
    except (KeyError, TypeError, ValueError) as exc:
        raise ScenarioError(f"{path}: {exc!r}") from None
    if not 0 < s.duration_s <= 600:
        raise ScenarioError("duration_s must be above 0 and at most 600")
    if s.nodes not in (1, 2):
        raise ScenarioError("target.nodes must be 1 or 2")
    if s.chatters and s.chat_rate <= 0:
        raise ScenarioError("chatters need a chat_rate above 0")
    if s.buyers and s.attempts <= 0:
        raise ScenarioError("buyers need [sale] attempts above 0")
    if s.arrivals.model == "open" and not s.lurkers:
        raise ScenarioError("open arrivals bring lurkers in during the run: add some lurkers")
    if s.nice is not None and not -20 <= s.nice <= 19:
        raise ScenarioError("[generator] nice must be between -20 and 19")
    if s.abort_after_s is not None and not 0 < s.abort_after_s <= 600:
        raise ScenarioError("abort_after must be above 0 and at most 600 s")
    if not 0 <= s.webrtc_viewers <= 5000 or not 0 < s.webrtc_join_rate <= 1000:
        raise ScenarioError("webrtc_viewers must be 0..5000 and [webrtc] join_rate 0..1000/s")
    if not 0 <= s.browsers <= browser_role.MAX_BROWSERS or not 0 < s.browser_join_rate <= 50:
        raise ScenarioError(
            f"browsers must be 0..{browser_role.MAX_BROWSERS} (each is a headless Chromium page)"
            " and [browser] join_rate 0..50/s"
        )
    if s.browsers:
        try:
            browser_role.check_available(s.browser_executable)
        except browser_role.BrowserUnavailable as exc:
            raise ScenarioError(str(exc)) from None
    if ("weights" in target or "select" in target) and s.regions is None:
        raise ScenarioError("[target] weights and select need a region map: regions = {na = URL}")
    if s.regions is not None and "nodes" in target:
        raise ScenarioError("[target] regions name running nodes: drop `nodes`")
    if not (s.lurkers + s.chatters + s.likers or s.buyers or s.webrtc_viewers or s.browsers):
        raise ScenarioError("the scenario has no roles")
    return s


def _arrivals(arrival: dict[str, Any], gen: dict[str, Any]) -> Arrivals:
    join_rate = float(arrival.get("join_rate", gen.get("connect_rate", 1000.0)))
    model = str(arrival.get("model", "closed"))
    if "rate" in arrival and "steps" in arrival:
        raise ScenarioError("[arrival] takes `rate` or `steps`, not both")
    if "rate" in arrival:
        steps: tuple[tuple[float, float], ...] = ((0.0, float(arrival["rate"])),)
    else:
        steps = tuple((float(t), float(r)) for t, r in arrival.get("steps", []))
    if model == "closed" and steps:
        raise ScenarioError("closed arrivals take `join_rate`; `rate`/`steps` need model = 'open'")
    return Arrivals(model=model, join_rate=join_rate, steps=steps)


def _seconds(text: object) -> float:
    """`"10s"`, `"500ms"` or a plain number of seconds."""
    value = str(text).strip()
    try:
        if value.endswith("ms"):
            return float(value[:-2]) / 1000
        return float(value.removesuffix("s"))
    except ValueError:
        raise ScenarioError(f"not a duration: {text!r} (want e.g. '10s')") from None


def _renice(nice: int, progress: Progress) -> None:
    try:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    except OSError as exc:
        progress(f"generator priority {nice} not set: {exc}")
    else:
        progress(f"generator runs at nice {nice}")


def _client_cpus() -> list[int]:
    return servers.default_pinning(available_cpus()).client_cpus


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
    pinning = servers.default_pinning(available_cpus())
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
        + ",".join(map(str, pinning.client_cpus or available_cpus()))
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
    async with store(None, None, pinning) as (redis_url, valkey_pid, work_dir):
        secret = s.secret or secrets.token_urlsafe(32)
        started: list[servers.ServerProcess] = []
        try:
            for i in range(s.nodes):
                started.append(await servers.start_python_node(
                    f"python-{i + 1}", redis_url, secret, pinning.server_cpus,
                    work_dir / "logs", RAISED_LIMITS,
                ))  # fmt: skip
            pids = {p.name: p.pid for p in started}
            if valkey_pid is not None:
                pids["valkey"] = valkey_pid
            yield [p.url for p in started], pids, secret, redis_url
        finally:
            for proc in started:
                servers.stop(proc)


LATE_GENERATOR_MS = 50.0  # generator loop lag above which measured latencies are its own too

_TABLE_KEYS = (
    "chat.joined", "chat.arrived", "chat.connect.p99", "chat.join.p99", "chat.delivery.p50",
    "chat.delivery.p99", "chat.missing", "likes.sent", "likes.delay.p50", "likes.delay.p99",
    "sale.attempts_per_s", "sale.reservation.p50", "sale.reservation.p99", "sale.reserved",
    "sale.sell_through", "sale.invariants", "webrtc.viewers", "webrtc.first_frame.p99",
    "webrtc.loss", "webrtc.bitrate_kbps", "webrtc.fps", "browser.pages", "browser.load.p50",
    "browser.join.p50", "browser.chat.delivery.p50", "browser.chat.delivery.p99",
    "browser.video.first_frame.p50", "browser.video.fps", "browser.errors", "errors.rate",
    "generator.loop_lag.p99", "generator.cpu_pct",
)  # fmt: skip
# The per-region table: (column, metric after `region.<name>.`).
_REGION_COLUMNS = (
    ("chat", "chat.joined"), ("chat p50", "chat.delivery.p50"), ("chat p99", "chat.delivery.p99"),
    ("rtc", "webrtc.viewers"), ("1st frame p50", "webrtc.first_frame.p50"),
    ("1st frame p99", "webrtc.first_frame.p99"), ("pages", "browser.pages"),
    ("page chat p99", "browser.chat.delivery.p99"),
    ("page 1st frame", "browser.video.first_frame.p50"),
)  # fmt: skip


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def summary(doc: dict[str, Any]) -> str:
    """The final table: the main metrics, then every rule with its measured value, the verdict."""
    lines = [f"scenario {doc['name']}: {doc['pinning']}"]
    if doc.get("partial"):
        lines.append(f"PARTIAL: stopped early ({doc.get('stopped') or 'a driver stopped'})")
    m = doc["metrics"]
    lines.append(f"  {'metric':<26} {'value':>12}")
    for key in _TABLE_KEYS:
        if key in m:
            lines.append(f"  {key:<26} {_fmt(m[key]):>12}")
    lines.extend(region_table(doc))
    errors = doc.get("browser", {}).get("errors")
    if errors:
        lines.append("  browser errors: " + ", ".join(f"{k} {n}" for k, n in errors.items()))
    if doc["thresholds"]:
        lines.append(f"  {'rule':<40} {'measured':>12}  result")
    for r in doc["thresholds"]:
        verdict = "pass" if r["passed"] else "FAIL"
        lines.append(f"  {r['rule']:<40} {_fmt(r['actual']):>12}  {verdict}")
    lag = m.get("generator.loop_lag.p99")
    if lag is not None and lag > LATE_GENERATOR_MS:
        lines.append(
            f"note: the load generator's event loop ran late (p99 {lag:.0f} ms, CPU "
            f"{m.get('generator.cpu_pct', 0):.0f}%): its latencies include that delay"
        )
    lines.append("PASSED" if doc["passed"] else "FAILED")
    return "\n".join(lines)


def region_table(doc: dict[str, Any]) -> list[str]:
    """Per region of the map: viewers, chat delivery and first frame (ms); empty without a map."""
    m = doc["metrics"]
    regions = list(doc.get("regions", {}))
    columns = [(c, k) for c, k in _REGION_COLUMNS if any(f"region.{r}.{k}" in m for r in regions)]
    if not regions or not columns:
        return []
    lines = ["  " + f"{'region':<8}" + "".join(f"{c:>15}" for c, _ in columns)]
    for r in regions:
        cells = "".join(f"{_fmt(m.get(f'region.{r}.{k}')):>15}" for _, k in columns)
        lines.append(f"  {r:<8}{cells}")
    return lines
