"""Validated inputs of commerce operations (strict: no coercion, no unknown fields)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

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


CouponId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]{1,32}$")]


class ReserveIn(_Strict):
    quantity: Annotated[int, Field(ge=1, le=MAX_PER_USER)] = 1
    # A coupon the buyer claimed: one of their claims is consumed with the hold.
    coupon_id: CouponId | None = None


MAX_COUPON_QUOTA = 10**6
MAX_COUPON_PRODUCTS = 50
WEEK_S = 7 * 24 * 3600


class CouponIn(_Strict):
    """A coupon: exactly one of `percent_off` or `amount_off_minor` (in the minor units of the
    product's currency)."""

    percent_off: Annotated[int, Field(ge=1, le=100)] | None = None
    amount_off_minor: Annotated[int, Field(ge=1, le=MAX_PRICE_MINOR)] | None = None
    quota: Annotated[int, Field(ge=1, le=MAX_COUPON_QUOTA)]
    per_user_limit: Annotated[int, Field(ge=1, le=MAX_PER_USER)] = 1
    min_spend_minor: Annotated[int, Field(ge=0, le=MAX_PRICE_MINOR)] = 0
    product_ids: Annotated[list[ProductId], Field(max_length=MAX_COUPON_PRODUCTS)] = []
    starts_in_s: Annotated[float, Field(ge=0, le=WEEK_S)] = 0
    duration_s: Annotated[float, Field(ge=1, le=WEEK_S)] = 3600

    @model_validator(mode="after")
    def _one_discount(self) -> CouponIn:
        if (self.percent_off is None) == (self.amount_off_minor is None):
            raise ValueError("give exactly one of percent_off (1..100) or amount_off_minor")
        return self


class CouponPinIn(_Strict):
    coupon_id: CouponId


MAX_CREDIT = 10**9  # credits in one top-up
MAX_BALANCE = 10**12  # credits one wallet may hold
MAX_GIFT_COUNT = 100  # gifts of one kind in one send
MAX_GIFT_MESSAGE_CHARS = 500  # the ceiling of LIVE_GIFTS_MESSAGE_MAX_CHARS
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
    # Cleaned and held to LIVE_GIFTS_MESSAGE_MAX_CHARS by the chat's rules; this only bounds
    # what is read. Empty or absent: no message.
    message: Annotated[str, StringConstraints(max_length=4 * MAX_GIFT_MESSAGE_CHARS)] | None = None


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
