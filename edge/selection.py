"""Which node a viewer should use: a healthy node of its region (least loaded), else the nearest
region that has one, else the origin (the nearest; at equal distance the node holding the room's
host, which serves without a hop). Pure functions over registry records. Any node serves any room
(it pulls the room from its source), so the choice is about distance and load only."""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from edge.registry import NodeRecord

REGION = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
MAX_EXCLUDE = 8  # node ids a viewer may ask selection to skip
MAX_EXCLUDE_CHARS = 512
VIEWER_ROLES = frozenset({"edge", "all"})  # nodes that serve the viewers of their region
ORIGIN_ROLES = frozenset({"origin", "all"})  # nodes that hold the room's media source

Reason = Literal["region", "nearest", "origin"]


@dataclass(frozen=True, slots=True)
class Choice:
    node: NodeRecord
    reason: Reason  # how it was chosen

    def to_json(self) -> dict[str, str]:
        n = self.node
        return {"node_id": n.node_id, "region": n.region, "url": n.url, "reason": self.reason}


class RegionDistances:
    """A symmetric distance table; pairs it does not name are unreachable from each other."""

    def __init__(self, table: Mapping[str, Mapping[str, float]]) -> None:
        self._d: dict[tuple[str, str], float] = {}
        self.regions: set[str] = set()
        for a, row in table.items():
            self.regions.add(a)
            for b, d in row.items():
                self.regions.add(b)
                self._d[a, b] = self._d[b, a] = float(d)

    def distance(self, a: str, b: str) -> float:
        return 0.0 if a == b else self._d.get((a, b), math.inf)


def least_loaded(nodes: Iterable[NodeRecord]) -> NodeRecord:
    """Lowest load, then fewest viewers, then id (so equal nodes are picked the same way)."""
    return min(nodes, key=lambda n: (n.load, n.viewers, n.node_id))


def select(
    nodes: Sequence[NodeRecord],
    region: str,
    distances: RegionDistances,
    source: str | None = None,
    exclude: Collection[str] = (),
) -> Choice | None:
    """The node for a viewer in `region`; None when no live node takes viewers. `source`: the id
    of the node holding the room's host, if any; `exclude`: ids the viewer found dead (its node
    went away before the registry's TTL ran out), never chosen."""
    open_nodes = [n for n in nodes if n.accepts_viewers and n.node_id not in exclude]
    edges = [n for n in open_nodes if n.role in VIEWER_ROLES]
    local = [n for n in edges if n.region == region]
    if local:
        return Choice(least_loaded(local), "region")
    reachable = [(distances.distance(region, n.region), n) for n in edges]
    reachable = [(d, n) for d, n in reachable if math.isfinite(d)]
    if reachable:
        nearest = min(d for d, _ in reachable)
        return Choice(least_loaded(n for d, n in reachable if d == nearest), "nearest")
    origins = [n for n in open_nodes if n.role in ORIGIN_ROLES]
    if origins:
        best = min(
            origins,
            key=lambda n: (
                distances.distance(region, n.region),
                n.node_id != source,
                n.load,
                n.node_id,
            ),
        )
        return Choice(best, "origin")
    return None
