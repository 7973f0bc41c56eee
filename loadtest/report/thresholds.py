"""Pass/fail rules over a run's metrics: `chat.delivery.p99 < 250ms`, `errors.rate < 0.1%`.

A rule names a metric, a comparison and a number with an optional unit (`ms`, `s`, `%`). A rule
naming a metric the run does not measure is an error, never a pass.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_RULE = re.compile(
    r"^\s*(?P<metric>[a-z][a-z0-9_.-]*)\s*(?P<op><=|>=|==|!=|<|>)\s*"
    r"(?P<value>-?\d+(?:\.\d+)?)\s*(?P<unit>ms|s|%)?\s*$"
)
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
    "==": operator.eq, "!=": operator.ne,
}  # fmt: skip
# What a metric is measured in: latencies in ms, rates as fractions, the rest as plain numbers.
_UNITS = {"ms": ("ms", 1.0), "s": ("ms", 1000.0), "%": ("fraction", 0.01), None: (None, 1.0)}

# Every metric a scenario run can report, with its kind (for units).
METRICS: dict[str, str] = {
    **{f"chat.delivery.{q}": "ms" for q in ("p50", "p95", "p99", "max", "mean")},
    **{f"chat.connect.{q}": "ms" for q in ("p50", "p95", "p99")},
    **{f"chat.join.{q}": "ms" for q in ("p50", "p95", "p99")},
    "chat.missing": "count",
    "chat.delivered": "count",
    "chat.joined": "count",
    "likes.sent": "count",
    # From a like sent to the room's `likes` total that counts it arriving back.
    **{f"likes.delay.{q}": "ms" for q in ("p50", "p95", "p99", "max", "mean")},
    "likes.unconfirmed": "count",
    "chat.arrived": "count",  # viewers that arrived during the run (open arrivals)
    # From the sale's start to the answer that reserved its last unit (infinite: not sold out).
    "sale.sell_through": "ms",
    "sale.sold_out": "count",  # 1 when every unit was reserved
    **{f"sale.reservation.{q}": "ms" for q in ("p50", "p95", "p99", "max", "mean")},
    "sale.attempts_per_s": "count",
    "sale.reserved": "count",
    "sale.invariants": "count",  # 1 when every invariant holds
    # Gifters: a gift sent to its acknowledgement (accepted or refused), gifts sent per second,
    # gifts accepted, and 1 when the books hold (loadtest.benches.gifts).
    **{f"gifts.ack.{q}": "ms" for q in ("p50", "p95", "p99", "max", "mean")},
    "gifts.attempts_per_s": "count",
    "gifts.accepted": "count",
    "gifts.invariants": "count",
    "webrtc.viewers": "count",  # viewers that got a first frame
    **{f"webrtc.first_frame.{q}": "ms" for q in ("p50", "p95", "p99", "max", "mean")},
    **{f"webrtc.setup.{q}": "ms" for q in ("p50", "p95", "p99")},
    "webrtc.loss": "fraction",
    "webrtc.bitrate_kbps": "count",  # per watching viewer
    "webrtc.fps": "count",  # video frames per second per watching viewer
    # [[faults]]: WebRTC viewers that lost their node, got video again from another, within 5 s
    # of the kill (a fraction of those lost), and the kill to that first frame.
    "failover.lost": "count",
    "failover.back": "count",
    "failover.back_5s": "fraction",
    **{f"failover.recovery.{q}": "ms" for q in ("p50", "p95", "p99", "max", "mean")},
    "browser.pages": "count",  # pages that joined the chat
    "browser.playing": "count",  # pages that presented a video frame
    # Navigation start to the page's `load`, and to its chat being joined.
    **{f"browser.load.{q}": "ms" for q in ("p50", "p95", "p99", "max", "mean")},
    **{f"browser.join.{q}": "ms" for q in ("p50", "p95", "p99", "max", "mean")},
    # A chatter's send to the message rendered in a page's chat list.
    **{f"browser.chat.delivery.{q}": "ms" for q in ("p50", "p95", "p99", "max", "mean")},
    "browser.chat.delivered": "count",
    # Navigation start to the first video frame presented (load, join and WHEP included).
    **{f"browser.video.first_frame.{q}": "ms" for q in ("p50", "p95", "p99", "max", "mean")},
    "browser.video.fps": "count",  # frames decoded per second per playing page (getStats)
    "browser.errors": "count",  # console errors, page errors, failed loads/joins, no video...
    "errors.count": "count",
    "errors.rate": "fraction",
    "generator.loop_lag.p99": "ms",
    "generator.cpu_pct": "count",  # the load-generator workers' CPU, in % of one core
}


# Per region of a scenario's region map: `region.<name>.` before one of these.
REGION_METRICS: dict[str, str] = {
    "chat.joined": "count",
    **{f"chat.delivery.{q}": "ms" for q in ("p50", "p95", "p99", "max", "mean")},
    "webrtc.viewers": "count",
    **{f"webrtc.first_frame.{q}": "ms" for q in ("p50", "p95", "p99", "max", "mean")},
    "browser.pages": "count",
    **{f"browser.chat.delivery.{q}": "ms" for q in ("p50", "p95", "p99", "max", "mean")},
    **{f"browser.video.first_frame.{q}": "ms" for q in ("p50", "p95", "p99", "max", "mean")},
}
_REGION_METRIC = re.compile(r"^region\.([a-z0-9][a-z0-9-]{0,31})\.(.+)$")


def kind_of(metric: str) -> str | None:
    """The metric's kind (ms, fraction, count), or None when no run reports it."""
    match = _REGION_METRIC.match(metric)
    if match is not None:
        return REGION_METRICS.get(match[2])
    return METRICS.get(metric)


