"""Products (global, by id) and the product pinned in each room."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import redis.asyncio as aioredis

from commerce import keys
from commerce.errors import CommerceError
from commerce.schemas import ProductIn


@dataclass(frozen=True, slots=True)
class Product:
    product_id: str
    title: str
    price_minor: int
    currency: str
    image_url: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Catalogue:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def put(self, spec: ProductIn) -> Product:
        """Create or replace a product."""
        product = Product(**spec.model_dump())
        mapping = {k: str(v) for k, v in product.to_json().items() if v is not None}
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(keys.product(product.product_id))
            pipe.hset(keys.product(product.product_id), mapping=mapping)
            await pipe.execute()
        return product

    async def get(self, product_id: str) -> Product | None:
        if not keys.PRODUCT_ID.match(product_id):
            return None
        raw = await self._redis.hgetall(keys.product(product_id))
        if not raw:
            return None
        image = raw.get(b"image_url")
        return Product(
            product_id=product_id,
            title=raw[b"title"].decode(),
            price_minor=int(raw[b"price_minor"]),
            currency=raw[b"currency"].decode(),
            image_url=image.decode() if image else None,
        )

    async def require(self, product_id: str) -> Product:
        product = await self.get(product_id)
        if product is None:
            raise CommerceError("unknown_product", f"there is no product {product_id!r}")
        return product

    async def pin(self, room: str, product_id: str) -> Product:
        product = await self.require(product_id)
        await self._redis.set(keys.pinned(room), product_id)
        return product

    async def unpin(self, room: str) -> bool:
        return bool(await self._redis.delete(keys.pinned(room)))

    async def pinned(self, room: str) -> Product | None:
        product_id = await self._redis.get(keys.pinned(room))
        return await self.get(product_id.decode()) if product_id else None
