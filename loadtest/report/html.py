"""A self-contained HTML report of a scenario run: inline SVG charts, no scripts, no CDN."""

from __future__ import annotations

import html
import json
from typing import Any

_W, _H, _PAD = 640, 220, 40
_COLOURS = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a")


def line_chart(title: str, unit: str, series: dict[str, list[tuple[float, float]]]) -> str:
    """An SVG line chart of named (x seconds, y) series with axes and a legend."""
    points = [p for s in series.values() for p in s]
    if not points:
        return f"<figure><figcaption>{html.escape(title)}: no samples</figcaption></figure>"
    x_max = max(1.0, max(x for x, _ in points))
    y_max = max(1e-9, max(y for _, y in points)) * 1.1

    def sx(x: float) -> float:
        return _PAD + (x / x_max) * (_W - 2 * _PAD)

    def sy(y: float) -> float:
        return _H - _PAD + 10 - (y / y_max) * (_H - 2 * _PAD)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" role="img" '
        f'aria-label="{html.escape(title)}" class="chart">',
        f'<line x1="{_PAD}" y1="{sy(0):.1f}" x2="{_W - _PAD}" y2="{sy(0):.1f}" stroke="#888"/>',
        f'<line x1="{_PAD}" y1="{sy(0):.1f}" x2="{_PAD}" y2="{sy(y_max):.1f}" stroke="#888"/>',
        f'<text x="{_PAD}" y="12" font-size="11">{y_max / 1.1:.3g} {html.escape(unit)}</text>',
        f'<text x="{_W - _PAD}" y="{_H - 8}" font-size="11" text-anchor="end">{x_max:.0f} s</text>',
    ]
    for i, (name, pts) in enumerate(series.items()):
        colour = _COLOURS[i % len(_COLOURS)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{path}"/>')
        parts.append(
            f'<text x="{_PAD + 10 + i * 90}" y="{_H - 8}" font-size="11" fill="{colour}">'
            f"{html.escape(name)}</text>"
        )
    parts.append("</svg>")
    return f"<figure><figcaption>{html.escape(title)}</figcaption>{''.join(parts)}</figure>"


def _percentiles(timeline: list[dict[str, Any]]) -> dict[str, list[tuple[float, float]]]:
    return {q: [(float(e["t"]), float(e[q])) for e in timeline if e["count"]]
            for q in ("p50", "p95", "p99")}  # fmt: skip


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _connections(chat: dict[str, Any]) -> dict[str, list[tuple[float, float]]]:
    """Viewers in the room by second: the ramp before the start, then the run (shifted after)."""
    arrivals = chat.get("arrivals", {})
    ramp = arrivals.get("joined_before_start_per_s", [])
    total, points = 0, []
    for second, n in enumerate(ramp + arrivals.get("joins_per_s", [])):
        total += n
        points.append((float(second), float(total)))
    return {"joined (ramp, then run)": points} if points else {}


def _table(title: str, rows: list[tuple[str, str]]) -> str:
    if not rows:
        return ""
    cells = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f"<h2>{html.escape(title)}</h2><table>{cells}</table>"


def _grid(title: str, head: list[str], rows: list[list[str]]) -> str:
    if not rows:
        return ""
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                   for row in rows)  # fmt: skip
    return f"<h2>{html.escape(title)}</h2><table><tr>{th}</tr>{body}</table>"


def _regions(doc: dict[str, Any]) -> str:
    """Per region of the map: its nodes and each region metric the run measured."""
    m = doc.get("metrics", {})
    names = list(doc.get("regions", {}))
    keys = sorted({k.split(".", 2)[2] for k in m if k.startswith("region.")})
    rows = [[k] + [_num(m.get(f"region.{r}.{k}")) for r in names] for k in keys]
    rows.insert(0, ["nodes"] + [" ".join(doc["regions"][r]["nodes"]) for r in names])
    return _grid("Per region (ms, counts)", ["metric", *names], rows) if names else ""


