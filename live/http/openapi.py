"""The node's OpenAPI 3.1 document (`GET /api/openapi.json`) and its docs page (`GET /api/docs`).

Request bodies are the very pydantic models `read_json` validates with; responses are the
dataclasses the handlers render (or a schema written here for bodies built as dicts), and each
error status lists the codes (live/http/errors.py STATUS) the operation may answer. One table,
`OPERATIONS`, names every route; tests/live/test_openapi.py fails when the app serves a route that
is neither there nor in `UNDOCUMENTED`.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel, TypeAdapter

from commerce.catalogue import Product
from commerce.schemas import (
    MAX_PER_USER,
    CouponIn,
    CouponPinIn,
    CreditIn,
    GiftIn,
    GiftsIn,
    PinIn,
    ProductIn,
    RefundIn,
    ReserveIn,
    SaleIn,
)
from core.rooms import Room
from edge.registry import NodeRecord
from live.http.common import HTTP_EXCEPTION_CODES
from live.http.errors import STATUS
from live.http.pages import WEB
from live.http.rooms import CreateRoom

JSON = "application/json"
SDP = "application/sdp"
REF = "#/components/schemas/{model}"
ANYONE: tuple[str, ...] = ()
ANY_TOKEN = ("viewer", "host", "moderator", "orders", "node")
BUYERS = ("viewer", "host", "moderator")
MODERATORS = ("host", "moderator")
# What every call with a token may answer, with a JSON body, and touching the store.
TOKEN_ERRORS = ("missing_token", "invalid_token", "token_expired", "forbidden")
BODY_ERRORS = ("invalid_json", "invalid_request", "payload_too_large", "unsupported_media_type")
STORE_ERRORS = ("store_unavailable",)
SDP_ERRORS = ("unsupported_media_type", "invalid_sdp", "payload_too_large", "no_media",
              "unsupported_codec", "closed", "unknown_room")  # fmt: skip

# Routes served but not part of the API: pages, static files, Socket.IO, this document's page.
UNDOCUMENTED: tuple[str, ...] = (
    "GET /",
    "GET /rooms/{room}",
    "GET /rooms/{room}/moderate",
    "GET /rooms/{room}/studio",
    "GET /vendor/{name}",
    "GET /static",
    "GET /api/docs",
    "* /socket.io/",
)


@dataclass(frozen=True)
class Operation:
    """One route: who may call it (`roles`; empty = anyone, no token), what it reads and
    answers, and the error codes it may answer besides those of tokens, bodies and the store."""

    method: str
    path: str
    summary: str
    tag: str
    response: str | None  # a component name, "sdp", "text" or None (empty body)
    status: int = 200
    roles: tuple[str, ...] = ANYONE
    body: type[BaseModel] | None = None
    errors: tuple[str, ...] = ()
    sdp: bool = False  # the body is an SDP offer
    store: bool = True  # reads or writes the shared store
    headers: tuple[dict[str, Any], ...] = ()
    query: tuple[dict[str, Any], ...] = ()
    extra_responses: dict[int, str] = field(default_factory=dict)


IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": True,
    "description": "One per Buy press; a replay answers the same reservation",
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{8,128}$"},
}
CLAIM_KEY = {
    **IDEMPOTENCY_KEY,
    "description": "One per Claim press; a replay answers the same claim",
}
GIFT_KEY = {**IDEMPOTENCY_KEY, "description": "One per operation; a replay answers the same entry"}
GIFTS_ROOM = {
    "name": "room",
    "in": "query",
    "required": False,
    "description": "The catalogue of this room's shop",
    "schema": {"type": "string"},
}
GIFTS_SHOP = {
    "name": "shop",
    "in": "query",
    "required": False,
    "description": "The catalogue of this shop",
    "schema": {"type": "string"},
}
REGION = {
    "name": "region",
    "in": "query",
    "required": False,
    "description": "The viewer's region (default: the asked node's)",
    "schema": {"type": "string"},
}

EXCLUDE = {
    "name": "exclude",
    "in": "query",
    "required": False,
    "description": "Comma-separated ids of nodes never to offer (ones the viewer found dead); "
    "at most 8 ids in 512 characters",
    "schema": {"type": "string", "maxLength": 512},
}

OPERATIONS: tuple[Operation, ...] = (
    Operation("GET", "/healthz", "Liveness and store reachability", "kernel", "Health",
              store=False, extra_responses={503: "Health"}),
    Operation("GET", "/metrics", "Prometheus metrics", "kernel", "text", store=False),
    Operation("GET", "/api/openapi.json", "This document", "kernel", "OpenAPI", store=False),
    Operation("POST", "/api/rooms", "Create a room", "rooms", "Room", 201, ("host",), CreateRoom,
              ("room_exists",)),
    Operation("GET", "/api/rooms/{room}", "A room's state", "rooms", "RoomState",
              errors=("unknown_room",)),
    Operation("POST", "/api/products", "Create or replace a product", "commerce", "Product", 201,
              ("host",), ProductIn, ("not_owner",)),
    Operation("GET", "/api/products/{product}", "A product", "commerce", "Product",
              errors=("unknown_product",)),
    Operation("POST", "/api/rooms/{room}/pin", "Pin a product in a room", "commerce", "Pin",
              roles=MODERATORS, body=PinIn,
              errors=("unknown_room", "unknown_product", "not_owner")),
    Operation("DELETE", "/api/rooms/{room}/pin", "Unpin the room's product", "commerce",
              "Pin", roles=MODERATORS, errors=("unknown_room", "not_owner")),
    Operation("POST", "/api/rooms/{room}/sales", "Start a flash sale", "commerce", "Sale", 201,
              ("host",), SaleIn, ("unknown_room", "unknown_product", "not_owner")),
    Operation("GET", "/api/rooms/{room}/sales/{sale}", "A sale", "commerce", "Sale",
              errors=("unknown_sale",)),
    Operation("POST", "/api/rooms/{room}/sales/{sale}/end", "End a sale now", "commerce", "Sale",
              roles=("host",), errors=("unknown_room", "unknown_sale", "not_owner")),
    Operation("POST", "/api/rooms/{room}/sales/{sale}/reservations", "Reserve (Buy)", "commerce",
              "Reservation", 201, BUYERS, ReserveIn,
              ("missing_idempotency_key", "invalid_idempotency_key", "invalid_quantity",
               "unknown_sale", "sold_out", "insufficient_stock", "limit_reached",
               "sale_not_active", "rate_limited", "unknown_coupon", "coupon_expired",
               "coupon_not_claimed", "coupon_used", "coupon_not_applicable",
               "coupon_min_spend"),
              headers=(IDEMPOTENCY_KEY,)),
    Operation("POST", "/api/rooms/{room}/coupons", "Create a coupon", "commerce", "Coupon", 201,
              ("host",), CouponIn, ("unknown_room", "not_owner", "too_many_coupons")),
    Operation("GET", "/api/rooms/{room}/coupons", "The room's coupons not yet ended",
              "commerce", "Coupons", errors=("unknown_room",)),
    Operation("POST", "/api/rooms/{room}/coupons/{coupon}/claims", "Claim a coupon",
              "commerce", "CouponClaim", 201, BUYERS,
              errors=("missing_idempotency_key", "invalid_idempotency_key", "unknown_coupon",
                      "coupon_not_started", "coupon_expired", "quota_exhausted",
                      "claim_limit"),
              headers=(CLAIM_KEY,)),
    Operation("POST", "/api/rooms/{room}/coupon-pin", "Pin a coupon in a room", "commerce",
              "CouponPin", roles=MODERATORS, body=CouponPinIn,
              errors=("unknown_room", "not_owner", "unknown_coupon", "coupon_expired")),
    Operation("DELETE", "/api/rooms/{room}/coupon-pin", "Unpin the room's coupon", "commerce",
              "CouponPin", roles=MODERATORS, errors=("unknown_room", "not_owner")),
    Operation("GET", "/api/reservations/{id}", "A reservation (its buyer, or orders)",
              "commerce", "Reservation", roles=ANY_TOKEN, errors=("unknown_reservation",)),
    Operation("POST", "/api/reservations/{id}/confirm", "Confirm a held reservation", "commerce",
              "Reservation", roles=("orders",),
              errors=("unknown_reservation", "reservation_expired", "reservation_cancelled")),
    Operation("POST", "/api/reservations/{id}/cancel", "Cancel a held reservation", "commerce",
              "Reservation", roles=("orders",),
              errors=("unknown_reservation", "reservation_expired", "reservation_confirmed")),
    Operation("POST", "/api/rooms/{room}/gifts", "Send gifts to the room's host", "gifts",
              "WalletOperation", 201, BUYERS, GiftIn,
              ("missing_idempotency_key", "invalid_idempotency_key", "unknown_room",
               "unknown_gift", "insufficient_credits", "rate_limited", "too_long",
               "empty_message", "muted", "banned"),
              headers=(GIFT_KEY,)),
    Operation("GET", "/api/rooms/{room}/gifts/leaderboard",
              "The room's top gifters (all time, this show)", "gifts", "Leaderboard",
              errors=("unknown_room",)),
    Operation("GET", "/api/gifts", "The gift catalogue (of a room, of a shop, or the default)",
              "gifts", "Gifts", errors=("unknown_room",), query=(GIFTS_ROOM, GIFTS_SHOP)),
    Operation("PUT", "/api/shops/{shop}/gifts", "Replace a shop's gift catalogue", "gifts",
              "Gifts", roles=("host", "orders"), body=GiftsIn, errors=("not_owner",)),
    Operation("GET", "/api/wallet", "The caller's balance, earnings and last 20 entries",
              "gifts", "Wallet", roles=ANY_TOKEN),
    Operation("POST", "/api/wallets/{user}/credits", "Credit a wallet (a top-up)", "gifts",
              "WalletOperation", 201, ("orders",), CreditIn,
              ("missing_idempotency_key", "invalid_idempotency_key", "balance_limit"),
              headers=(GIFT_KEY,)),
    Operation("POST", "/api/wallets/{user}/refunds", "Refund a ledger entry (a reverse entry)",
              "gifts", "WalletOperation", 201, ("orders",), RefundIn,
              ("missing_idempotency_key", "invalid_idempotency_key", "unknown_entry",
               "already_refunded", "not_refundable", "insufficient_credits", "not_owner"),
              headers=(GIFT_KEY,)),
    Operation("POST", "/whip/{room}", "Publish (WHIP, RFC 9725)", "media", "sdp", 201, ("host",),
              errors=(*SDP_ERRORS, "already_live", "publisher_exists", "not_origin"),
              sdp=True),
    Operation("POST", "/whep/{room}", "Play (WHEP)", "media", "sdp", 201, ANY_TOKEN,
              errors=(*SDP_ERRORS, "full", "too_many_sessions", "draining",
                      "upstream_unavailable"), sdp=True),
    Operation("DELETE", "/whip/{room}/{session}", "End a publishing session (its owner)",
              "media", None, roles=ANY_TOKEN, errors=("session_not_found",), store=False),
    Operation("DELETE", "/whep/{room}/{session}", "End a playing session (its owner)",
              "media", None, roles=ANY_TOKEN, errors=("session_not_found",), store=False),
    Operation("GET", "/api/rooms/{room}/edge", "The node a viewer should use", "edge",
              "EdgeChoice", query=(REGION, EXCLUDE),
              errors=("invalid_region", "invalid_exclude", "unknown_region", "unknown_room",
                      "no_node_available")),
    Operation("GET", "/api/nodes", "Live nodes", "edge", "Nodes"),
    Operation("POST", "/api/nodes/{node}/drain", "Stop giving a node new viewers", "edge",
              "Drain", roles=("node",), errors=("unknown_node",)),
    Operation("DELETE", "/api/nodes/{node}/drain", "Resume a drained node", "edge", "Drain",
              roles=("node",), errors=("unknown_node",)),
)  # fmt: skip


def _obj(required: list[str], **properties: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties}


STRING = {"type": "string"}
NUMBER = {"type": "number"}
INTEGER = {"type": "integer"}
SALE_STATUS = {"enum": ["scheduled", "active", "sold_out", "ended"]}
# Bodies the handlers build as dicts (store snapshots): their fields as docs/protocol.md lists.
DICT_SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": _obj(
        ["error", "detail"],
        error={"type": "string", "description": "a stable code (live/http/errors.py)"},
        detail={"type": "string"},
    ),
    "Health": _obj(
        ["status", "node", "role", "region"],
        status={"enum": ["ok", "degraded"]},
        node=STRING,
        role=STRING,
        region=STRING,
        store=STRING,
    ),
    "RoomState": _obj(
        ["room_id", "title", "live", "viewers"],
        room_id=STRING,
        title=STRING,
        live={"type": "boolean"},
        viewers=INTEGER,
    ),
    "Pin": _obj(
        ["room", "product"],
        room=STRING,
        product={"anyOf": [{"$ref": "#/components/schemas/Product"}, {"type": "null"}]},
    ),
    "Sale": _obj(
        ["sale_id", "room_id", "product_id", "status", "quantity", "stock_left"],
        sale_id=STRING,
        room_id=STRING,
        product_id=STRING,
        status=SALE_STATUS,
        quantity=INTEGER,
        stock_left=INTEGER,
        price_minor=INTEGER,
        currency=STRING,
        per_user_limit={"type": "integer", "maximum": MAX_PER_USER},
        starts_at=NUMBER,
        ends_at=NUMBER,
        server_time=NUMBER,
    ),
    "Reservation": _obj(
        ["reservation_id", "sale_id", "user_id", "quantity", "state"],
        reservation_id=STRING,
        sale_id=STRING,
        room_id=STRING,
        product_id=STRING,
        user_id=STRING,
        quantity=INTEGER,
        price_minor=INTEGER,
        currency=STRING,
        state={"enum": ["held", "confirmed", "cancelled", "expired"]},
        expires_at=NUMBER,
        replayed={"type": "boolean"},
        coupon_id=STRING,
        claim_id=STRING,
        subtotal_minor=INTEGER,
        discount_minor=INTEGER,
        total_minor=INTEGER,
    ),
    "Coupon": _obj(
        ["coupon_id", "room_id", "quota", "remaining", "per_user_limit", "status"],
        coupon_id=STRING,
        room_id=STRING,
        percent_off={"type": ["integer", "null"]},
        amount_off_minor={"type": ["integer", "null"]},
        quota=INTEGER,
        claimed=INTEGER,
        remaining=INTEGER,
        per_user_limit=INTEGER,
        min_spend_minor=INTEGER,
        product_ids={"type": "array", "items": STRING},
        status={"enum": ["scheduled", "active", "ended"]},
        starts_at=NUMBER,
        ends_at=NUMBER,
        created_at=NUMBER,
        server_time=NUMBER,
    ),
    "Coupons": _obj(
        ["room", "coupons"],
        room=STRING,
        coupons={"type": "array", "items": {"$ref": REF.format(model="Coupon")}},
    ),
    "CouponPin": _obj(
        ["room", "coupon"],
        room=STRING,
        coupon={"anyOf": [{"$ref": REF.format(model="Coupon")}, {"type": "null"}]},
    ),
    "CouponClaim": _obj(
        ["claim_id", "coupon_id", "user_id", "state", "remaining", "replayed"],
        claim_id=STRING,
        coupon_id=STRING,
        room_id=STRING,
        user_id=STRING,
        state={"enum": ["claimed", "pending", "used", "redeemed"]},
        reservation_id=STRING,
        claimed_at=NUMBER,
        expires_at=NUMBER,
        remaining=INTEGER,
        replayed={"type": "boolean"},
    ),
    "EdgeChoice": _obj(
        ["node_id", "region", "url", "reason"],
        node_id=STRING,
        region=STRING,
        url=STRING,
        reason={"enum": ["region", "nearest", "origin"]},
    ),
    "Nodes": _obj(["nodes"], nodes={"type": "array", "items": {"$ref": REF.format(model="Node")}}),
    "Drain": _obj(["node_id", "draining"], node_id=STRING, draining={"type": "boolean"}),
    "WalletOperation": _obj(
        ["user_id", "balance", "entry_id", "entry", "replayed"],
        user_id=STRING,
        balance=INTEGER,
        entry_id=STRING,
        entry={"$ref": REF.format(model="WalletEntry")},
        replayed={"type": "boolean"},
        gift={"$ref": REF.format(model="Gift")},
        count=INTEGER,
    ),
    "WalletEntry": _obj(
        ["entry_id", "user_id", "kind", "amount", "balance"],
        entry_id=STRING,
        user_id=STRING,
        kind={"enum": ["credit", "gift", "refund", "earning"]},
        amount={"type": "integer", "description": "signed: credits in, debits out"},
        balance=INTEGER,
        key=STRING,
        ts=NUMBER,
    ),
    "Wallet": _obj(
        ["user_id", "balance", "earned", "platform_share", "entries"],
        user_id=STRING,
        balance=INTEGER,
        earned={"type": "integer", "description": "a host's earnings from gifts"},
        platform_share=INTEGER,
        entries={"type": "array", "items": {"type": "object"}},
    ),
    "Gift": _obj(
        ["gift_id", "name", "price", "tier", "animation"],
        gift_id=STRING,
        name=STRING,
        price=INTEGER,
        tier=INTEGER,
        animation=STRING,
    ),
    "Gifts": _obj(["gifts"], gifts={"type": "array", "items": {"$ref": REF.format(model="Gift")}}),
    "Leaderboard": _obj(
        ["room", "all"],
        room=STRING,
        all={
            "type": "array",
            "items": _obj(["user_id", "credits"], user_id=STRING, credits=INTEGER),
        },
    ),
    "OpenAPI": _obj(["openapi", "paths"], openapi=STRING, paths={"type": "object"}),
}


def error_status(code: str) -> int:
    """The HTTP status `code` leaves with (STATUS, or an aiohttp HTTPException's)."""
    if code in STATUS:
        return STATUS[code].status
    return next(status for status, c in HTTP_EXCEPTION_CODES.items() if c == code)


def _components() -> dict[str, Any]:
    schemas: dict[str, Any] = {}

    def add(name: str, schema: dict[str, Any]) -> None:
        schemas.update(schema.pop("$defs", {}))
        schemas[name] = schema

    for op in OPERATIONS:
        if op.body is not None:
            add(op.body.__name__, op.body.model_json_schema(ref_template=REF))
    for name, kind in (("Room", Room), ("Product", Product), ("Node", NodeRecord)):
        add(name, TypeAdapter(kind).json_schema(ref_template=REF))
    schemas["Node"]["properties"]["load"] = {"type": "number"}  # NodeRecord.to_json adds it
    schemas["Node"]["required"].append("load")
    for name, schema in DICT_SCHEMAS.items():
        add(name, json.loads(json.dumps(schema)))
    return {
        "schemas": schemas,
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
    }


def _content(response: str) -> dict[str, Any]:
    if response == "sdp":
        return {SDP: {"schema": STRING}}
    if response == "text":
        return {"text/plain": {"schema": STRING}}
    return {JSON: {"schema": {"$ref": REF.format(model=response)}}}


def _errors(op: Operation) -> tuple[str, ...]:
    codes = list(op.errors)
    if op.roles:
        codes += TOKEN_ERRORS
    if op.body is not None:
        codes += BODY_ERRORS
    if op.store:
        codes += STORE_ERRORS
    if "{" in op.path:
        codes.append("not_found")  # the router's answer to a segment that matches no route
    return tuple(dict.fromkeys(codes))


def _operation(op: Operation) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
        for name in (part[1:-1] for part in op.path.split("/") if part.startswith("{"))
    ]
    params += [*op.headers, *op.query]
    ok: dict[str, Any] = {"description": op.summary}
    if op.response is not None:
        ok["content"] = _content(op.response)
    if op.response == "sdp":
        ok["headers"] = {"Location": {"schema": STRING, "description": "the session's URL"}}
    responses: dict[str, Any] = {str(op.status): ok}
    for status, name in op.extra_responses.items():
        responses[str(status)] = {"description": name, "content": _content(name)}
    by_status: defaultdict[int, list[str]] = defaultdict(list)
    for code in _errors(op):
        by_status[error_status(code)].append(code)
    by_status[500].append("internal")
    for status, codes in sorted(by_status.items()):
        schema = {
            "allOf": [{"$ref": REF.format(model="Error")}],
            "properties": {"error": {"enum": codes}},
        }
        responses[str(status)] = {
            "description": ", ".join(codes),
            "content": {JSON: {"schema": schema}},
        }
    doc: dict[str, Any] = {
        "summary": op.summary,
        "operationId": f"{op.method.lower()}{op.path}".replace("/", "_").replace("{", "")
        .replace("}", "").replace(".", "_"),
        "tags": [op.tag],
        "parameters": params,
        "responses": responses,
        "x-roles": list(op.roles),
    }  # fmt: skip
    if op.roles:
        doc["security"] = [{"bearer": []}]
        doc["description"] = f"Roles: {', '.join(op.roles)}."
    if op.body is not None:
        doc["requestBody"] = {
            "required": True,
            "content": {JSON: {"schema": {"$ref": REF.format(model=op.body.__name__)}}},
        }
    elif op.sdp:
        doc["requestBody"] = {"required": True, "content": {SDP: {"schema": STRING}}}
    return doc


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of every operation in `OPERATIONS`."""
    paths: defaultdict[str, dict[str, Any]] = defaultdict(dict)
    for op in OPERATIONS:
        paths[op.path][op.method.lower()] = _operation(op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "live-commerce node",
            "version": "1",
            "description": "REST, WHIP and WHEP of one node. Errors are always "
            '`{"error": code, "detail": text}`; docs/protocol.md is the contract.',
        },
        "paths": dict(paths),
        "components": _components(),
    }


# Built once: the models do not change while a node runs.
_DOCUMENT = json.dumps(document(), separators=(",", ":")).encode()


def served(app: web.Application) -> set[str]:
    """`METHOD path` of every route of `app` (HEAD of a GET is aiohttp's own, not a route)."""
    return {
        f"{route.method} {route.resource.canonical}"
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }


def without_operation(app: web.Application) -> set[str]:
    """Routes `app` serves that neither `OPERATIONS` nor `UNDOCUMENTED` names."""
    documented = {f"{op.method} {op.path}" for op in OPERATIONS} | set(UNDOCUMENTED)
    return {r for r in served(app) if r not in documented and f"* {r.split()[1]}" not in documented}


async def openapi_json(request: web.Request) -> web.Response:
    return web.Response(body=_DOCUMENT, content_type=JSON)


async def docs(request: web.Request) -> web.StreamResponse:
    # Our own script only: the page renders the document with no CDN and no inline code.
    csp = (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'"
    )
    return web.FileResponse(
        WEB / "api-docs.html", headers={"Content-Security-Policy": csp, "Cache-Control": "no-cache"}
    )


def setup(app: web.Application) -> None:
    app.router.add_get("/api/openapi.json", openapi_json)
    app.router.add_get("/api/docs", docs)
