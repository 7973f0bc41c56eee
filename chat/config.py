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
    # Connection limits (docs/protocol.md, "Connection and Socket.IO limits").
    # An Engine.IO connection that has not connected to `/live` this long after opening is closed.
    join_timeout_s: float = Field(10.0, gt=0)
    # Largest Engine.IO packet (a WebSocket frame, a polling body) a client may send; a larger
    # one closes its connection.
    max_frame_bytes: int = Field(64 * 1024, ge=1024)
    # Requests (join, leave, chat, like, mod, mod_state, refresh_token) per second and burst,
    # per socket and per user (a user's sockets on one node share one bucket).
    socket_rate: float = Field(10.0, gt=0)
    socket_burst: int = Field(20, ge=1)
    user_rate: float = Field(20.0, gt=0)
    user_burst: int = Field(40, ge=1)
    # Likes (the sum of `count`s) per second per user; a like beyond them is clamped or refused.
    user_likes_per_s: float = Field(20.0, gt=0)