class ThresholdError(ValueError):
    """A rule that cannot be evaluated: bad syntax, unknown metric, wrong unit."""


@dataclass(frozen=True, slots=True)
class Rule:
    text: str
    metric: str
    op: str
    value: float  # in the metric's own unit

    def holds(self, actual: float) -> bool:
        return _OPS[self.op](actual, self.value)


def parse(text: str) -> Rule:
    match = _RULE.match(text)
    if match is None:
        raise ThresholdError(f"cannot read rule {text!r} (want e.g. 'chat.delivery.p99 < 250ms')")
    metric, unit = match["metric"], match["unit"]
    kind = kind_of(metric)
    if kind is None:
        raise ThresholdError(f"rule {text!r} names unknown metric {metric!r}; known: "
                             + ", ".join(sorted(METRICS)) + "; per region: region.NAME."
                             + ", region.NAME.".join(sorted(REGION_METRICS)))  # fmt: skip
    want, scale = _UNITS[unit]
    if want is not None and want != kind:
        raise ThresholdError(f"rule {text!r}: {metric} is a {kind}, not in {unit}")
    if want is None and kind == "fraction":
        scale = 1.0  # a bare number is the fraction itself
    return Rule(text.strip(), metric, match["op"], float(match["value"]) * scale)


def evaluate(
    rules: list[Rule], metrics: dict[str, float], partial: bool = False
) -> list[dict[str, Any]]:
    """Each rule with the measured value and whether it passed.

    A partial run (stopped early) may miss a metric: that rule fails instead of being an error.
    """
    out = []
    for rule in rules:
        if rule.metric not in metrics:
            if not partial:
                raise ThresholdError(f"rule {rule.text!r}: this run did not measure {rule.metric}")
            out.append({"rule": rule.text, "metric": rule.metric, "actual": None,
                        "limit": rule.value, "passed": False})  # fmt: skip
            continue
        actual = metrics[rule.metric]
        out.append({"rule": rule.text, "metric": rule.metric,
                    "actual": actual if math.isfinite(actual) else None,
                    "limit": rule.value, "passed": rule.holds(actual)})  # fmt: skip
    return out


