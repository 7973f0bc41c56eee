"""Server-side figures: each node's `/metrics` (Prometheus text) before and after a run.

Counters (and histograms' `_count`/`_sum`) are reported as what the run added; gauges as their
value before and after. Buckets and `_created` stamps are left out: they would drown the report.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

MAX_SAMPLES = 400  # per node; a node exports far fewer, this bounds a misbehaving one
TIMEOUT_S = 5.0

Samples = dict[str, tuple[str, float]]  # "name{labels}" -> (kind, value)


def parse(text: str) -> Samples:
    """The samples worth comparing, keyed `name{label="v",...}`, with their family's type."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        kind = family.type
        for sample in family.samples:
            name = sample.name
            if name.endswith(("_bucket", "_created")) or kind in ("info", "stateset"):
                continue
            if kind in ("histogram", "summary") and not name.endswith(("_count", "_sum")):
                continue
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            key = f"{name}{{{labels}}}" if labels else name
            out[key] = ("gauge" if kind == "gauge" else "counter", float(sample.value))
            if len(out) >= MAX_SAMPLES:
                return out
    return out


async def metric(http: aiohttp.ClientSession, node_url: str, name: str) -> float | None:
    """One unlabelled sample of a node's `/metrics`, None if absent."""
    async with http.get(f"{node_url}/metrics") as r:
        text = await r.text()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


async def scrape(urls: list[str]) -> dict[str, Samples | None]:
    """Every node's samples now (None for a node that did not answer)."""
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as http:

        async def one(url: str) -> Samples | None:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError):
                async with http.get(url.rstrip("/") + "/metrics") as resp:
                    if resp.status == 200:
                        return parse(await resp.text())
            return None

        found = await asyncio.gather(*(one(u) for u in urls))
    return dict(zip(urls, found, strict=True))


def compare(before: dict[str, Samples | None], after: dict[str, Samples | None]) -> dict[str, Any]:
    """Per node: counters' increase over the run (non-zero only) and gauges before/after."""
    nodes: dict[str, Any] = {}
    for url, now in after.items():
        then = before.get(url)
        if now is None or then is None:
            nodes[url] = {"scraped": False}
            continue
        counters: dict[str, float] = {}
        gauges: dict[str, dict[str, float]] = {}
        for key, (kind, value) in now.items():
            old = then.get(key, (kind, 0.0))[1]
            if kind == "counter":
                if value != old:
                    counters[key] = round(value - old, 6)
            else:
                gauges[key] = {"before": old, "after": value}
        nodes[url] = {"scraped": True, "counters": counters, "gauges": gauges}
    return {"nodes": nodes, "totals": _totals(nodes)}


def _totals(nodes: dict[str, Any]) -> dict[str, float]:
    """Counter increases summed over the nodes, by metric name (labels added up)."""
    totals: dict[str, float] = {}
    for node in nodes.values():
        for key, value in node.get("counters", {}).items():
            name = key.split("{", 1)[0]
            totals[name] = round(totals.get(name, 0.0) + value, 6)
    return dict(sorted(totals.items()))
