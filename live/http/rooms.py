"""REST routes of the kernel: health, metrics and rooms."""

from __future__ import annotations

from typing import Annotated

from aiohttp import web
from pydantic import BaseModel, ConfigDict, StringConstraints

from core.auth import require_role
from core.errors import DomainError, unknown_room
from core.rooms import RoomExists
from live.http.common import METRICS, claims_of, read_json
from live.node import NODE

routes = web.RouteTableDef()


class CreateRoom(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
    room_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")] | None = None
    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    node = request.app[NODE]
    s = node.settings.server
    body = {"status": "ok", "node": s.node_id, "role": s.role, "region": s.region}
    try:
        await node.redis.ping()
    except Exception:
        body["status"] = "degraded"
        return web.json_response({**body, "store": "unreachable"}, status=503)
    return web.json_response(body)


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=request.app[METRICS].render(), content_type="text/plain")


@routes.post("/api/rooms")
async def create_room(request: web.Request) -> web.Response:
    claims = claims_of(request)
    require_role(claims, None, "host")
    body = await read_json(request, CreateRoom)
    if body.room_id is not None and not claims.in_room(body.room_id):
        raise DomainError("forbidden", f"the token does not grant room {body.room_id!r}")
    try:
        room = await request.app[NODE].rooms.create(
            title=body.title, owner=claims.sub, room_id=body.room_id, seller=claims.seller
        )
    except RoomExists:
        raise DomainError("room_exists", f"room {body.room_id!r} already exists") from None
    return web.json_response(room.to_json(), status=201)


@routes.get("/api/rooms/{room}")
async def get_room(request: web.Request) -> web.Response:
    node = request.app[NODE]
    room_id = request.match_info["room"]
    if not await node.rooms.exists(room_id):
        raise unknown_room(room_id)
    return web.json_response(await node.chat.room_state(room_id))