def finite(metrics: dict[str, float]) -> dict[str, float | None]:
    """The metrics for JSON: an infinite value (never happened) becomes null."""
    return {k: (v if math.isfinite(v) else None) for k, v in metrics.items()}


def _latency(summary: dict[str, float], q: str) -> float:
    """A percentile of a latency summary; infinite when nothing was measured (a rule fails)."""
    return summary[q] if summary["count"] else math.inf


def metrics_of(doc: dict[str, Any]) -> dict[str, float]:
    """The named metrics of a scenario run's document (only those the run measured)."""
    m: dict[str, float] = {}
    chat, sale, rtc = doc.get("chat"), doc.get("sale"), doc.get("webrtc")
    operations = 0
    errors = 0
    if chat is not None:
        for q in ("p50", "p95", "p99", "max", "mean"):
            m[f"chat.delivery.{q}"] = _latency(chat["latency_ms"], q)
        for q in ("p50", "p95", "p99"):
            m[f"chat.connect.{q}"] = _latency(chat["connections"]["connect_ms"], q)
            m[f"chat.join.{q}"] = _latency(chat["connections"]["join_ms"], q)
        m["chat.missing"] = chat["deliveries"]["missing"]
        m["chat.delivered"] = chat["deliveries"]["delivered"]
        m["chat.joined"] = chat["connections"]["joined"]
        m["likes.sent"] = chat.get("likes_sent", 0)
        likes = chat.get("likes")
        if likes is not None and likes["sent"]:
            for q in ("p50", "p95", "p99", "max", "mean"):
                m[f"likes.delay.{q}"] = likes["delay_ms"][q] if likes["confirmed"] else math.inf
            m["likes.unconfirmed"] = likes["sent"] - likes["confirmed"]
        if "arrivals" in chat:
            m["chat.arrived"] = chat["arrivals"]["arrived_during_run"]
        m["generator.loop_lag.p99"] = chat["generator"]["loop_lag_ms"]["p99"]
        # Every message due is in the outcomes (a stopped run: only those due before the stop).
        outcomes = chat["messages"]["outcomes"]
        operations += chat["connections"]["attempted"] + sum(outcomes.values())
        errors += chat["connections"]["attempted"] - chat["connections"]["joined"]
        errors += sum(n for outcome, n in outcomes.items() if outcome != "ok")
    if sale is not None:
        for q in ("p50", "p95", "p99", "max", "mean"):
            m[f"sale.reservation.{q}"] = _latency(sale["latency_ms"], q)
        m["sale.attempts_per_s"] = sale["attempts"]["per_s"]
        m["sale.reserved"] = sale["attempts"]["reserved"]
        m["sale.invariants"] = 1.0 if sale["invariants"]["ok"] else 0.0
        through = sale.get("sell_through")
        if through is not None:
            m["sale.sold_out"] = 1.0 if through["sold_out"] else 0.0
            m["sale.sell_through"] = through["seconds"] * 1000 if through["sold_out"] else math.inf
        operations += sale["attempts"]["sent"]
        # 409s (sold out, limit) and 429s are answers the crowd expects; 5xx and no answer are not.
        errors += sale["attempts"]["sent"] - sale["attempts"]["http_answers"]
        errors += sum(n for o, n in sale["outcomes"].items() if o.startswith("5"))
    gifts = doc.get("gifts")
    if gifts is not None:
        for q in ("p50", "p95", "p99", "max", "mean"):
            m[f"gifts.ack.{q}"] = _latency(gifts["ack_ms"], q)
        m["gifts.attempts_per_s"] = gifts["attempts"]["per_s"]
        m["gifts.accepted"] = gifts["attempts"]["accepted"]
        m["gifts.invariants"] = 1.0 if gifts.get("invariants", {}).get("ok") else 0.0
        operations += gifts["attempts"]["sent"]
        # Refusals (no credits left, the rate limit) are answers; no answer is an error.
        errors += gifts["attempts"]["sent"] - gifts["attempts"]["answered"]
    if rtc is not None:
        m["webrtc.viewers"] = rtc["watching"]
        for q in ("p50", "p95", "p99", "max", "mean"):
            m[f"webrtc.first_frame.{q}"] = _latency(rtc["first_frame_ms"], q)
        for q in ("p50", "p95", "p99"):
            m[f"webrtc.setup.{q}"] = _latency(rtc["setup_ms"], q)
        m["webrtc.loss"] = rtc["loss"]
        m["webrtc.bitrate_kbps"] = rtc["bitrate_kbps"]
        m["webrtc.fps"] = rtc["fps"]
        operations += rtc["viewers"]
        errors += rtc["viewers"] - rtc["watching"]
    failover = doc.get("failover")
    if failover is not None:
        m["failover.lost"] = failover["lost"]
        m["failover.back"] = failover["back"]
        fraction = failover["back_5s_fraction"]
        m["failover.back_5s"] = 0.0 if fraction is None else fraction  # nobody lost: nothing shown
        for q in ("p50", "p95", "p99", "max", "mean"):
            m[f"failover.recovery.{q}"] = _latency(failover["recovery_ms"], q)
    browser = doc.get("browser")
    if browser is not None:
        m["browser.pages"] = browser["joined"]
        m["browser.playing"] = browser["playing"]
        for q in ("p50", "p95", "p99", "max", "mean"):
            m[f"browser.load.{q}"] = _latency(browser["load_ms"], q)
            m[f"browser.join.{q}"] = _latency(browser["join_ms"], q)
            m[f"browser.chat.delivery.{q}"] = _latency(browser["chat"]["latency_ms"], q)
            if browser["live"]:
                m[f"browser.video.first_frame.{q}"] = _latency(browser["first_frame_ms"], q)
        m["browser.chat.delivered"] = browser["chat"]["delivered"]
        if browser["live"]:
            m["browser.video.fps"] = browser["fps"]
        m["browser.errors"] = sum(browser["errors"].values())
        operations += browser["pages"]
        errors += browser["pages"] - browser["joined"]
    for name, region in doc.get("regions", {}).items():
        prefix = f"region.{name}."
        if "chat" in region:
            m[prefix + "chat.joined"] = region["chat"]["joined"]
            for q in ("p50", "p95", "p99", "max", "mean"):
                m[f"{prefix}chat.delivery.{q}"] = _latency(region["chat"]["delivery_ms"], q)
        if "webrtc" in region:
            m[prefix + "webrtc.viewers"] = region["webrtc"]["watching"]
            for q in ("p50", "p95", "p99", "max", "mean"):
                m[f"{prefix}webrtc.first_frame.{q}"] = _latency(
                    region["webrtc"]["first_frame_ms"], q
                )
        if "browser" in region:
            m[prefix + "browser.pages"] = region["browser"]["joined"]
            for q in ("p50", "p95", "p99", "max", "mean"):
                m[f"{prefix}browser.chat.delivery.{q}"] = _latency(
                    region["browser"]["chat_latency_ms"], q
                )
                if browser is not None and browser["live"]:
                    m[f"{prefix}browser.video.first_frame.{q}"] = _latency(
                        region["browser"]["first_frame_ms"], q
                    )
    cpu = [chat["generator"].get("cpu_pct") if chat else None,
           sale["cpu_pct"]["generator"] if sale and "cpu_pct" in sale else None,
           rtc["generator"]["cpu_pct"] if rtc and "generator" in rtc else None,
           gifts["cpu_pct"]["generator"] if gifts and "cpu_pct" in gifts else None]  # fmt: skip
    if any(c is not None for c in cpu):
        m["generator.cpu_pct"] = round(sum(c for c in cpu if c is not None), 1)
    m["errors.count"] = errors
    m["errors.rate"] = errors / operations if operations else 0.0
    return m