def _browser_pages(browser: dict[str, Any] | None) -> str:
    """One row per real browser page, then its errors by kind and a few samples."""
    if not browser:
        return ""
    rows = [[str(p["index"]), p["region"], p["node"] or "-", _num(p["load_ms"]),
             _num(p["join_ms"]), _num(p["first_frame_ms"]), _num(p["fps"]),
             str(p["chat_delivered"])] for p in browser["per_page"]]  # fmt: skip
    head = ["page", "region", "node", "load ms", "join ms", "first frame ms", "fps", "chat"]
    errors = ", ".join(f"{k}: {n}" for k, n in browser["errors"].items()) or "none"
    samples = "".join(f"<li>{html.escape(s)}</li>" for s in browser["error_samples"])
    return (
        _grid("Browser pages (headless Chromium, the viewer page)", head, rows)
        + f"<p>Page errors: {html.escape(errors)}</p>"
        + (f"<ul>{samples}</ul>" if samples else "")
    )


def render(doc: dict[str, Any]) -> str:
    """The whole page for a scenario document."""
    charts = []
    if doc.get("chat"):
        chat = doc["chat"]
        charts.append(line_chart("Chat delivery latency over time", "ms",
                                 _percentiles(chat["timeline"])))  # fmt: skip
        charts.append(line_chart("Viewers joined over time", "viewers", _connections(chat)))
    if doc.get("sale"):
        sale = doc["sale"]
        charts.append(line_chart("Reservation latency over time", "ms",
                                 _percentiles(sale["timeline"])))  # fmt: skip
        by_second = sale.get("sell_through", {}).get("stock_by_second", [])
        stock = [(0.0, float(sale["quantity"]))] + [
            (float(i + 1), float(left)) for i, left in enumerate(by_second)
        ]
        answers = [(float(e["t"]), float(e["count"])) for e in sale["timeline"]]
        charts.append(line_chart("Sale stock left over time", "units", {"stock": stock}))
        charts.append(line_chart("Reservation answers per second", "/s", {"answers": answers}))
    if doc.get("webrtc"):
        rtc = doc["webrtc"]
        frames = [(float(t), float(n)) for t, n in enumerate(rtc["frames_per_s"])]
        charts.append(line_chart("WebRTC video frames received per second", "frames/s",
                                 {"frames": frames}))  # fmt: skip
    browsers = _browser_pages(doc.get("browser"))
    regions = _regions(doc)
    rows = "".join(
        f'<tr class="{"pass" if r["passed"] else "fail"}"><td>{html.escape(r["rule"])}</td>'
        f"<td>{_num(r['actual'])}</td><td>{'pass' if r['passed'] else 'FAIL'}</td></tr>"
        for r in doc.get("thresholds", [])
    )
    verdict = "PASSED" if doc.get("passed") else "FAILED"
    if doc.get("partial"):
        verdict += f" (partial: {doc.get('stopped') or 'stopped early'})"
    summary = _table("Metrics", [(k, _num(v)) for k, v in doc.get("metrics", {}).items()])
    totals = doc.get("server_metrics", {}).get("totals", {})
    server = _table("Server side (/metrics, increase over the run)",
                    [(k, _num(v)) for k, v in totals.items()])  # fmt: skip
    raw = html.escape(json.dumps(doc.get("server_metrics", {}), indent=1))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Load test: {html.escape(doc.get("name", "scenario"))}</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: 4px 8px; }}
.pass {{ background: #e8f5e9; }} .fail {{ background: #ffebee; }}
figure {{ margin: 1em 0; }} figcaption {{ font-weight: 600; }}
</style></head><body>
<h1>{html.escape(doc.get("name", "scenario"))}: {html.escape(verdict)}</h1>
<p>{html.escape(doc.get("pinning", ""))}</p>
<h2>Thresholds</h2>
<table><tr><th>rule</th><th>measured</th><th>result</th></tr>{rows}</table>
<h2>Charts</h2>
{"".join(charts)}
{regions}
{browsers}
{summary}
{server}
<details><summary>Every server sample</summary><pre>{raw}</pre></details>
</body></html>
"""
