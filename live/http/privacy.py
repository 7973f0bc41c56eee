"""REST adapter of privacy rights: a user's data exported, or erased (docs/privacy.md).

Privacy requests are platform-wide (a user's data spans every shop's rooms): role `privacy`, or
`orders` of the platform's own order system (a token naming no shop). A shop's `orders` token
is refused: it may not read or erase what a user did in other shops' rooms.
"""

from __future__ import annotations

from aiohttp import web

from commerce.keys import USER_ID
from core.auth import Claims, require_role
from core.errors import DomainError
from live.http.common import claims_of
from live.node import NODE

routes = web.RouteTableDef()
PRIVACY_ROLES = ("privacy", "orders")


def _authorised(request: web.Request) -> Claims:
    claims = claims_of(request)
    require_role(claims, None, *PRIVACY_ROLES)
    if claims.shop is not None:
        raise DomainError(
            "forbidden", "privacy requests are platform-wide: a token naming a shop may not"
        )
    return claims


def _user(request: web.Request) -> str:
    user = request.match_info["user"]
    if not USER_ID.match(user):
        raise DomainError("invalid_request", "a user id is 1-128 of [A-Za-z0-9._:@-]")
    return user


@routes.get("/api/privacy/users/{user}/export")
async def export(request: web.Request) -> web.Response:
    claims = _authorised(request)
    return web.json_response(await request.app[NODE].privacy.export(_user(request), claims))


@routes.post("/api/privacy/users/{user}/erase")
async def erase(request: web.Request) -> web.Response:
    claims = _authorised(request)
    return web.json_response(await request.app[NODE].privacy.erase(_user(request), claims))
