"""Chat's settings section: `LIVE_CHAT_*`, `LIVE_LIKES_FLUSH_MS`, `LIVE_VIEWER_COUNT_INTERVAL_S`."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from core.config import Section


class ChatSettings(Section):
    model_config = SettingsConfigDict(env_prefix="LIVE_CHAT_")

    max_chars: int = 500
    history_len: int = 1000
    rate_count: int = 20
    rate_window_s: float = 30.0
    likes_flush_ms: int = Field(200, validation_alias="LIVE_LIKES_FLUSH_MS")
    viewer_count_interval_s: float = Field(1.0, validation_alias="LIVE_VIEWER_COUNT_INTERVAL_S")
    # Packets queued for one client before it counts as too slow and is disconnected.
    max_client_queue: int = Field(1000, ge=10)
