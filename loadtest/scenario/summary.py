"""The final table of a scenario run: the main metrics, per region, every rule and its verdict."""

from __future__ import annotations

from typing import Any

LATE_GENERATOR_MS = 50.0  # generator loop lag above which measured latencies are its own too

_TABLE_KEYS = (
    "chat.joined", "chat.arrived", "chat.connect.p99", "chat.join.p99", "chat.delivery.p50",
    "chat.delivery.p99", "chat.missing", "likes.sent", "likes.delay.p50", "likes.delay.p99",
    "sale.attempts_per_s", "sale.reservation.p50", "sale.reservation.p99", "sale.reserved",
    "sale.sell_through", "sale.invariants", "gifts.attempts_per_s", "gifts.ack.p50",
    "gifts.ack.p99", "gifts.accepted", "gifts.invariants", "webrtc.viewers",
    "webrtc.first_frame.p99", "webrtc.loss", "webrtc.bitrate_kbps", "webrtc.fps",
    "failover.lost", "failover.back",
    "failover.back_5s", "failover.recovery.p50", "failover.recovery.p95",
    "failover.recovery.max", "browser.pages", "browser.load.p50",
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
    for role in ("sale", "gifts"):
        invariants = doc.get(role, {}).get("invariants")
        if invariants is not None:
            bad = [name for name, c in invariants["checks"].items() if not c["ok"]]
            lines.append(
                f"  {role} invariants: "
                + (
                    "all hold"
                    if not bad
                    else "BREACHED " + "; ".join(f"{n} {invariants['checks'][n]}" for n in bad)
                )
            )
    for kill in doc.get("failover", {}).get("kills", []):
        cpu = kill["origin_cpu_pct"]
        by_second = " ".join(_fmt(c) for c in cpu["by_second"])
        lines.append(
            f"  {kill['kill']} killed at {kill['at_s']:g} s: {kill['lost']} of "
            f"{kill['on_node']} viewers lost it, {kill['back_within_5s']} back within 5 s; "
            f"origin CPU % before/after {_fmt(cpu['3s_before'])}/{_fmt(cpu['5s_after'])}, "
            f"by second from -3 s: {by_second}"
        )
        lines.append("    nodes' CPU % before/after: " + ", ".join(
            f"{node} {_fmt(c['3s_before'])}/{_fmt(c['5s_after'])}"
            for node, c in kill["nodes_cpu_pct"].items()
        ))  # fmt: skip
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
