"""How a `DomainError` leaves over HTTP: its code's status, and `Retry-After` when it has one.

The one table of codes to statuses (docs/protocol.md is the contract). The body is always
`{"error": code, "detail": detail, **extra}`. `Retry-After` is the error's own `retry_after`
(a wait known only when raised), else the table's fixed one. A code missing here would answer
500 `internal`; tests/live/test_error_codes.py keeps every raised code in the table.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

from aiohttp import web

from core.errors import DomainError

log = logging.getLogger(__name__)


class Http(NamedTuple):
    status: int
    retry_after: int | None = None  # seconds, sent as Retry-After


STATUS: dict[str, Http] = {
    # kernel
    "forbidden": Http(403),
    "internal": Http(500),
    "invalid_token": Http(401),
    "missing_token": Http(401),
    "store_unavailable": Http(503, retry_after=1),
    "token_expired": Http(401),
    "unknown_room": Http(404),
    # HTTP adapters
    "invalid_idempotency_key": Http(400),
    "invalid_json": Http(400),
    "invalid_request": Http(400),
    "missing_idempotency_key": Http(400),
    "not_found": Http(404),
    "not_owner": Http(403),  # another seller's product or room
    "room_exists": Http(409),
    "unsupported_media_type": Http(415),
    # chat
    "invalid_since": Http(400),  # a history position that is no stream id
    # chat's rules for a gift's message (POST /api/rooms/{room}/gifts)
    "banned": Http(403),
    "empty_message": Http(400),
    "muted": Http(403),
    "too_long": Http(400),
    # edge
    "draining": Http(503, retry_after=0),  # ask for an edge again, at once
    "invalid_exclude": Http(400),
    "invalid_region": Http(400),
    "no_node_available": Http(503, retry_after=1),
    "not_origin": Http(409),
    "unknown_node": Http(404),
    "unknown_region": Http(400),
    "upstream_unavailable": Http(502, retry_after=1),
    # commerce
    "insufficient_stock": Http(409),
    "invalid_quantity": Http(400),
    "limit_reached": Http(409),
    "rate_limited": Http(429),  # its Retry-After comes with the error
    "reservation_cancelled": Http(409),
    "reservation_confirmed": Http(409),
    "reservation_expired": Http(409),
    "sale_not_active": Http(409),
    "sold_out": Http(409),
    "unknown_product": Http(404),
    "unknown_reservation": Http(404),
    "unknown_sale": Http(404),
    # coupons
    "claim_limit": Http(409),  # the buyer's claims reached the coupon's per_user_limit
    "coupon_expired": Http(410),  # the coupon's window has ended (ends_at in the body)
    "coupon_min_spend": Http(409),  # the reservation's subtotal is below min_spend_minor
    "coupon_not_applicable": Http(409),  # the sale's product is not among the coupon's
    "coupon_not_claimed": Http(409),  # a reservation names a coupon the buyer never claimed
    "coupon_not_started": Http(409),  # starts_at in the body
    "coupon_used": Http(409),  # every claim of the buyer backs a hold (or was redeemed)
    "quota_exhausted": Http(409),
    "too_many_coupons": Http(409),  # LIVE_COMMERCE_COUPONS_PER_ROOM not yet ended
    "unknown_coupon": Http(404),
    # wallets and gifts
    "already_refunded": Http(409),  # the entry has a refund (in the body)
    "balance_limit": Http(409),
    "insufficient_credits": Http(402),  # the balance in the body
    "not_refundable": Http(409),  # a refund or an earning is not refunded
    "unknown_entry": Http(404),
    "unknown_gift": Http(404),
    # media
    "already_live": Http(409),  # another WHIP session holds the room (its node_id and url)
    "closed": Http(503),
    "full": Http(503, retry_after=2),  # or ask GET /api/rooms/{room}/edge for another node
    "too_many_sessions": Http(429),  # Retry-After: the media connect timeout
    "invalid_sdp": Http(400),
    "no_media": Http(400),
    "publisher_exists": Http(409),
    "session_not_found": Http(404),
    "unsupported_codec": Http(400),
}


def internal() -> DomainError:
    return DomainError("internal", "an internal error occurred")


def mapped(exc: DomainError) -> DomainError:
    """`exc`, or `internal()` when its code has no status (a bug: logged with its traceback)."""
    if exc.code in STATUS:
        return exc
    log.error("no HTTP status for error code %r", exc.code, exc_info=exc)
    return internal()


def error_response(exc: DomainError) -> web.Response:
    """Render a mapped `exc` with its code's status and headers."""
    http = STATUS[exc.code]
    retry_after = exc.retry_after if exc.retry_after is not None else http.retry_after
    headers = None if retry_after is None else {"Retry-After": str(retry_after)}
    return web.json_response(exc.body(), status=http.status, headers=headers)
