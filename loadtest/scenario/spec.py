"""The scenario file of `live loadtest run`: its format, read into the `Scenario` a run gets.

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

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadtest.clients import browsers as browser_role
from loadtest.fleet import servers
from loadtest.plan import regions as region_map
from loadtest.plan.arrivals import Arrivals
from loadtest.plan.regions import RegionMap
from loadtest.plan.workloads import SaleSpec
from loadtest.report import procfs, thresholds


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


def _client_cpus() -> list[int]:
    return servers.default_pinning(procfs.available_cpus()).client_cpus
