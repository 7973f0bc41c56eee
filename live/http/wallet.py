"""REST adapter of wallets and gifts: top-ups and refunds (the order system), the caller's
wallet, the gift catalogue, sending gifts in a room, the room's leaderboard."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from commerce import Commerce
from commerce.keys import USER_ID
from commerce.schemas import CreditIn, GiftIn, GiftsIn, RefundIn
from commerce.wallet import Applied
from core.auth import BUYER_ROLES, require_role
from core.errors import DomainError, unknown_room
from live.http.commerce import idempotency_key
from live.http.common import claims_of, read_json
from live.node import NODE

routes = web.RouteTableDef()
_REPLAYED = {"Idempotent-Replayed": "true"}
WALLET_ENTRIES = 20  # entries GET /api/wallet answers, newest first


def _commerce(request: web.Request) -> Commerce:
    return request.app[NODE].commerce


def _user(user: str) -> str:
    if not USER_ID.match(user):
        raise DomainError("invalid_request", "a user id is 1-128 of [A-Za-z0-9._:@-]")
    return user


def _entry_answer(applied: Applied, **extra: Any) -> web.Response:
    e = applied.entry
    body = {"user_id": e["user_id"], "balance": e["balance"], "entry_id": e["entry_id"],
            "entry": e, "replayed": applied.replayed, **extra}  # fmt: skip
    return web.json_response(body, status=201, headers=_REPLAYED if applied.replayed else None)


@routes.post("/api/rooms/{room}/gifts")
async def send_gift(request: web.Request) -> web.Response:
    room_id = request.match_info["room"]
    claims = claims_of(request)
    require_role(claims, room_id, *BUYER_ROLES)
    key = idempotency_key(request, "one per gift press")
    body = await read_json(request, GiftIn)
    room = await request.app[NODE].rooms.get(room_id)
    if room is None:
        raise unknown_room(room_id)
    if room.owner == claims.sub:
        raise DomainError("invalid_request", "a host does not send gifts to their own room")
    _user(claims.sub)
    sent = await request.app[NODE].send_gift(
        claims, room, key=key, gift_id=body.gift_id, count=body.count, message=body.message
    )
    extra: dict[str, Any] = {"gift": sent.gift, "count": body.count}
    if sent.message is not None:
        extra["message"] = sent.message
    return _entry_answer(sent.applied, **extra)


@routes.get("/api/rooms/{room}/gifts/leaderboard")
async def leaderboard(request: web.Request) -> web.Response:
    room_id = request.match_info["room"]
    room = await request.app[NODE].rooms.get(room_id)
    if room is None:
        raise unknown_room(room_id)
    return web.json_response(await _commerce(request).leaderboard(room_id, room.show))


@routes.post("/api/wallets/{user}/credits")
async def credit(request: web.Request) -> web.Response:
    claims = claims_of(request)
    require_role(claims, None, "orders")
    user = _user(request.match_info["user"])
    key = idempotency_key(request, "one per top-up")
    body = await read_json(request, CreditIn)
    applied = await _commerce(request).credit(
        user, key=key, amount=body.amount, reason=body.reason, reference=body.reference,
        by=claims.sub, seller=claims.shop or "",
    )  # fmt: skip
    return _entry_answer(applied)


@routes.post("/api/wallets/{user}/refunds")
async def refund(request: web.Request) -> web.Response:
    claims = claims_of(request)
    require_role(claims, None, "orders")
    user = _user(request.match_info["user"])
    key = idempotency_key(request, "one per refund")
    body = await read_json(request, RefundIn)
    applied = await _commerce(request).refund(
        user, key=key, entry_id=body.entry_id, reason=body.reason, reference=body.reference,
        by=claims.sub, shop=claims.shop or "",
    )  # fmt: skip
    return _entry_answer(applied)


@routes.get("/api/wallet")
async def wallet(request: web.Request) -> web.Response:
    claims = claims_of(request)
    user = _user(claims.sub)
    return web.json_response(await _commerce(request).wallets.wallet(user, WALLET_ENTRIES))


@routes.get("/api/gifts")
async def gifts(request: web.Request) -> web.Response:
    """The catalogue: of `?room=` (its seller's), of `?shop=`, else the default set."""
    seller = request.query.get("shop")
    room_id = request.query.get("room")
    if room_id is not None:
        room = await request.app[NODE].rooms.get(room_id)
        if room is None:
            raise unknown_room(room_id)
        seller = room.seller
    return web.json_response({"gifts": await _commerce(request).gift_catalogue.of(seller)})


@routes.put("/api/shops/{shop}/gifts")
async def replace_gifts(request: web.Request) -> web.Response:
    claims = claims_of(request)
    require_role(claims, None, "host", "orders")
    shop = request.match_info["shop"]
    if claims.shop != shop:
        raise DomainError("not_owner", f"the token does not act for shop {shop!r}")
    body = await read_json(request, GiftsIn)
    specs = await _commerce(request).gift_catalogue.replace(shop, body.gifts)
    return web.json_response({"gifts": specs})
