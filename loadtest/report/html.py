"""A self-contained HTML report of a scenario run: inline SVG charts, no scripts, no CDN.

Its labels come from the pages' catalogues (live/web/locales/LANG.json, section `report`), in
the language `live loadtest run --lang` names, resolved when the report is written."""

from __future__ import annotations

import html
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

LOCALES = Path(__file__).resolve().parents[2] / "live" / "web" / "locales"
LANGUAGES = ("en", "zh", "es", "fr", "de", "ja", "ko", "th")
_HTML_LANG = {"zh": "zh-Hans"}  # <html lang>: the catalogue's Chinese is Simplified
_VARIABLE = re.compile(r"\{\{\s*(\w+)\s*\}\}")


@cache
def _catalogue(lang: str) -> dict[str, str]:
    data = json.loads((LOCALES / f"{lang}.json").read_text(encoding="utf-8"))
    return {f"report.{k}": v for k, v in data["report"].items()}


class Labels:
    """The report's labels in one language (English where a label is missing)."""

    def __init__(self, lang: str = "en") -> None:
        if lang not in LANGUAGES:
            raise ValueError(f"unknown language {lang!r} (one of {', '.join(LANGUAGES)})")
        self.lang = lang
        self.html_lang = _HTML_LANG.get(lang, lang)
        self.texts = {**_catalogue("en"), **_catalogue(lang)}

    def __call__(self, key: str, **args: object) -> str:
        text = self.texts[key]
        return _VARIABLE.sub(lambda m: str(args.get(m.group(1), m.group(0))), text)


_ENGLISH = Labels()

_W, _H, _PAD = 640, 220, 40
_COLOURS = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a")


def line_chart(
    title: str, unit: str, series: dict[str, list[tuple[float, float]]], t: Labels = _ENGLISH
) -> str:
    """An SVG line chart of named (x seconds, y) series with axes and a legend."""
    points = [p for s in series.values() for p in s]
    if not points:
        empty = t("report.noSamples", title=title)
        return f"<figure><figcaption>{html.escape(empty)}</figcaption></figure>"
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


def _connections(chat: dict[str, Any], t: Labels) -> dict[str, list[tuple[float, float]]]:
    """Viewers in the room by second: the ramp before the start, then the run (shifted after)."""
    arrivals = chat.get("arrivals", {})
    ramp = arrivals.get("joined_before_start_per_s", [])
    total, points = 0, []
    for second, n in enumerate(ramp + arrivals.get("joins_per_s", [])):
        total += n
        points.append((float(second), float(total)))
    return {t("report.joinedSeries"): points} if points else {}


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


def _regions(doc: dict[str, Any], t: Labels) -> str:
    """Per region of the map: its nodes and each region metric the run measured."""
    m = doc.get("metrics", {})
    names = list(doc.get("regions", {}))
    keys = sorted({k.split(".", 2)[2] for k in m if k.startswith("region.")})
    rows = [[k] + [_num(m.get(f"region.{r}.{k}")) for r in names] for k in keys]
    rows.insert(0, [t("report.nodes")] + [" ".join(doc["regions"][r]["nodes"]) for r in names])
    return _grid(t("report.perRegion"), [t("report.metric"), *names], rows) if names else ""


def _browser_pages(browser: dict[str, Any] | None, t: Labels) -> str:
    """One row per real browser page, then its errors by kind and a few samples."""
    if not browser:
        return ""
    rows = [[str(p["index"]), p["region"], p["node"] or "-", _num(p["load_ms"]),
             _num(p["join_ms"]), _num(p["first_frame_ms"]), _num(p["fps"]),
             str(p["chat_delivered"])] for p in browser["per_page"]]  # fmt: skip
    head = [t("report.page"), t("report.region"), t("report.node"), t("report.loadMs"),
            t("report.joinMs"), t("report.firstFrameMs"), t("report.fps"),
            t("report.chat")]  # fmt: skip
    errors = ", ".join(f"{k}: {n}" for k, n in browser["errors"].items()) or t("report.none")
    samples = "".join(f"<li>{html.escape(s)}</li>" for s in browser["error_samples"])
    return (
        _grid(t("report.browserPages"), head, rows)
        + f"<p>{html.escape(t('report.pageErrors', errors=errors))}</p>"
        + (f"<ul>{samples}</ul>" if samples else "")
    )


