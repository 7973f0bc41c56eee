"""Chat's settings section: `LIVE_CHAT_*`, `LIVE_LIKES_FLUSH_MS`, `LIVE_VIEWER_COUNT_INTERVAL_S`."""

from __future__ import annotations

import re

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from core.config import Section

# A message's or a viewer's language: a BCP 47 tag (language subtag, then subtags).
LANG_PATTERN = r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$"
LANG_MAX_CHARS = 35
# The languages of issue 14's pages: English, Chinese, Spanish, French, German, Japanese,
# Korean, Thai.
DEFAULT_TRANSLATE_LANGS = "en,zh,es,fr,de,ja,ko,th"


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
    # Translation (docs/architecture.md, "Chat across languages"): a LibreTranslate-compatible
    # `POST {url}/translate`; empty: off. `api_key` goes in the request body when set.
    translate_url: str = ""
    translate_api_key: SecretStr | None = None
    # One request's whole time; outgoing requests at once per node, and waiting beyond them
    # (more are dropped and counted); (room, message, language) results kept per node.
    translate_timeout_s: float = Field(2.0, gt=0)
    translate_concurrency: int = Field(4, ge=1, le=256)
    translate_queue: int = Field(200, ge=0)
    translate_cache: int = Field(10000, ge=0)
    # Languages (language subtags, comma-separated) viewers may ask translations into: each one
    # a viewer of a room asks for costs a request per message on their node.
    translate_langs: str = DEFAULT_TRANSLATE_LANGS

    @field_validator("translate_langs")
    @classmethod
    def _check_langs(cls, value: str) -> str:
        langs = [lang.strip().lower() for lang in value.split(",") if lang.strip()]
        for lang in langs:
            if not re.fullmatch(r"[a-z]{2,3}", lang):
                raise ValueError(f"{lang!r} is not a language subtag (comma-separated, e.g. es)")
        return ",".join(langs)

    @property
    def translate_targets(self) -> frozenset[str]:
        return frozenset(self.translate_langs.split(",")) - {""}
