"""Products (global by id, each owned by a seller) and the product pinned in each room."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import redis.asyncio as aioredis

from commerce import keys
from commerce.errors import CommerceError
from commerce.schemas import ProductIn
from commerce.scripts import Scripts


@dataclass(frozen=True, slots=True)
class Product:
    product_id: str
    title: str
    price_minor: int
    currency: str
    image_url: str | None = None
    # Who owns it (`Claims.seller` of its creator); None for a product stored before sellers
    # were recorded. Not part of the public product JSON.
    seller: str | None = None

    def to_json(self) -> dict[str, Any]:
        public = asdict(self)
        del public["seller"]
        return public


# The most products `GET /api/rooms/{room}/products` lists.
CATALOGUE_PAGE = 500


def _product(product_id: str, raw: dict[bytes, bytes]) -> Product:
    image, seller = raw.get(b"image_url"), raw.get(b"seller")
    return Product(
        product_id=product_id,
        title=raw[b"title"].decode(),
        price_minor=int(raw[b"price_minor"]),
        currency=raw[b"currency"].decode(),
        image_url=image.decode() if image else None,
        seller=seller.decode() if seller else None,
    )


def not_owner(what: str) -> CommerceError:
    return CommerceError("not_owner", f"{what} belongs to another seller")


class Catalogue:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._put = Scripts(redis).put_product

    async def put(self, spec: ProductIn, seller: str) -> Product:
        """Create or replace a product of `seller`; another seller's product is refused."""
        product = Product(**spec.model_dump(), seller=seller)
        fields = [x for k, v in product.to_json().items() if v is not None for x in (k, str(v))]
        written = await self._put(keys=[keys.product(product.product_id)], args=[seller, *fields])
        if written != 1:
            raise not_owner(f"product {product.product_id!r}")
        # Another slot than the product's: a write that stops here is listed at its next save.
        await self._redis.sadd(keys.seller_products(seller), product.product_id)
        return product

    async def of_seller(self, seller: str) -> list[Product]:
        """The seller's products (those written since the index existed), by title, at most
        `CATALOGUE_PAGE`."""
        ids = sorted(m.decode() for m in await self._redis.smembers(keys.seller_products(seller)))
        async with self._redis.pipeline(transaction=False) as pipe:
            for product_id in ids[:CATALOGUE_PAGE]:
                pipe.hgetall(keys.product(product_id))
            rows: list[dict[bytes, bytes]] = await pipe.execute()
        products = [_product(pid, raw) for pid, raw in zip(ids, rows, strict=False) if raw]
        return sorted(
            (p for p in products if p.seller == seller), key=lambda p: (p.title, p.product_id)
        )

    async def get(self, product_id: str) -> Product | None:
        if not keys.PRODUCT_ID.match(product_id):
            return None
        raw = await self._redis.hgetall(keys.product(product_id))
        return _product(product_id, raw) if raw else None

    async def require(self, product_id: str) -> Product:
        product = await self.get(product_id)
        if product is None:
            raise CommerceError("unknown_product", f"there is no product {product_id!r}")
        return product

    async def require_of(self, product_id: str, seller: str) -> Product:
        """The product, if `seller` owns it (a room only shows and sells its seller's products)."""
        product = await self.require(product_id)
        if product.seller != seller:
            raise not_owner(f"product {product_id!r}")
        return product

    async def pin(self, room: str, product_id: str, seller: str) -> Product:
        product = await self.require_of(product_id, seller)
        await self._redis.set(keys.pinned(room), product_id)
        return product

    async def unpin(self, room: str) -> bool:
        return bool(await self._redis.delete(keys.pinned(room)))

    async def pinned(self, room: str) -> Product | None:
        product_id = await self._redis.get(keys.pinned(room))
        return await self.get(product_id.decode()) if product_id else None
