"""Viewers spread over regions: a region map of nodes with weights, or the deployment's selection.

    [target]
    urls = ["http://127.0.0.1:8080"]       # the origin: room, sale and publisher
    regions = {na = "http://127.0.0.1:8081", eu = "http://127.0.0.1:8082"}
    weights = {na = 3, eu = 1}             # default 1 each
    select = false                         # true: GET {URL}/api/rooms/{room}/edge?region=R

Viewer `i` (chat, WebRTC, browser) and buyer attempt `i` go to slot `i % len(slots)` of a weighted,
interleaved pattern (na, eu, na, na for 3:1), so every driver's existing `targets[i % n]` spreads
by weight unchanged. With `select`, each slot's node is the one the selection API names for its
region, asked once per slot before the run: the registry's load only moves with heartbeats, so
asking per viewer at the same instant would get the same answers. Browsers in select mode open
the region URL with `?region=R` and let the viewer page choose, as a real viewer's page does.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field
from functools import reduce
from typing import Any

import aiohttp

from edge.selection import REGION
from loadtest.plan.safety import UnsafeTarget, check_targets

MAX_WEIGHT = 100
MAX_SLOTS = 200


class RegionError(ValueError):
    """A region map that cannot be used as written."""


@dataclass(frozen=True, slots=True)
class RegionMap:
    urls: dict[str, str]  # region -> node URL (select: the node asked, as a page's own node)
    weights: dict[str, int] = field(default_factory=dict)
    select: bool = False

    @classmethod
    def parse(cls, regions: Any, weights: Any, select: Any) -> RegionMap:
        if not isinstance(regions, dict) or not regions:
            raise RegionError("[target] regions must be a table like {na = URL, eu = URL}")
        if not isinstance(weights, dict):
            raise RegionError("[target] weights must be a table like {na = 3, eu = 1}")
        for name, url in regions.items():
            if not REGION.match(name):
                raise RegionError(f"region {name!r}: use 1-32 of a-z, 0-9 and '-'")
            if not isinstance(url, str):
                raise RegionError(f"region {name!r} needs a node URL")
        unknown = set(weights) - set(regions)
        if unknown:
            raise RegionError(
                f"[target] weights name unknown regions {sorted(unknown)}; "
                f"regions: {sorted(regions)}"
            )
        full: dict[str, int] = {}
        for name in regions:
            weight = weights.get(name, 1)
            if isinstance(weight, bool) or not isinstance(weight, int):
                raise RegionError(f"weight of region {name!r} must be a whole number")
            if not 0 <= weight <= MAX_WEIGHT:
                raise RegionError(f"weight of region {name!r} must be 0..{MAX_WEIGHT}")
            full[name] = weight
        if not any(full.values()):
            raise RegionError("[target] weights: at least one region needs a weight above 0")
        if not isinstance(select, bool):
            raise RegionError("[target] select must be true or false")
        region_map = cls(dict(regions), full, select)
        if len(region_map.pattern()) > MAX_SLOTS:
            raise RegionError(f"[target] weights give more than {MAX_SLOTS} slots; reduce them")
        return region_map

    def pattern(self) -> list[str]:
        """Regions by slot: weights over their gcd, interleaved (smooth weighted round robin)."""
        gcd = reduce(math.gcd, [w for w in self.weights.values() if w])
        weights = {r: w // gcd for r, w in self.weights.items() if w}
        current = dict.fromkeys(weights, 0)
        total = sum(weights.values())
        slots = []
        for _ in range(total):
            for r, w in weights.items():
                current[r] += w
            best = max(current, key=lambda r: current[r])
            current[best] -= total
            slots.append(best)
        return slots

    def describe(self) -> str:
        parts = [f"{r} {self.urls[r]} x{w}" for r, w in self.weights.items()]
        how = "selection API" if self.select else "fixed nodes"
        return f"regions ({how}): " + ", ".join(parts)


@dataclass(frozen=True, slots=True)
class Placement:
    """Where each slot's viewers go: `targets[i % n]` in region `regions[i % n]`."""

    targets: tuple[str, ...]
    regions: tuple[str, ...]
    # Where a browser page opens (select: the region URL with ?region=R, the page chooses).
    page_bases: tuple[str, ...]
    select: bool = False

    def page_url(self, index: int, room: str, token: str) -> str:
        """The viewer page of viewer `index`, as the demo's links give it (token in the hash)."""
        slot = index % len(self.targets)
        query = f"?region={self.regions[slot]}" if self.select else ""
        return f"{self.page_bases[slot].rstrip('/')}/rooms/{room}{query}#token={token}"

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for target, region in zip(self.targets, self.regions, strict=True):
            entry = out.setdefault(region, {"slots": 0, "nodes": []})
            entry["slots"] += 1
            if target not in entry["nodes"]:
                entry["nodes"].append(target)
        return out


def single(urls: list[str]) -> Placement:
    """No region map: viewers round-robin over the target URLs, all in region `-`."""
    return Placement(tuple(urls), ("-",) * len(urls), tuple(urls))


async def place(region_map: RegionMap, room: str, allow_remote: bool) -> Placement:
    """The slots' nodes: the map's URLs, or what each region's selection API names."""
    slots = region_map.pattern()
    if not region_map.select:
        targets = tuple(region_map.urls[r] for r in slots)
        return Placement(targets, tuple(slots), targets)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        chosen = await asyncio.gather(*(_select(http, region_map.urls[r], room, r) for r in slots))
    try:
        check_targets(list(chosen), allow_remote)
    except UnsafeTarget as exc:
        raise RegionError(f"the selection API named a node outside loopback: {exc}") from None
    pages = tuple(region_map.urls[r] for r in slots)
    return Placement(tuple(chosen), tuple(slots), pages, select=True)


async def _select(http: aiohttp.ClientSession, base: str, room: str, region: str) -> str:
    url = f"{base.rstrip('/')}/api/rooms/{room}/edge"
    try:
        async with http.get(url, params={"region": region}) as resp:
            body = await resp.json(content_type=None)
            if resp.status != 200:
                detail = body.get("detail") if isinstance(body, dict) else body
                raise RegionError(f"{url}?region={region}: {resp.status} {detail}")
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise RegionError(f"{url}?region={region}: {exc!r}") from None
    node = body.get("url") if isinstance(body, dict) else None
    if not isinstance(node, str):
        raise RegionError(f"{url}?region={region} named no node URL: {body!r}")
    return node
