"""REST adapter of commerce: products, pins, flash sales, reservations."""

from __future__ import annotations

import re

from aiohttp import web

from commerce import Commerce
from commerce.schemas import CouponIn, CouponPinIn, PinIn, ProductIn, ReserveIn, SaleIn
from core.auth import BUYER_ROLES, Claims, require_role
from core.errors import DomainError, unknown_room
from core.rooms import Room
from live.http.common import claims_of, read_json
from live.node import NODE

routes = web.RouteTableDef()
IDEMPOTENCY_KEY = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")
_REPLAYED = {"Idempotent-Replayed": "true"}


def _commerce(request: web.Request) -> Commerce:
    return request.app[NODE].commerce


async def _sellers_room(request: web.Request, claims: Claims) -> Room:
    """The room, if the caller may sell in it: hosts (and anyone whose token names a shop) act
    for their seller, and a room shows and sells only its own seller's products."""
    room_id = request.match_info["room"]
    room = await request.app[NODE].rooms.get(room_id)
    if room is None:
        raise unknown_room(room_id)
    if not room.staffed_by(claims):
        _commerce(request).refused("host_seller")
        raise DomainError("not_owner", f"room {room_id!r} belongs to another seller")
    return room


def idempotency_key(request: web.Request, what: str) -> str:
    """The request's Idempotency-Key header (`what`: one per what), or a 400 naming the fault."""
    key = request.headers.get("Idempotency-Key")
    if not key:
        raise DomainError("missing_idempotency_key", f"send an Idempotency-Key header ({what})")
    if not IDEMPOTENCY_KEY.match(key):
        raise DomainError(
            "invalid_idempotency_key", "Idempotency-Key must be 8-128 of [A-Za-z0-9._:-]"
        )
    return key


def _moderator(request: web.Request, room: str) -> Claims:
    claims = claims_of(request)
    if not claims.can_moderate(room):
        raise DomainError("forbidden", "this needs role host or moderator in this room")
    return claims


# Registered first of the /api/rooms routes here: aiohttp tries the routes under one prefix in
# registration order, and a flash-sale crowd sends this one thousands of times a second.
@routes.post("/api/rooms/{room}/sales/{sale}/reservations")
async def reserve(request: web.Request) -> web.Response:
    room, sale_id = request.match_info["room"], request.match_info["sale"]
    claims = claims_of(request)
    require_role(claims, room, *BUYER_ROLES)
    key = idempotency_key(request, "one per Buy press")
    body = await read_json(request, ReserveIn)
    result = await _commerce(request).reserve(
        room,
        sale_id,
        user=claims.sub,
        user_name=claims.name,
        idempotency_key=key,
        quantity=body.quantity,
        # A keyed hash: no client address is ever written to the store (docs/privacy.md).
        ip=request.app[NODE].privacy.ip_key(request.remote or "unknown"),
        coupon_id=body.coupon_id,
    )
    # The store's JSON of the reservation, extended in place: no decode and encode again.
    return web.Response(
        body=result.body(),
        status=201,
        content_type="application/json",
        charset="utf-8",
        headers=_REPLAYED if result.replayed else None,
    )


@routes.post("/api/products")
async def put_product(request: web.Request) -> web.Response:
    claims = claims_of(request)
    require_role(claims, None, "host")
    spec = await read_json(request, ProductIn)
    product = await _commerce(request).put_product(spec, claims.seller)
    return web.json_response(product.to_json(), status=201)


@routes.get("/api/products/{product}")
async def get_product(request: web.Request) -> web.Response:
    product = await _commerce(request).catalogue.require(request.match_info["product"])
    return web.json_response(product.to_json())


@routes.post("/api/rooms/{room}/pin")
async def pin(request: web.Request) -> web.Response:
    claims = _moderator(request, request.match_info["room"])
    room = await _sellers_room(request, claims)
    body = await read_json(request, PinIn)
    product = await _commerce(request).pin(room.room_id, body.product_id, room.seller)
    return web.json_response({"room": room.room_id, "product": product.to_json()})


@routes.delete("/api/rooms/{room}/pin")
async def unpin(request: web.Request) -> web.Response:
    claims = _moderator(request, request.match_info["room"])
    room = (await _sellers_room(request, claims)).room_id
    await _commerce(request).unpin(room)
    return web.json_response({"room": room, "product": None})


@routes.post("/api/rooms/{room}/sales")
async def start_sale(request: web.Request) -> web.Response:
    claims = claims_of(request)
    require_role(claims, request.match_info["room"], "host")
    room = await _sellers_room(request, claims)
    spec = await read_json(request, SaleIn)
    sale = await _commerce(request).start_sale(room.room_id, spec, room.seller)
    return web.json_response(sale, status=201)


