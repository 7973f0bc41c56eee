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
    gifters = 50        # Socket.IO gifters, each granted credits first (the `orders` role)
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
    [gifts]
    rate = 20           # gifts per second room-wide over the nodes; 0: as fast as `concurrency`
    attempts = 100      # default: rate x duration_s
    grant = 10          # credits granted to each gifter (POST /api/wallets/{user}/credits)
    gift_id = "heart"   # from the default catalogue (rose 1, heart 3, star 10 credits, ...)
    count = 1
    [thresholds]
    rules = ["chat.delivery.p99 < 250ms", "errors.rate < 0.1%", "sale.invariants == 1",
             "gifts.invariants == 1"]
    abort_after = "10s" # stop early when a rule measured live fails this long

Gifters are checked after the run from the store and the purchase stream (debits equal the
host's credits plus the platform share, no balance below zero, one `gift.sent` per ledger entry
and acknowledged gift, balances equal grants minus spending): a breach fails the run. With
running `urls`, gifters need `[target] redis_url` for that check.

Started nodes with edges, and a node killed mid-show:

    [target]
    edges = ["eu", "sea"]   # the origin (python-1, region na) plus one edge per region
                            # (edge-eu, edge-sea); viewers and the crowd use the edges
    [[faults]]
    at_s = 5                # seconds after the WebRTC viewers' start
    kill = "edge-eu"        # SIGKILL a started node (not python-1, which holds the room)

With faults, WebRTC viewers fail over like the viewer page (`loadtest.fleet.rtc_worker`); the
document's `failover` says how many lost their node, how many were back within 5 s (first
frame from another node, counted from the kill) and how the origin's CPU went meanwhile.

Running nodes instead of started ones: `[target] urls` (the first is where the room is created,
the sale started and the publisher sends: the origin), and optionally a region map that spreads
the viewers and buyers by weight (`loadtest.plan.regions`): `regions = {na = URL, eu = URL}`,
`weights = {na = 3, eu = 1}`, `select = true` to ask each region's URL for the node the
deployment's selection API names. Results then come per region too (`regions` in the document,
`region.<name>.chat.delivery.p99` and the like in rules).
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from loadtest.clients import browsers as browser_role
from loadtest.fleet import servers
from loadtest.plan import regions as region_map
from loadtest.plan.arrivals import Arrivals
from loadtest.plan.regions import RegionMap
from loadtest.plan.workloads import GiftWorkload, SaleSpec
from loadtest.report import thresholds


class ScenarioError(ValueError):
    """A scenario file that cannot be run as written."""


# -- the file, table by table: a key not named here is refused -----------------------------------


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TargetTable(_Table):
    urls: list[str] = []
    nodes: int = 1
    secret: str | None = None
    redis_url: str | None = None
    # A region map, checked by `RegionMap.parse` (its own messages).
    regions: Any = None
    weights: Any = None
    select: Any = None
    edges: list[str] = []


class RolesTable(_Table):
    lurkers: int = 0
    chatters: int = 0
    chat_rate: float = 0.0
    likers: int = 0
    like_rate: float = 0.0
    buyers: int = 0
    gifters: int = 0
    webrtc_viewers: int = 0
    browsers: int = 0


class GiftsTable(_Table):
    rate: float = 10.0
    attempts: int | None = None  # default: rate x duration
    grant: int = 100
    gift_id: str = "rose"
    count: int = 1
    concurrency: int = 64


class SaleTable(_Table):
    quantity: int | None = None  # needed when there are buyers
    per_user_limit: int = 1
    attempts: int = 0
    rate: float = 0.0
    concurrency: int = 64


class GeneratorTable(_Table):
    workers: int = 0  # 0: one per generator CPU
    drain_s: float = 3.0
    connect_rate: float = 1000.0
    nice: int | None = None


class ThresholdsTable(_Table):
    rules: list[str] = []
    abort_after: str | float | None = None


class ArrivalTable(_Table):
    model: str = "closed"
    steps: list[tuple[float, float]] | None = None
    rate: float | None = None
    join_rate: float | None = None  # default: [generator] connect_rate


class WebrtcTable(_Table):
    join_rate: float = 20.0


class BrowserTable(_Table):
    executable: str | None = None
    join_rate: float = 5.0


class FaultTable(_Table):
    at_s: float
    kill: str


class ScenarioFile(_Table):
    """A scenario file as written."""

    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)

    name: str | None = None  # default: the file's name
    duration_s: float = 10.0
    target: TargetTable = TargetTable()
    roles: RolesTable = RolesTable()
    sale: SaleTable = SaleTable()
    gifts: GiftsTable = GiftsTable()
    thresholds: ThresholdsTable = ThresholdsTable()
    generator: GeneratorTable = GeneratorTable()
    arrival: ArrivalTable = ArrivalTable()
    webrtc: WebrtcTable = WebrtcTable()
    browser: BrowserTable = BrowserTable()
    faults: list[FaultTable] = []


