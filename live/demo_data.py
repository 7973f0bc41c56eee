"""The demo's room and catalogue, shared by `live demo` and `live cluster`."""

from __future__ import annotations

import contextlib
from typing import Any

import redis.asyncio as aioredis

from commerce import Commerce
from commerce.catalogue import Catalogue
from commerce.schemas import CouponIn, ProductIn, SaleIn
from core.auth import user_seller
from core.rooms import RoomExists, RoomStore

# The demo's host (`live demo` and `live cluster` sign its links as user `host`, without a shop):
# the room and the products belong to its seller, so its studio may pin and sell them.
HOST = "host"
SELLER = user_seller(HOST)

PRODUCTS = [
    ProductIn(
        product_id="denim-jacket", title="Washed denim jacket", price_minor=8900, currency="EUR"
    ),
    ProductIn(
        product_id="silk-scarf", title="Printed silk scarf", price_minor=3900, currency="EUR"
    ),
    ProductIn(
        product_id="leather-tote", title="Leather tote bag", price_minor=12900, currency="EUR"
    ),
]

# What a newcomer sees on the first screen: the jacket pinned, its flash sale counting down.
SHOW_PRODUCT = "denim-jacket"
SHOW_SALE = SaleIn(
    product_id=SHOW_PRODUCT,
    quantity=50,
    price_minor=5900,
    duration_s=30 * 60,
    per_user_limit=2,
    hold_s=300,
    starts_in_s=60,
)
# And a coupon pinned beside it: 10 % off for the first 100 viewers who claim it.
SHOW_COUPON = CouponIn(percent_off=10, quota=100, per_user_limit=1, duration_s=30 * 60)
# The demo's viewers (`live demo` signs their links) start with credits to send gifts with, granted
# once (by idempotency key) as the shop's order system would.
VIEWER_CREDITS = {"alice": 500, "bob": 500}


async def seed(redis: aioredis.Redis, room: str, title: str) -> None:
    """Create the demo room (if missing) and its products, so a host can pin and sell at once."""
    with contextlib.suppress(RoomExists):
        await RoomStore(redis).create(title=title, owner=HOST, room_id=room, seller=SELLER)
    catalogue = Catalogue(redis)
    for product in PRODUCTS:
        await catalogue.put(product, SELLER)


async def open_show(commerce: Commerce, room: str) -> dict[str, Any] | None:
    """Pin the show's product and schedule its flash sale, unless the room already has a sale
    scheduled or running (a restarted demo keeps the one it has). Returns the new sale. The
    viewers get their credits once; a coupon is pinned unless one still is."""
    await commerce.pin(room, SHOW_PRODUCT, SELLER)
    for user, amount in VIEWER_CREDITS.items():
        await commerce.credit(
            user, key=f"demo-credits-{user}", amount=amount, reason="demo credits", reference="",
            by="demo", seller="",
        )  # fmt: skip
    if await commerce.coupons.pinned(room) is None:
        coupon = await commerce.create_coupon(room, SHOW_COUPON, HOST)
        await commerce.pin_coupon(room, coupon["coupon_id"])
    if any(sale["status"] != "ended" for sale in await commerce.sales.of_room(room)):
        return None
    return await commerce.start_sale(room, SHOW_SALE, SELLER)
