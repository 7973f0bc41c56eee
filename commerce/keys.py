"""Redis key names of commerce. Everything of one sale shares the hash tag `{sale:ID}`."""

from __future__ import annotations

import re

from core.store import room_key

PRODUCT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
SALE_ID = re.compile(r"^[a-z0-9]{1,32}$")
# `<sale id>-<random>`: the sale (and so the key slot) is found from the reservation id alone.
RESERVATION_ID = re.compile(r"^([a-z0-9]{1,32})-([a-z0-9]{1,32})$")
# Sales that may still need sweeping (holds left, or start/end not yet announced).
ACTIVE_SALES = "live:commerce:sales"
OUTBOXES = "live:commerce:outboxes"


def product(product_id: str) -> str:
    return f"live:product:{product_id}"


def pinned(room: str) -> str:
    return room_key(room, "pinned_product")


def room_sales(room: str) -> str:
    return room_key(room, "sales")


def sale(sale_id: str, part: str) -> str:
    """`live:{sale:ID}:part`: meta, users, idem, holds, res, outbox, undelivered, rl:u:USER,
    rl:ip:IP."""
    return "live:{sale:" + sale_id + "}:" + part


SALE_PARTS = ("meta", "users", "idem", "holds", "res", "outbox", "undelivered")


def sale_of(reservation_id: str) -> str | None:
    match = RESERVATION_ID.match(reservation_id)
    return match.group(1) if match else None


# Wallets: everything of one user's wallet shares the hash tag `{wallet:USER}`.
USER_ID = re.compile(r"^[A-Za-z0-9._:@-]{1,128}$")
# Users whose wallet may hold pending settlements (zset user -> ms of the last mark).
WALLETS_PENDING = "live:wallet:pending"


def wallet(user: str, part: str) -> str:
    """`live:{wallet:USER}:part`: w (balance, earned, platform), ledger, idem, pending, rl."""
    return "live:{wallet:" + user + "}:" + part


def gifters(room: str, scope: str) -> str:
    """The room's leaderboard: `gifters:all` (all time) or `gifters:show:ID` (one show)."""
    return room_key(room, "gifters:" + scope)


def ranked(room: str, user: str, entry: str) -> str:
    """Marks a gift entry (or refund) counted in the room's leaderboards, for a day."""
    return room_key(room, f"ranked:{user}/{entry}")


def gift_catalogue(seller: str) -> str:
    return "live:gifts:" + seller


# Coupons: a coupon's keys share its room's hash tag `{room:ID}` (see commerce/coupons.py).
COUPON_ID = re.compile(r"^[a-z0-9]{1,32}$")
# Coupons (`ROOM COUPON`) that may still hold claims to watch (pending uses, uses in a hold).
ACTIVE_COUPONS = "live:commerce:coupons"


def room_coupons(room: str) -> str:
    """The room's coupons: zset coupon id -> ends_at (ms)."""
    return room_key(room, "coupons")


def pinned_coupon(room: str) -> str:
    return room_key(room, "pinned_coupon")


def coupon(room: str, coupon_id: str, part: str) -> str:
    """`live:{room:ID}:coupon:CID:part`: meta, claims, users, idem, watch."""
    return room_key(room, "coupon", coupon_id, part)


COUPON_PARTS = ("meta", "claims", "users", "idem", "watch")


def coupon_outbox_member(room: str) -> str:
    """The room's coupon outbox in `OUTBOXES` (sale ids never contain `:`)."""
    return "room:" + room


def outbox(member: str) -> str:
    """The outbox stream of a member of `OUTBOXES`: a sale's, or a room's coupon outbox."""
    if member.startswith("room:"):
        return room_key(member[5:], "coupon_outbox")
    return sale(member, "outbox")
