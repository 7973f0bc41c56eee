"""Commerce's settings section (`LIVE_COMMERCE_*`, `LIVE_WEBHOOK_*`, the stream names)."""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from commerce.schemas import MAX_GIFT_MESSAGE_CHARS
from core.config import Section

PURCHASE_STREAM = "live:purchases"
# An HMAC-SHA256 key of at least 256 bits (as LIVE_JWT_SECRET).
WEBHOOK_SECRET_MIN_BYTES = 32
IMAGE_HOST = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?(:[0-9]{1,5})?$")


class CommerceSettings(Section):
    model_config = SettingsConfigDict(env_prefix="LIVE_COMMERCE_")

    purchase_stream: str = Field(PURCHASE_STREAM, validation_alias="LIVE_PURCHASE_STREAM")
    dead_letter_stream: str = Field(
        "live:purchases:dead", validation_alias="LIVE_DEAD_LETTER_STREAM"
    )
    # Cluster mode: scripts append events to a per-sale outbox in the sale's slot; a relay moves
    # them to the purchase stream (at least once, same event ids). None: only with a Redis
    # cluster (the node's settings decide, live/settings.py).
    outbox: bool | None = None
    sweep_interval_s: float = Field(0.5, gt=0)
    sweep_batch: ClassVar[int] = 200  # not a setting
    stock_event_interval_s: float = Field(0.25, ge=0)
    notice_interval_s: float = Field(1.0, ge=0)
    user_rate: int = Field(20, ge=1)
    ip_rate: int = Field(2000, ge=1)
    rate_window_s: float = Field(10.0, gt=0)
    redis_timeout_s: float = Field(1.0, gt=0)
    retention_s: int = Field(7 * 24 * 3600, ge=60)
    # Holds wait for their `purchase.reserved` to be acknowledged by these consumer groups of the
    # purchase stream (those that exist), at most this long past their expiry (0: never wait).
    delivery_groups: str = "webhooks,orders"
    hold_max_extension_s: float = Field(900.0, ge=0, le=7 * 24 * 3600)
    hold_extension_step_s: ClassVar[float] = 2.0  # not a setting: how far one sweep extends
    # The purchase and dead-letter streams keep entries this long, and never drop one that a
    # consumer group has not acknowledged; trimmed every `trim_interval_s`.
    stream_retention_s: float = Field(7 * 24 * 3600, gt=0)
    trim_interval_s: float = Field(60.0, gt=0)
    # Gifts: the platform's share of each gift in basis points (floored; the host gets the
    # rest), gift operations per user per second, `gift` room events per room per second (per
    # node; what arrives meanwhile is combined).
    gifts_platform_share_bps: int = Field(
        3000, ge=0, le=10_000, validation_alias="LIVE_GIFTS_PLATFORM_SHARE_BPS"
    )
    gifts_user_rate: int = Field(10, ge=1, validation_alias="LIVE_GIFTS_USER_RATE")
    gifts_room_events_per_s: int = Field(
        5, ge=1, le=100, validation_alias="LIVE_GIFTS_ROOM_EVENTS_PER_S"
    )
    gifts_rate_window_s: ClassVar[float] = 1.0  # not a setting
    # A gift's optional message (shown with it and in the chat, under the chat's rules).
    gifts_message_max_chars: int = Field(
        80, ge=1, le=MAX_GIFT_MESSAGE_CHARS, validation_alias="LIVE_GIFTS_MESSAGE_MAX_CHARS"
    )
    # A pending settlement (a gift's host leg, an outboxed event) left by a request that did not
    # finish it is taken over by a sweeper this long after it was written.
    wallet_settle_lease_s: ClassVar[float] = 5.0  # not a setting
    # Coupons: at most this many coupons not yet ended per room; a coupon's quota at most this.
    coupons_per_room: int = Field(20, ge=1, le=1000)
    coupon_max_quota: int = Field(100_000, ge=1, le=1_000_000)
    webhook_url: str | None = Field(None, validation_alias="LIVE_WEBHOOK_URL")
    webhook_secret: SecretStr | None = Field(None, validation_alias="LIVE_WEBHOOK_SECRET")
    webhook_max_attempts: int = Field(6, ge=1, le=20, validation_alias="LIVE_WEBHOOK_MAX_ATTEMPTS")
    webhook_backoff_s: float = Field(0.5, gt=0, validation_alias="LIVE_WEBHOOK_BACKOFF_S")
    webhook_backoff_max_s: float = Field(30.0, gt=0, validation_alias="LIVE_WEBHOOK_BACKOFF_MAX_S")
    webhook_timeout_s: float = Field(5.0, gt=0, validation_alias="LIVE_WEBHOOK_TIMEOUT_S")

    @model_validator(mode="after")
    def _webhooks_signed(self) -> Self:
        # Unsigned (or weakly keyed) webhooks would let anyone who can reach the receiver
        # confirm orders: a node with a webhook URL and no real secret does not start.
        secret = self.webhook_secret.get_secret_value() if self.webhook_secret else ""
        if self.webhook_url and len(secret.encode()) < WEBHOOK_SECRET_MIN_BYTES:
            raise ValueError(
                f"LIVE_WEBHOOK_URL needs LIVE_WEBHOOK_SECRET of at least "
                f"{WEBHOOK_SECRET_MIN_BYTES} bytes (receivers verify the signature with it)"
            )
        return self

    @property
    def delivery_group_names(self) -> tuple[str, ...]:
        return tuple(g.strip() for g in self.delivery_groups.split(",") if g.strip())

    # Hosts (`host` or `host:port`) whose https images products may show; empty: only images
    # the node serves itself (a path like /static/x.png). A foreign image URL would let anyone
    # who writes a product track every viewer of the room.
    image_hosts: Annotated[tuple[str, ...], NoDecode] = Field(
        (), validation_alias="LIVE_IMAGE_HOSTS"
    )

    @field_validator("image_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [h for h in value.split(",") if h.strip()]
        if isinstance(value, (list, tuple)):
            hosts = tuple(str(h).strip().lower() for h in value)
            for host in hosts:
                if not IMAGE_HOST.match(host):
                    raise ValueError(f"{host!r} is not a host name (comma-separated hosts)")
            return hosts
        return value
