"""The Grafana dashboard (docs/grafana/live-node.json) queries only metrics nodes export."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import NodeFactory

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana" / "live-node.json"
# Metric names in PromQL: ours and the process collector's. Label names, functions and
# `$variables` never start with these prefixes.
METRIC = re.compile(r"\b(?:live|process)_[a-zA-Z0-9_]+\b")
SUFFIXES = {"histogram": ("_bucket", "_count", "_sum"), "summary": ("_count", "_sum")}


def queries(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL expression: panel targets (rows included) and template variable queries."""
    found: list[str] = []
    for panel in dashboard["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            found += [t["expr"] for t in inner.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            found.append(query["query"])
    return found


def exported(text: str) -> set[str]:
    """Names a scrape can return: samples, and every family's series (also those with no
    sample yet: a labelled counter before its first increment)."""
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            names.add(name)
            names.update(name + suffix for suffix in SUFFIXES.get(kind, ()))
            if kind == "counter" and not name.endswith("_total"):
                names.add(name + "_total")
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


async def test_every_metric_the_dashboard_queries_is_exported(start_node: NodeFactory) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = queries(dashboard)
    assert len(exprs) >= 20 and all(METRIC.search(e) for e in exprs), "a query names no metric"
    wanted = {name for expr in exprs for name in METRIC.findall(expr)}
    # An origin and an edge: the edge exports the upstream metrics, and only a node with an
    # identity provider the JWKS ones (nothing listens there: keys are fetched only for a token).
    origin = await start_node(
        node_id="origin", role="origin", jwks_url="http://127.0.0.1:9/jwks.json"
    )
    edge = await start_node(node_id="edge-1", role="edge", origin_url=origin.url)
    names: set[str] = set()
    async with aiohttp.ClientSession() as http:
        for node in (origin, edge):
            async with http.get(node.url + "/metrics") as resp:
                assert resp.status == 200
                names |= exported(await resp.text())
    assert sorted(wanted - names) == []
    # Every area of a node has a row.
    rows = {p["title"] for p in dashboard["panels"] if p["type"] == "row"}
    assert rows >= {"Nodes", "Chat", "Commerce", "Media", "Edges", "Safety and limits"}
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    # No two panels share a grid cell (merged additions once landed on the same places).
    taken: dict[tuple[int, int], str] = {}
    for panel in dashboard["panels"]:
        g = panel["gridPos"]
        for cell in itertools.product(
            range(g["x"], g["x"] + g["w"]), range(g["y"], g["y"] + g["h"])
        ):
            assert cell not in taken, f"{panel['title']!r} overlaps {taken[cell]!r}"
            taken[cell] = panel["title"]
