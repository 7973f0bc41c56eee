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
    [webrtc]
    join_rate = 20      # WHEP sessions started per second
    [sale]
    quantity = 50
    per_user_limit = 2
    attempts = 300
    rate = 0            # attempts per second; 0: as fast as `concurrency` allows
    [thresholds]
    rules = ["chat.delivery.p99 < 250ms", "errors.rate < 0.1%", "sale.invariants == 1"]
    abort_after = "10s" # stop early when a rule measured live fails this long
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

from loadtest import scrape, servers, thresholds
from loadtest.arrivals import Arrivals
from loadtest.chat import Progress, run_chat
from loadtest.display import Display, Monitor
from loadtest.plan import ChatWorkload, SaleWorkload, senders_for
from loadtest.procstat import available_cpus
from loadtest.sale import SaleSpec, check_invariants, run_buyers, start_sale
from loadtest.salebench import RAISED_LIMITS
from loadtest.suite import create_room, store
from loadtest.webrtc import publishing, run_viewers


class ScenarioError(ValueError):
    """A scenario file that cannot be run as written."""


_TOP = {"name", "duration_s", "target", "roles", "sale", "thresholds", "generator", "arrival",
        "webrtc"}  # fmt: skip
_ARRIVAL = {"model", "steps", "rate", "join_rate"}
_TARGET = {"urls", "nodes", "secret", "redis_url"}
_ROLES = {"lurkers", "chatters", "chat_rate", "likers", "like_rate", "buyers", "webrtc_viewers"}
_WEBRTC = {"join_rate"}
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
    if not (s.lurkers + s.chatters + s.likers or s.buyers or s.webrtc_viewers):
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
        metrics_before = await scrape.scrape(urls)
        jobs: dict[str, Any] = {}
        if scenario.lurkers + scenario.chatters + scenario.likers:
            jobs["chat"] = _chat(scenario, room, urls, secret, pids, pinning, progress, monitor)
        sale_info: dict[str, Any] = {}
        if scenario.buyers and scenario.sale is not None:
            sale = await start_sale(urls[0], secret, room, scenario.sale)
            sale_info = {"sale_id": sale["sale_id"], "quantity": scenario.sale.quantity}
            jobs["sale"] = _sale(scenario, room, sale["sale_id"], urls, secret, pids, pinning,
                                 progress, monitor)  # fmt: skip
        names = list(jobs)
        try:
            async with contextlib.AsyncExitStack() as live:
                if scenario.webrtc_viewers:
                    # The viewers need a live room: publish first, keep it up until they are done.
                    await live.enter_async_context(
                        publishing(urls[0], secret, room, scenario.duration_s + 120)
                    )
                    names.append("webrtc")
                    jobs["webrtc"] = run_viewers(
                        urls, secret, room, scenario.webrtc_viewers, scenario.duration_s,
                        join_rate=scenario.webrtc_join_rate, workers=scenario.workers,
                        client_cpus=pinning.client_cpus, progress=progress, monitor=monitor,
                    )  # fmt: skip
                results = dict(zip(names, await asyncio.gather(*jobs.values()), strict=True))
        finally:
            monitor.display.close()
        server_metrics = scrape.compare(metrics_before, await scrape.scrape(urls))
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
        f"targets {' '.join(scenario.urls)} (not pinned here); load generator on CPU "
        + ",".join(map(str, pinning.client_cpus))
        if scenario.urls
        else pinning.describe()
    )
    doc: dict[str, Any] = {"name": scenario.name, "pinning": where, **results}
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


async def _chat(
    s: Scenario, room: str, urls: list[str], secret: str, pids: dict[str, int],
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
        work, urls, secret, server_pids=pids, workers=s.workers, client_cpus=cpus,
        label="chat", progress=progress, monitor=monitor,
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
    if s.urls:
        if not s.secret:
            raise ScenarioError(
                "targets need their token secret (target.secret or LIVE_JWT_SECRET)"
            )
        yield s.urls, {}, s.secret, s.redis_url
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
    "webrtc.loss", "webrtc.bitrate_kbps", "webrtc.fps", "errors.rate", "generator.loop_lag.p99",
    "generator.cpu_pct",
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
