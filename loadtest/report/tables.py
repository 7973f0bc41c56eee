"""The benchmark's outputs: a table for people and a JSON document for tools."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

_COLUMNS: list[tuple[str, int, Callable[[dict[str, Any]], Any]]] = [
    ("run", 18, lambda r: r["label"]),
    ("held", 6, lambda r: r["connections"]["held"]),
    ("deliv/s", 9, lambda r: f"{r['deliveries']['per_s']:.0f}"),
    ("p50 ms", 8, lambda r: r["latency_ms"]["p50"]),
    ("p95 ms", 8, lambda r: r["latency_ms"]["p95"]),
    ("p99 ms", 8, lambda r: r["latency_ms"]["p99"]),
    ("max ms", 8, lambda r: r["latency_ms"]["max"]),
    ("missing", 8, lambda r: r["deliveries"]["missing"]),
    ("acked", 6, lambda r: f"{r['messages']['acked_ok']}/{r['messages']['scheduled']}"),
    ("RSS/conn KB", 11, lambda r: r["servers"]["rss_per_connection_kb"]),
    ("node CPU%", 9, lambda r: r["servers"]["nodes_cpu_pct"]),
    ("valkey%", 7, lambda r: r["servers"]["valkey_cpu_pct"]),
    ("gen CPU%", 8, lambda r: r["generator"]["cpu_pct"]),
    ("conn p50", 8, lambda r: r["connections"]["connect_ms"]["p50"]),
    ("join p50", 8, lambda r: r["connections"]["join_ms"]["p50"]),
    ("target", 6, lambda r: "met" if r["target_met"] else "MISSED"),
]


def table(doc: dict[str, Any]) -> str:
    """Runs as rows, the figures the issue asks for as columns, then Python/Node ratios."""
    lines = [doc["pinning"]["note"], ""]
    lines.append("  ".join(f"{name:>{width}}" for name, width, _ in _COLUMNS))
    for run in doc["runs"]:
        cells = []
        for _, width, get in _COLUMNS:
            value = get(run)
            cells.append(f"{'-' if value is None else value!s:>{width}}")
        lines.append("  ".join(cells))
    for run in doc["runs"]:
        if run["errors"]:
            errors = ", ".join(f"{k}={v}" for k, v in sorted(run["errors"].items()))
            lines.append(f"  {run['label']}: errors {errors}")
        outcomes = {k: v for k, v in run["messages"]["outcomes"].items() if k != "ok"}
        if outcomes:
            lines.append(f"  {run['label']}: send outcomes {outcomes}")
    if doc["ratios"]:
        lines.append("")
        lines.append("Python / Node reference (same workload; >1 means Python is higher):")
        for r in doc["ratios"]:
            lines.append(
                f"  {r['nodes']} node(s), {r['viewers']} viewers: p50 x{r['p50_latency']}, "
                f"p99 x{r['p99_latency']}, deliveries/s x{r['deliveries_per_s']}, "
                f"RSS/conn x{r['rss_per_connection']}, node CPU x{r['nodes_cpu']}"
            )
    lines.append("")
    lines.append(
        "deliv/s counts every receipt of every message by every viewer; missing = acked messages "
        "a joined viewer never got before the drain ended; CPU% is per core, over the send window."
    )
    return "\n".join(lines)


def write_json(doc: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")
