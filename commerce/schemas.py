"""Validated inputs of commerce operations (strict: no coercion, no unknown fields)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

MAX_PRICE_MINOR = 10**12
MAX_QUANTITY = 1_000_000
MAX_PER_USER = 1000

ProductId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class ProductIn(_Strict):
    product_id: ProductId
    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    price_minor: Annotated[int, Field(ge=0, le=MAX_PRICE_MINOR)]
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
    image_url: (
        Annotated[str, StringConstraints(pattern=r"^(https?://|/)[^\s<>\"']{1,2000}$")] | None
    ) = None


class PinIn(_Strict):
    product_id: ProductId


class SaleIn(_Strict):
    product_id: ProductId
    quantity: Annotated[int, Field(ge=1, le=MAX_QUANTITY)]
    price_minor: Annotated[int, Field(ge=0, le=MAX_PRICE_MINOR)]
    duration_s: Annotated[float, Field(ge=1, le=7 * 24 * 3600)]
    per_user_limit: Annotated[int, Field(ge=1, le=MAX_PER_USER)] = 1
    hold_s: Annotated[float, Field(ge=0.1, le=3600)] = 300
    starts_in_s: Annotated[float, Field(ge=0, le=7 * 24 * 3600)] = 0


class ReserveIn(_Strict):
    quantity: Annotated[int, Field(ge=1, le=MAX_PER_USER)] = 1


MAX_CREDIT = 10**9  # credits in one top-up
MAX_BALANCE = 10**12  # credits one wallet may hold
MAX_GIFT_COUNT = 100  # gifts of one kind in one send
GiftId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_-]{1,32}$")]
Text = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)]


class CreditIn(_Strict):
    amount: Annotated[int, Field(ge=1, le=MAX_CREDIT)]
    reason: Text = ""
    reference: Text = ""


class RefundIn(_Strict):
    entry_id: Annotated[str, StringConstraints(pattern=r"^[0-9]{1,20}-[0-9]{1,20}$")]
    reason: Text = ""
    reference: Text = ""


class GiftIn(_Strict):
    gift_id: GiftId
    count: Annotated[int, Field(ge=1, le=MAX_GIFT_COUNT)] = 1


class GiftSpec(_Strict):
    gift_id: GiftId
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40)]
    price: Annotated[int, Field(ge=1, le=MAX_CREDIT)]
    tier: Annotated[int, Field(ge=1, le=3)]
    animation: Annotated[str, StringConstraints(pattern=r"^[a-z0-9_-]{1,32}$")]


class GiftsIn(_Strict):
    gifts: Annotated[list[GiftSpec], Field(min_length=1, max_length=50)]


class GiftSocketIn(GiftIn):
    """Socket.IO `gift {room, gift_id, count, key}`: `key` is the Idempotency-Key."""

    room: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    key: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:-]{8,128}$")]


class BuySocketIn(ReserveIn):
    """Socket.IO `buy {room, sale_id, key, ...}`: `key` is the Idempotency-Key, `sale_id` the
    sale of the route; every other field is the reservation body's (`ReserveIn`, inherited), so
    a field added there is accepted, and passed through (`reservation_fields`), on both paths."""

    room: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    sale_id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    key: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:-]{8,128}$")]

    def reservation_fields(self) -> dict[str, Any]:
        """The body's fields, as the HTTP route passes them to `Commerce.reserve`."""
        return {name: getattr(self, name) for name in _RESERVE_FIELDS}


_RESERVE_FIELDS = tuple(ReserveIn.model_fields)
