"""HTTP adapter of the edge layer: viewer routing, the node registry's admin calls, and on edge
nodes the upstream that a WHEP viewer's arrival opens to the origin."""

from __future__ import annotations

from aiohttp import web

from edge.selection import REGION, RegionDistances, select
from live.auth import require_role
from live.errors import ApiError
from live.http import claims_of
from live.media_http import MEDIA
from live.node import NODE, Node

routes = web.RouteTableDef()

DISTANCES = web.AppKey("region_distances", RegionDistances)


def setup(app: web.Application, node: Node) -> None:
    """Add the edge routes; make shutdown start with draining (no new viewers)."""
    app[DISTANCES] = RegionDistances(node.settings.region_distances)
    app.add_routes(routes)
    media = app[MEDIA]
    node.registry.count_viewers = lambda: media.stats().viewers

    async def drain(app: web.Application) -> None:
        await node.registry.drain()

    # First of the shutdown hooks: selection stops offering this node before its sessions close.
    app.on_shutdown.insert(0, drain)


@routes.get("/api/rooms/{room}/edge")
async def room_edge(request: web.Request) -> web.Response:
    node = request.app[NODE]
    room_id = request.match_info["room"]
    region = request.query.get("region") or node.settings.region
    if not REGION.match(region):
        raise ApiError(400, "invalid_region", "region must be 1-32 of a-z, 0-9 and '-'")
    if not await node.rooms.exists(room_id):
        raise ApiError(404, "unknown_room", f"there is no room {room_id!r}")
    distances = request.app[DISTANCES]
    nodes = await node.registry.nodes()
    known = distances.regions | {n.region for n in nodes}
    if region not in known:
        raise ApiError(
            400, "unknown_region", f"unknown region {region!r}; known: {', '.join(sorted(known))}"
        )
    choice = select(nodes, region, distances)
    if choice is None:
        error = ApiError(503, "no_node_available", "no live node takes viewers right now")
        error.headers["Retry-After"] = "1"
        raise error
    return web.json_response(choice.to_json(), headers={"Cache-Control": "no-store"})


@routes.get("/api/nodes")
async def list_nodes(request: web.Request) -> web.Response:
    nodes = await request.app[NODE].registry.nodes()
    return web.json_response({"nodes": [n.to_json() for n in nodes]})


async def _order_drain(request: web.Request, drain: bool) -> web.Response:
    require_role(claims_of(request), None, "node")
    node_id = request.match_info["node"]
    if not await request.app[NODE].registry.order_drain(node_id, drain):
        raise ApiError(404, "unknown_node", f"no live node {node_id!r}")
    return web.json_response({"node_id": node_id, "draining": drain})


@routes.post("/api/nodes/{node}/drain")
async def drain_node(request: web.Request) -> web.Response:
    return await _order_drain(request, True)


@routes.delete("/api/nodes/{node}/drain")
async def resume_node(request: web.Request) -> web.Response:
    return await _order_drain(request, False)
