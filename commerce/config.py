"""What commerce needs to know, taken from the node's settings (or built directly in tests)."""

from __future__ import annotations

from dataclasses import dataclass

from core.config import Settings


@dataclass(frozen=True, slots=True)
class CommerceConfig:
    node_id: str = "node"
    purchase_stream: str = "live:purchases"
    dead_letter_stream: str = "live:purchases:dead"
    # Cluster mode: scripts append events to a per-sale outbox in the sale's slot; a relay moves
    # them to the purchase stream (at least once, same event ids).
    outbox: bool = False
    sweep_interval_s: float = 0.5
    sweep_batch: int = 200
    stock_event_interval_s: float = 0.25
    notice_interval_s: float = 1.0
    user_rate: int = 20
    ip_rate: int = 2000
    rate_window_s: float = 10.0
    redis_timeout_s: float = 1.0
    retention_s: int = 7 * 24 * 3600
    webhook_url: str | None = None
    webhook_secret: str = ""
    webhook_max_attempts: int = 6
    webhook_backoff_s: float = 0.5
    webhook_backoff_max_s: float = 30.0
    webhook_timeout_s: float = 5.0

    @classmethod
    def from_settings(cls, s: Settings) -> CommerceConfig:
        return cls(
            node_id=s.node_id,
            purchase_stream=s.purchase_stream,
            dead_letter_stream=s.dead_letter_stream,
            outbox=s.redis_cluster if s.commerce_outbox is None else s.commerce_outbox,
            sweep_interval_s=s.commerce_sweep_interval_s,
            stock_event_interval_s=s.commerce_stock_event_interval_s,
            notice_interval_s=s.commerce_notice_interval_s,
            user_rate=s.commerce_user_rate,
            ip_rate=s.commerce_ip_rate,
            rate_window_s=s.commerce_rate_window_s,
            redis_timeout_s=s.commerce_redis_timeout_s,
            retention_s=s.commerce_retention_s,
            webhook_url=s.webhook_url,
            webhook_secret=s.webhook_secret.get_secret_value() if s.webhook_secret else "",
            webhook_max_attempts=s.webhook_max_attempts,
            webhook_backoff_s=s.webhook_backoff_s,
            webhook_backoff_max_s=s.webhook_backoff_max_s,
            webhook_timeout_s=s.webhook_timeout_s,
        )