def render(doc: dict[str, Any], lang: str = "en") -> str:
    """The whole page for a scenario document, its labels in `lang` (one of LANGUAGES)."""
    t = Labels(lang)
    charts = []
    if doc.get("chat"):
        chat = doc["chat"]
        charts.append(line_chart(t("report.chatLatency"), "ms",
                                 _percentiles(chat["timeline"]), t))  # fmt: skip
        charts.append(line_chart(t("report.viewersJoined"), t("report.viewers"),
                                 _connections(chat, t), t))  # fmt: skip
    if doc.get("sale"):
        sale = doc["sale"]
        charts.append(line_chart(t("report.reservationLatency"), "ms",
                                 _percentiles(sale["timeline"]), t))  # fmt: skip
        by_second = sale.get("sell_through", {}).get("stock_by_second", [])
        stock = [(0.0, float(sale["quantity"]))] + [
            (float(i + 1), float(left)) for i, left in enumerate(by_second)
        ]
        answers = [(float(e["t"]), float(e["count"])) for e in sale["timeline"]]
        charts.append(line_chart(t("report.stockLeft"), t("report.units"),
                                 {t("report.stock"): stock}, t))  # fmt: skip
        charts.append(line_chart(t("report.answersPerSecond"), "/s",
                                 {t("report.answers"): answers}, t))  # fmt: skip
    if doc.get("webrtc"):
        rtc = doc["webrtc"]
        frames = [(float(t), float(n)) for t, n in enumerate(rtc["frames_per_s"])]
        charts.append(line_chart(t("report.framesPerSecond"), "frames/s",
                                 {t("report.frames"): frames}, t))  # fmt: skip
    browsers = _browser_pages(doc.get("browser"), t)
    regions = _regions(doc, t)
    rows = "".join(
        f'<tr class="{"pass" if r["passed"] else "fail"}"><td>{html.escape(r["rule"])}</td>'
        f"<td>{_num(r['actual'])}</td>"
        f"<td>{html.escape(t('report.pass') if r['passed'] else t('report.fail'))}</td></tr>"
        for r in doc.get("thresholds", [])
    )
    verdict = t("report.passed") if doc.get("passed") else t("report.failed")
    if doc.get("partial"):
        verdict += f" ({t('report.partial', why=doc.get('stopped') or t('report.stoppedEarly'))})"
    summary = _table(t("report.metrics"), [(k, _num(v)) for k, v in doc.get("metrics", {}).items()])
    totals = doc.get("server_metrics", {}).get("totals", {})
    server = _table(t("report.server"), [(k, _num(v)) for k, v in totals.items()])
    raw = html.escape(json.dumps(doc.get("server_metrics", {}), indent=1))
    return f"""<!doctype html>
<html lang="{t.html_lang}"><head><meta charset="utf-8">
<title>{html.escape(t("report.title", name=doc.get("name", "scenario")))}</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: 4px 8px; }}
.pass {{ background: #e8f5e9; }} .fail {{ background: #ffebee; }}
figure {{ margin: 1em 0; }} figcaption {{ font-weight: 600; }}
</style></head><body>
<h1>{html.escape(doc.get("name", "scenario"))}: {html.escape(verdict)}</h1>
<p>{html.escape(doc.get("pinning", ""))}</p>
<h2>{html.escape(t("report.thresholds"))}</h2>
<table><tr><th>{html.escape(t("report.rule"))}</th><th>{html.escape(t("report.measured"))}</th>\
<th>{html.escape(t("report.result"))}</th></tr>{rows}</table>
<h2>{html.escape(t("report.charts"))}</h2>
{"".join(charts)}
{regions}
{browsers}
{summary}
{server}
<details><summary>{html.escape(t("report.everySample"))}</summary><pre>{raw}</pre></details>
</body></html>
"""