_TABLES: dict[str, type[_Table]] = {
    "target": TargetTable, "roles": RolesTable, "sale": SaleTable, "gifts": GiftsTable,
    "generator": GeneratorTable,
    "thresholds": ThresholdsTable, "arrival": ArrivalTable, "webrtc": WebrtcTable,
    "browser": BrowserTable, "faults": FaultTable,
}  # fmt: skip


def _refusal(exc: ValidationError, path: Path) -> ScenarioError:
    """The first problem of the file in one line naming the key (and its table)."""
    errors = exc.errors()
    top = sorted(str(e["loc"][0]) for e in errors if len(e["loc"]) == 1
                 and e["type"] == "extra_forbidden")  # fmt: skip
    if top:
        known = sorted(ScenarioFile.model_fields)
        return ScenarioError(f"unknown top-level keys {top}; known: {known}")
    for table, model in _TABLES.items():
        mine = [e for e in errors if e["loc"][:1] == (table,)]
        if any(len(e["loc"]) == 1 for e in mine):
            return ScenarioError(f"[{table}] must be a table")
        unknown = sorted(str(e["loc"][1]) for e in mine if e["type"] == "extra_forbidden")
        if unknown:
            known = sorted(model.model_fields)
            return ScenarioError(f"[{table}] has unknown keys {unknown}; known: {known}")
    first = errors[0]
    head, *rest = (str(part) for part in first["loc"])
    where = f"[{head}] {'.'.join(rest)}" if head in _TABLES and rest else ".".join([head, *rest])
    return ScenarioError(f"{path}: {where}: {first['msg']}")


# -- what a run gets ------------------------------------------------------------------------------

ORIGIN_ID = "python-1"  # the first started node: the room, the sale and the publisher are there
EDGE_REGION = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")


@dataclass(frozen=True, slots=True)
class Fault:
    at_s: float  # after the WebRTC viewers' start (else the drivers')
    kill: str  # a started node's id: SIGKILL


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
    gifters: int = 0
    gifts: GiftWorkload | None = None
    rules: list[thresholds.Rule] = field(default_factory=list)
    workers: int = 1
    drain_s: float = 3.0
    connect_rate: float = 1000.0
    nice: int | None = None  # the generator's scheduling priority (negative: needs privileges)
    arrivals: Arrivals = field(default_factory=Arrivals)
    abort_after_s: float | None = None
    edges: list[str] = field(default_factory=list)  # regions of started edges
    faults: list[Fault] = field(default_factory=list)

    def started_ids(self) -> list[str]:
        """The ids of the nodes a run starts (none when it names running ones)."""
        if self.urls or self.regions:
            return []
        return [f"python-{i + 1}" for i in range(self.nodes)] + [f"edge-{r}" for r in self.edges]

    def all_urls(self) -> list[str]:
        """Every URL the scenario names (for the loopback check)."""
        return self.urls + (list(self.regions.urls.values()) if self.regions else [])


