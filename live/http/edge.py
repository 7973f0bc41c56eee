"""HTTP adapter of the edge layer: viewer routing, the node registry's admin calls, and the
upstream that a WHEP viewer's arrival opens to the room's source (the node holding its host) or,
on an edge, to the origin."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from core.auth import require_role
from core.errors import DomainError, unknown_room
from core.store import STORE_ERRORS
from edge.registry import NodeRecord
from edge.selection import MAX_EXCLUDE, MAX_EXCLUDE_CHARS, REGION, RegionDistances, select
from edge.upstream import SourceIsHere, UpstreamManager, UpstreamUnavailable
from live.http.common import Handler, claims_of
from live.http.media import MEDIA, SOURCES
from live.node import NODE, Node

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

DISTANCES = web.AppKey("region_distances", RegionDistances)
UPSTREAMS = web.AppKey("upstreams", UpstreamManager)


def setup(app: web.Application, node: Node) -> None:
    """Add the edge routes and the upstream manager; make shutdown start with draining (no new
    viewers)."""
    s = node.settings
    app[DISTANCES] = RegionDistances(s.edge.region_distances)
    app[RECORDS] = _Registry()
    app.add_routes(routes)
    media = app[MEDIA]
    node.registry.count_viewers = lambda: media.stats().viewers
    node.registry.admitting = lambda: media.admitting
    app.middlewares.append(viewer_admission)
    app.on_response_prepare.append(_allow_cross_origin)
    if s.server.role == "edge" and not s.edge.origin_url:
        raise ValueError("an edge node needs the origin's URL (--origin or LIVE_ORIGIN_URL)")
    node_id = s.server.node_id
    upstreams = app[UPSTREAMS] = UpstreamManager(
        media,
        s.edge,
        app[SOURCES],
        node_id,
        lambda: node.auth.issue(user=node_id, role="node", name=node_id, ttl_s=600),
        fallback_url=s.edge.origin_url if s.server.role == "edge" else None,
    )
    node.metrics.registry.register(UpstreamCollector(upstreams))
    watch: list[asyncio.Task[None]] = []
    stop = asyncio.Event()

    async def start_watch(app: web.Application) -> None:
        watch.append(asyncio.ensure_future(_watch_sources(node, upstreams, stop)))

    app.on_startup.append(start_watch)

    async def stop_watch(app: web.Application) -> None:
        # Not cancelled: a Redis call cut short would leave its connection behind.
        stop.set()
        await asyncio.gather(*watch, return_exceptions=True)

    app.on_cleanup.append(stop_watch)

    async def drain(app: web.Application) -> None:
        await node.registry.drain()
        await upstreams.close()

    # First of the shutdown hooks: selection stops offering this node before its sessions close.
    app.on_shutdown.insert(0, drain)


async def _watch_sources(node: Node, upstreams: UpstreamManager, stop: asyncio.Event) -> None:
    """Keep the nodes' instances (registry `started_at`) and the pulled rooms' sources fresh: a
    source that restarted or moved is pulled again even if the connection has not noticed yet,
    and viewers who joined here before their host published elsewhere get an upstream."""
    while not stop.is_set():
        try:
            await upstreams.refresh(await node.registry.nodes())
        except STORE_ERRORS as exc:
            log.warning("source watch: registry unreadable: %s", exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), node.settings.edge.node_heartbeat_s)


def _cross_origin(request: web.Request) -> bool:
    # A page served by one node plays and asks for edges on another: WHEP and edge selection.
    path = request.path
    return path.startswith("/whep/") or (path.startswith("/api/rooms/") and path.endswith("/edge"))


async def _allow_cross_origin(request: web.Request, response: web.StreamResponse) -> None:
    if _cross_origin(request):
        response.headers["Access-Control-Allow-Origin"] = "*"
        response.headers["Access-Control-Expose-Headers"] = "Location"


@web.middleware
async def viewer_admission(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A draining node takes no new viewer; an edge takes no host (publish to the origin); a WHEP
    viewer of a room whose host publishes on another node (or, on an edge, of a room nobody
    publishes) is answered once this node's upstream of the room is open. Answers CORS
    preflights."""
    if request.method == "OPTIONS" and _cross_origin(request):
        return web.Response(
            status=204,
            headers={
                "Access-Control-Allow-Methods": "GET, POST, DELETE, OPTIONS",
                "Access-Control-Allow-Headers": "Authorization, Content-Type",
                "Access-Control-Max-Age": "600",
            },
        )
    if request.method != "POST" or not request.path.startswith(("/whep/", "/whip/")):
        return await handler(request)
    node = request.app[NODE]
    if request.path.startswith("/whip/"):
        if node.settings.server.role == "edge":
            raise DomainError(
                "not_origin", f"publish to the origin, {node.settings.edge.origin_url}"
            )
        return await handler(request)
    if node.registry.draining:
        raise DomainError("draining", "this node takes no new viewers: ask for an edge again")
    try:
        return await _viewer(request, handler)
    except DomainError as exc:
        if exc.code == "full":
            # Name a node that takes viewers, when the registry knows one (the page may still
            # ask `GET /api/rooms/{room}/edge`).
            with contextlib.suppress(*STORE_ERRORS):
                other = await _alternative(request)
                if other is not None:
                    exc.extra.update(node_id=other.node_id, url=other.url)
        raise


