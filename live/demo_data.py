"""The demo's room and catalogue, shared by `live demo` and `live cluster`."""

from __future__ import annotations

import contextlib

import redis.asyncio as aioredis

from commerce.catalogue import Catalogue
from commerce.schemas import ProductIn
from core.rooms import RoomExists, RoomStore

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


async def seed(redis: aioredis.Redis, room: str, title: str) -> None:
    """Create the demo room (if missing) and its products, so a host can pin and sell at once."""
    with contextlib.suppress(RoomExists):
        await RoomStore(redis).create(title=title, owner="host", room_id=room)
    catalogue = Catalogue(redis)
    for product in PRODUCTS:
        await catalogue.put(product)