def load(path: Path) -> Scenario:
    """Read and check a scenario file; every rule is parsed (an unknown metric is an error)."""
    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ScenarioError(f"{path}: {exc}") from None
    try:
        f = ScenarioFile.model_validate(doc)
    except ValidationError as exc:
        raise _refusal(exc, path) from None
    target, roles, sale, gen = f.target, f.roles, f.sale, f.generator
    if roles.buyers and sale.quantity is None:
        raise ScenarioError("buyers need [sale] quantity")
    try:
        s = Scenario(
            name=f.name if f.name is not None else path.stem,
            duration_s=f.duration_s,
            urls=list(target.urls),
            nodes=target.nodes,
            secret=target.secret or os.environ.get("LIVE_JWT_SECRET"),
            redis_url=target.redis_url,
            **roles.model_dump(),  # the same names: lurkers, chatters, ..., browsers
            webrtc_join_rate=f.webrtc.join_rate,
            browser_executable=f.browser.executable or browser_role.default_executable(),
            browser_join_rate=f.browser.join_rate,
            regions=RegionMap.parse(target.regions,
                                    {} if target.weights is None else target.weights,
                                    False if target.select is None else target.select)
            if target.regions is not None else None,
            sale=SaleSpec(quantity=sale.quantity, per_user_limit=sale.per_user_limit)
            if roles.buyers and sale.quantity is not None else None,
            attempts=sale.attempts,
            sale_rate=sale.rate,
            concurrency=sale.concurrency,
            gifts=_gifts(f.gifts, roles.gifters, f.duration_s),
            rules=[thresholds.parse(r) for r in f.thresholds.rules],
            workers=gen.workers or max(1, len(_client_cpus())),
            nice=gen.nice,
            drain_s=gen.drain_s,
            connect_rate=_join_rate(f.arrival, gen),
            arrivals=_arrivals(f.arrival, gen),
            abort_after_s=None if f.thresholds.abort_after is None
            else _seconds(f.thresholds.abort_after),
            edges=list(target.edges),
            faults=[Fault(x.at_s, x.kill) for x in f.faults],
        )  # fmt: skip
        s.arrivals.validate()
    except ScenarioError:
        raise
    except region_map.RegionError as exc:
        raise ScenarioError(str(exc)) from None
    except thresholds.ThresholdError as exc:
        raise ScenarioError(str(exc)) from None
    except (TypeError, ValueError) as exc:
        raise ScenarioError(f"{path}: {exc!r}") from None
    if not 0 < s.duration_s <= 600:
        raise ScenarioError("duration_s must be above 0 and at most 600")
    if s.nodes not in (1, 2):
        raise ScenarioError("target.nodes must be 1 or 2")
    if s.chatters and s.chat_rate <= 0:
        raise ScenarioError("chatters need a chat_rate above 0")
    if s.buyers and s.attempts <= 0:
        raise ScenarioError("buyers need [sale] attempts above 0")
    if s.gifts is not None:
        try:
            s.gifts.validate()
        except ValueError as exc:
            raise ScenarioError(f"[gifts] {exc}") from None
        if (s.urls or s.regions) and not s.redis_url:
            raise ScenarioError("gifters on running nodes need [target] redis_url (the books)")
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
    if (target.weights is not None or target.select is not None) and s.regions is None:
        raise ScenarioError("[target] weights and select need a region map: regions = {na = URL}")
    if s.regions is not None and "nodes" in target.model_fields_set:
        raise ScenarioError("[target] regions name running nodes: drop `nodes`")
    _check_edges_and_faults(s)
    if not (
        s.lurkers + s.chatters + s.likers or s.buyers or s.gifters or s.webrtc_viewers or s.browsers
    ):
        raise ScenarioError("the scenario has no roles")
    return s


def _check_edges_and_faults(s: Scenario) -> None:
    if s.edges:
        if s.urls or s.regions:
            raise ScenarioError("[target] edges are started here: drop urls and regions")
        if s.nodes != 1:
            raise ScenarioError("[target] edges start one origin: nodes must be 1")
        if len(set(s.edges)) != len(s.edges) or not all(EDGE_REGION.match(r) for r in s.edges):
            raise ScenarioError("[target] edges: distinct regions of 1-32 of a-z, 0-9 and '-'")
        if len(s.edges) > 8:
            raise ScenarioError("[target] edges: at most 8")
    started = s.started_ids()
    for fault in s.faults:
        if not started:
            raise ScenarioError("[[faults]] kill nodes this run starts: drop [target] urls")
        if fault.kill not in started[1:]:
            raise ScenarioError(
                f"[[faults]] kill {fault.kill!r}: one of {started[1:]} "
                f"({ORIGIN_ID} holds the room and its publisher)"
            )
        if not 0 < fault.at_s < s.duration_s:
            raise ScenarioError("[[faults]] at_s must be within the run (0 < at_s < duration_s)")
    if len({f.kill for f in s.faults}) != len(s.faults):
        raise ScenarioError("[[faults]] a node is killed once")


def _gifts(table: GiftsTable, gifters: int, duration_s: float) -> GiftWorkload | None:
    if not gifters:
        return None
    attempts = table.attempts
    if attempts is None:
        if table.rate <= 0:
            raise ScenarioError("[gifts] rate 0 (as fast as possible) needs attempts")
        attempts = max(1, round(table.rate * duration_s))
    return GiftWorkload(
        gifters=gifters, attempts=attempts, rate=table.rate, duration_s=duration_s,
        grant=table.grant, gift_id=table.gift_id, count=table.count,
        concurrency=table.concurrency,
    )  # fmt: skip


def _join_rate(arrival: ArrivalTable, gen: GeneratorTable) -> float:
    return gen.connect_rate if arrival.join_rate is None else arrival.join_rate


def _arrivals(arrival: ArrivalTable, gen: GeneratorTable) -> Arrivals:
    if arrival.rate is not None and arrival.steps is not None:
        raise ScenarioError("[arrival] takes `rate` or `steps`, not both")
    if arrival.rate is not None:
        steps: tuple[tuple[float, float], ...] = ((0.0, arrival.rate),)
    else:
        steps = tuple(arrival.steps or ())
    if arrival.model == "closed" and steps:
        raise ScenarioError("closed arrivals take `join_rate`; `rate`/`steps` need model = 'open'")
    return Arrivals(model=arrival.model, join_rate=_join_rate(arrival, gen), steps=steps)


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
    return servers.pinning_for().client_cpus