async def _viewer(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A WHEP offer: answered here, or once this node's upstream of the room is open."""
    node = request.app[NODE]
    upstreams = request.app[UPSTREAMS]
    room_id = request.match_info.get("room", "")
    claims = claims_of(request)
    if not claims.in_room(room_id) or not await node.rooms.exists(room_id):
        return await handler(request)  # which refuses with the usual error
    publisher = request.app[MEDIA].publisher(room_id)
    if room_id not in upstreams.upstreams:
        if publisher is not None and not publisher.relay:
            return await handler(request)  # the host publishes here
        try:
            target = await upstreams.target(room_id)
        except SourceIsHere:
            target = None  # the host is being answered here
        if target is None:
            # Or nobody publishes yet: the viewer waits here, and the watch opens the upstream
            # if the host then publishes on another node.
            return await handler(request)
    try:
        async with upstreams.hold(room_id):
            return await handler(request)
    except UpstreamUnavailable as exc:
        if exc.local:
            return await handler(request)
        if exc.status == 404:
            raise unknown_room(room_id, at_origin=True) from None
        raise DomainError("upstream_unavailable", f"cannot pull the room: {exc.detail}") from None


@dataclass
class _Registry:
    """The registry's records as last read for a refusal: read at most once per heartbeat, so a
    storm of refusals on an overloaded node adds one Redis read a second."""

    read_at: float = -math.inf
    nodes: list[NodeRecord] = field(default_factory=list)


RECORDS = web.AppKey("registry_records", _Registry)


async def _alternative(request: web.Request) -> NodeRecord | None:
    """Another node that takes viewers, chosen as selection would for this node's region."""
    node = request.app[NODE]
    cache = request.app[RECORDS]
    now = time.monotonic()
    if now - cache.read_at >= node.settings.edge.node_heartbeat_s:
        cache.read_at = now
        cache.nodes = await node.registry.nodes()
    others = [n for n in cache.nodes if n.node_id != node.settings.server.node_id]
    choice = select(others, node.settings.server.region, request.app[DISTANCES])
    return choice.node if choice is not None else None


class UpstreamCollector(Collector):
    """Reads the upstream manager at scrape time."""

    def __init__(self, upstreams: UpstreamManager) -> None:
        self._upstreams = upstreams

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        u = self._upstreams
        yield GaugeMetricFamily(
            "live_edge_upstreams",
            "Rooms pulled from their source node or the origin (one upstream each)",
            len(u.upstreams),
        )
        yield GaugeMetricFamily(
            "live_edge_upstreams_ready", "Upstreams negotiated with their source", u.ready_count()
        )
        yield CounterMetricFamily(
            "live_edge_upstream_connects", "Upstream connections made to a source", u.connects
        )
        yield CounterMetricFamily(
            "live_edge_upstream_failures", "Upstream attempts that failed", u.failures
        )


@routes.get("/api/rooms/{room}/edge")
async def room_edge(request: web.Request) -> web.Response:
    node = request.app[NODE]
    room_id = request.match_info["room"]
    region = request.query.get("region") or node.settings.server.region
    if not REGION.match(region):
        raise DomainError("invalid_region", "region must be 1-32 of a-z, 0-9 and '-'")
    exclude = excluded(request.query.get("exclude", ""))
    if not await node.rooms.exists(room_id):
        raise unknown_room(room_id)
    distances = request.app[DISTANCES]
    nodes = await node.registry.nodes()
    known = distances.regions | {n.region for n in nodes}
    if region not in known:
        raise DomainError(
            "unknown_region", f"unknown region {region!r}; known: {', '.join(sorted(known))}"
        )
    source = await request.app[SOURCES].get(room_id)
    choice = select(nodes, region, distances, source.node_id if source else None, exclude)
    if choice is None:
        raise DomainError("no_node_available", "no live node takes viewers right now")
    return web.json_response(choice.to_json(), headers={"Cache-Control": "no-store"})


def excluded(raw: str) -> frozenset[str]:
    """`?exclude=ID,ID`: nodes the viewer found dead, bounded in count and length."""
    ids = frozenset(i for i in raw.split(",") if i)
    if len(raw) > MAX_EXCLUDE_CHARS or len(ids) > MAX_EXCLUDE:
        raise DomainError(
            "invalid_exclude",
            f"exclude names at most {MAX_EXCLUDE} node ids in {MAX_EXCLUDE_CHARS} characters",
        )
    return ids


@routes.get("/api/nodes")
async def list_nodes(request: web.Request) -> web.Response:
    nodes = await request.app[NODE].registry.nodes()
    return web.json_response({"nodes": [n.to_json() for n in nodes]})


async def _order_drain(request: web.Request, drain: bool) -> web.Response:
    require_role(claims_of(request), None, "node")
    node_id = request.match_info["node"]
    if not await request.app[NODE].registry.order_drain(node_id, drain):
        raise DomainError("unknown_node", f"no live node {node_id!r}")
    return web.json_response({"node_id": node_id, "draining": drain})


@routes.post("/api/nodes/{node}/drain")
async def drain_node(request: web.Request) -> web.Response:
    return await _order_drain(request, True)


@routes.delete("/api/nodes/{node}/drain")
async def resume_node(request: web.Request) -> web.Response:
    return await _order_drain(request, False)