@routes.get("/api/rooms/{room}/sales/{sale}")
async def get_sale(request: web.Request) -> web.Response:
    sale = await _commerce(request).sales.get(
        request.match_info["room"], request.match_info["sale"]
    )
    return web.json_response(sale)


@routes.post("/api/rooms/{room}/sales/{sale}/end")
async def end_sale(request: web.Request) -> web.Response:
    claims = claims_of(request)
    require_role(claims, request.match_info["room"], "host")
    room = (await _sellers_room(request, claims)).room_id
    sale = await _commerce(request).end_sale(room, request.match_info["sale"])
    return web.json_response(sale)


@routes.get("/api/reservations/{id}")
async def get_reservation(request: web.Request) -> web.Response:
    claims = claims_of(request)
    reservation = await _commerce(request).reservation(request.match_info["id"])
    if claims.role != "orders" and claims.sub != reservation["user_id"]:
        # Someone else's reservation looks exactly like a missing one.
        raise DomainError("unknown_reservation", f"no reservation {request.match_info['id']!r}")
    return web.json_response(reservation)


@routes.post("/api/reservations/{id}/confirm")
async def confirm(request: web.Request) -> web.Response:
    require_role(claims_of(request), None, "orders")
    return web.json_response(await _commerce(request).confirm(request.match_info["id"]))


@routes.post("/api/reservations/{id}/cancel")
async def cancel(request: web.Request) -> web.Response:
    require_role(claims_of(request), None, "orders")
    return web.json_response(await _commerce(request).cancel(request.match_info["id"]))


@routes.post("/api/rooms/{room}/coupons")
async def create_coupon(request: web.Request) -> web.Response:
    claims = claims_of(request)
    require_role(claims, request.match_info["room"], "host")
    room = await _sellers_room(request, claims)
    spec = await read_json(request, CouponIn)
    coupon = await _commerce(request).create_coupon(room.room_id, spec, claims.sub)
    return web.json_response(coupon, status=201)


@routes.get("/api/rooms/{room}/coupons")
async def list_coupons(request: web.Request) -> web.Response:
    room_id = request.match_info["room"]
    if await request.app[NODE].rooms.get(room_id) is None:
        raise unknown_room(room_id)
    coupons = await _commerce(request).coupons.active(room_id)
    return web.json_response({"room": room_id, "coupons": coupons})


@routes.post("/api/rooms/{room}/coupons/{coupon}/claims")
async def claim_coupon(request: web.Request) -> web.Response:
    room = request.match_info["room"]
    claims = claims_of(request)
    require_role(claims, room, *BUYER_ROLES)
    key = idempotency_key(request, "one per Claim press")
    claimed = await _commerce(request).claim_coupon(
        room, request.match_info["coupon"], user=claims.sub, key=key
    )
    return web.json_response(
        claimed.body(), status=201, headers=_REPLAYED if claimed.replayed else None
    )


@routes.post("/api/rooms/{room}/coupon-pin")
async def pin_coupon(request: web.Request) -> web.Response:
    claims = _moderator(request, request.match_info["room"])
    room = (await _sellers_room(request, claims)).room_id
    body = await read_json(request, CouponPinIn)
    coupon = await _commerce(request).pin_coupon(room, body.coupon_id)
    return web.json_response({"room": room, "coupon": coupon})


@routes.delete("/api/rooms/{room}/coupon-pin")
async def unpin_coupon(request: web.Request) -> web.Response:
    claims = _moderator(request, request.match_info["room"])
    room = (await _sellers_room(request, claims)).room_id
    await _commerce(request).unpin_coupon(room)
    return web.json_response({"room": room, "coupon": None})


async def _desk_room(request: web.Request) -> Room:
    """The room, for a host of its seller (with the room in its token) or the `orders` role
    (of the room's seller when its token names a shop)."""
    claims = claims_of(request)
    if claims.role != "orders":
        require_role(claims, request.match_info["room"], "host")
    return await _sellers_room(request, claims)


@routes.get("/api/rooms/{room}/products")
async def room_catalogue(request: web.Request) -> web.Response:
    room = await _desk_room(request)
    products = await _commerce(request).catalogue.of_seller(room.seller)
    return web.json_response({"room": room.room_id, "products": [p.to_json() for p in products]})


@routes.get("/api/rooms/{room}/desk")
async def desk(request: web.Request) -> web.Response:
    room = await _desk_room(request)
    return web.json_response(await _commerce(request).desk.figures(room.room_id))
