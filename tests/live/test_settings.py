"""Settings: every `LIVE_*` variable lands in its section, flags beat the environment, and the
media-workers default is decided once."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from live.cli.main import parser
from live.cli.options import settings_from
from live.settings import Settings

SECRET = "s" * 40
# Every variable a flat Settings read before the sections: (variable, value, section, field,
# what the field then holds). None of the values is a default.
ENVIRONMENT: list[tuple[str, str, str, str, Any]] = [
    ("LIVE_HOST", "0.0.0.0", "server", "host", "0.0.0.0"),
    ("LIVE_PORT", "9123", "server", "port", 9123),
    ("LIVE_LISTEN_BACKLOG", "77", "server", "listen_backlog", 77),
    ("LIVE_ROLE", "edge", "server", "role", "edge"),
    ("LIVE_REGION", "eu", "server", "region", "eu"),
    ("LIVE_NODE_ID", "n-7", "server", "node_id", "n-7"),
    ("LIVE_PUBLIC_URL", "http://pub:1", "server", "public_url", "http://pub:1"),
    ("LIVE_DRAIN_S", "7.5", "server", "drain_s", 7.5),
    ("LIVE_KEEPALIVE_TIMEOUT_S", "3.5", "server", "keepalive_timeout_s", 3.5),
    ("LIVE_HEADER_TIMEOUT_S", "2.5", "server", "header_timeout_s", 2.5),
    ("LIVE_MAX_CONNECTIONS_PER_IP", "9", "server", "max_connections_per_ip", 9),
    (
        "LIVE_FRAME_ANCESTORS",
        "https://shop.example",
        "server",
        "frame_ancestors",
        "https://shop.example",
    ),
    ("LIVE_REDIS_URL", "redis://r:1", "store", "redis_url", "redis://r:1"),
    ("LIVE_REDIS_CLUSTER", "1", "store", "redis_cluster", True),
    ("LIVE_DATA_DIR", "/tmp/d", "store", "data_dir", Path("/tmp/d")),
    ("LIVE_JWT_SECRET", SECRET, "auth", "jwt_secret", SecretStr(SECRET)),
    ("LIVE_JWT_PUBLIC_KEY", "PEM", "auth", "jwt_public_key", "PEM"),
    ("LIVE_TOKEN_MAX_TTL_S", "3600", "auth", "token_max_ttl_s", 3600),
    ("LIVE_JWKS_URL", "http://idp/jwks", "auth", "jwks_url", "http://idp/jwks"),
    ("LIVE_JWT_ISSUER", "http://idp", "auth", "jwt_issuer", "http://idp"),
    ("LIVE_JWT_AUDIENCE", "live", "auth", "jwt_audience", "live"),
    ("LIVE_JWT_ROLE_CLAIM", "live_role", "auth", "jwt_role_claim", "live_role"),
    ("LIVE_JWT_ROOMS_CLAIM", "live_rooms", "auth", "jwt_rooms_claim", "live_rooms"),
    ("LIVE_JWT_SHOP_CLAIM", "org", "auth", "jwt_shop_claim", "org"),
    ("LIVE_JWKS_REFRESH_MIN_S", "5", "auth", "jwks_refresh_min_s", 5.0),
    ("LIVE_LOG_LEVEL", "DEBUG", "log", "level", "DEBUG"),
    ("LIVE_LOG_JSON", "false", "log", "json_lines", False),
    ("LIVE_CHAT_MAX_CHARS", "11", "chat", "max_chars", 11),
    ("LIVE_CHAT_HISTORY_LEN", "12", "chat", "history_len", 12),
    ("LIVE_CHAT_RATE_COUNT", "13", "chat", "rate_count", 13),
    ("LIVE_CHAT_RATE_WINDOW_S", "14.5", "chat", "rate_window_s", 14.5),
    ("LIVE_LIKES_FLUSH_MS", "15", "chat", "likes_flush_ms", 15),
    ("LIVE_VIEWER_COUNT_INTERVAL_S", "1.5", "chat", "viewer_count_interval_s", 1.5),
    ("LIVE_CHAT_MAX_CLIENT_QUEUE", "16", "chat", "max_client_queue", 16),
    ("LIVE_CHAT_JOIN_TIMEOUT_S", "2.5", "chat", "join_timeout_s", 2.5),
    ("LIVE_CHAT_MAX_FRAME_BYTES", "4096", "chat", "max_frame_bytes", 4096),
    ("LIVE_CHAT_SOCKET_RATE", "3.5", "chat", "socket_rate", 3.5),
    ("LIVE_CHAT_SOCKET_BURST", "7", "chat", "socket_burst", 7),
    ("LIVE_CHAT_USER_RATE", "4.5", "chat", "user_rate", 4.5),
    ("LIVE_CHAT_USER_BURST", "9", "chat", "user_burst", 9),
    ("LIVE_CHAT_USER_LIKES_PER_S", "5.5", "chat", "user_likes_per_s", 5.5),
    ("LIVE_CHAT_TRANSLATE_URL", "http://t:1", "chat", "translate_url", "http://t:1"),
    ("LIVE_CHAT_TRANSLATE_API_KEY", "k", "chat", "translate_api_key", SecretStr("k")),
    ("LIVE_CHAT_TRANSLATE_TIMEOUT_S", "3.5", "chat", "translate_timeout_s", 3.5),
    ("LIVE_CHAT_TRANSLATE_CONCURRENCY", "6", "chat", "translate_concurrency", 6),
    ("LIVE_CHAT_TRANSLATE_QUEUE", "7", "chat", "translate_queue", 7),
    ("LIVE_CHAT_TRANSLATE_CACHE", "8", "chat", "translate_cache", 8),
    ("LIVE_CHAT_TRANSLATE_LANGS", "ES, pt", "chat", "translate_langs", "es,pt"),
    ("LIVE_ICE_ADDRESSES", '["10.0.0.1"]', "media", "ice_addresses", ["10.0.0.1"]),
    ("LIVE_MEDIA_WORKERS", "3", "media", "workers", 3),
    ("LIVE_MEDIA_MAX_VIEWERS", "17", "media", "max_viewers", 17),
    ("LIVE_MEDIA_ADMISSION", "count", "media", "admission", "count"),
    ("LIVE_MEDIA_ADMIT_MAX_LAG_MS", "75", "media", "admit_max_lag_ms", 75.0),
    ("LIVE_MEDIA_ADMIT_MAX_CPU", "0.7", "media", "admit_max_cpu", 0.7),
    ("LIVE_MEDIA_ADMIT_MAX_SETUPS", "4", "media", "admit_max_setups", 4),
    ("LIVE_WHEP_SESSIONS_PER_USER", "5", "media", "sessions_per_user", 5),
    ("LIVE_MEDIA_CONNECT_TIMEOUT_S", "4.5", "media", "connect_timeout_s", 4.5),
    ("LIVE_MEDIA_SDP_MAX_BYTES", "2048", "media", "sdp_max_bytes", 2048),
    ("LIVE_MEDIA_SDP_MAX_MEDIA", "3", "media", "sdp_max_media", 3),
    ("LIVE_ORIGIN_URL", "http://o:1", "edge", "origin_url", "http://o:1"),
    ("LIVE_NODE_HEARTBEAT_S", "0.3", "edge", "node_heartbeat_s", 0.3),
    ("LIVE_NODE_TTL_S", "4.5", "edge", "node_ttl_s", 4.5),
    ("LIVE_NODE_CAPACITY", "18", "edge", "node_capacity", 18),
    ("LIVE_REGION_DISTANCES", '{"a": {"b": 1}}', "edge", "region_distances", {"a": {"b": 1.0}}),
    ("LIVE_EDGE_UPSTREAM_GRACE_S", "19.5", "edge", "upstream_grace_s", 19.5),
    ("LIVE_EDGE_UPSTREAM_TIMEOUT_S", "6.5", "edge", "upstream_timeout_s", 6.5),
    ("LIVE_EDGE_UPSTREAM_RETRIES", "21", "edge", "upstream_retries", 21),
    ("LIVE_PURCHASE_STREAM", "p", "commerce", "purchase_stream", "p"),
    ("LIVE_DEAD_LETTER_STREAM", "d", "commerce", "dead_letter_stream", "d"),
    ("LIVE_COMMERCE_SWEEP_INTERVAL_S", "0.75", "commerce", "sweep_interval_s", 0.75),
    ("LIVE_COMMERCE_STOCK_EVENT_INTERVAL_S", "0.5", "commerce", "stock_event_interval_s", 0.5),
    ("LIVE_COMMERCE_NOTICE_INTERVAL_S", "2.5", "commerce", "notice_interval_s", 2.5),
    ("LIVE_COMMERCE_USER_RATE", "22", "commerce", "user_rate", 22),
    ("LIVE_COMMERCE_IP_RATE", "23", "commerce", "ip_rate", 23),
    ("LIVE_COMMERCE_RATE_WINDOW_S", "24.5", "commerce", "rate_window_s", 24.5),
    ("LIVE_COMMERCE_REDIS_TIMEOUT_S", "2.5", "commerce", "redis_timeout_s", 2.5),
    ("LIVE_COMMERCE_RETENTION_S", "3600", "commerce", "retention_s", 3600),
    ("LIVE_COMMERCE_OUTBOX", "false", "commerce", "outbox", False),
    ("LIVE_VALKEY_APPENDFSYNC", "everysec", "store", "valkey_appendfsync", "everysec"),
    ("LIVE_COMMERCE_DELIVERY_GROUPS", "orders", "commerce", "delivery_groups", "orders"),
    ("LIVE_COMMERCE_HOLD_MAX_EXTENSION_S", "120", "commerce", "hold_max_extension_s", 120),
    ("LIVE_COMMERCE_COUPONS_PER_ROOM", "7", "commerce", "coupons_per_room", 7),
    ("LIVE_COMMERCE_COUPON_MAX_QUOTA", "500", "commerce", "coupon_max_quota", 500),
    ("LIVE_COMMERCE_STREAM_RETENTION_S", "86400", "commerce", "stream_retention_s", 86400),
    ("LIVE_COMMERCE_TRIM_INTERVAL_S", "30", "commerce", "trim_interval_s", 30),
    ("LIVE_GIFTS_PLATFORM_SHARE_BPS", "2500", "commerce", "gifts_platform_share_bps", 2500),
    ("LIVE_GIFTS_USER_RATE", "7", "commerce", "gifts_user_rate", 7),
    ("LIVE_GIFTS_ROOM_EVENTS_PER_S", "8", "commerce", "gifts_room_events_per_s", 8),
    ("LIVE_GIFTS_MESSAGE_MAX_CHARS", "40", "commerce", "gifts_message_max_chars", 40),
    ("LIVE_WEBHOOK_URL", "http://w:1", "commerce", "webhook_url", "http://w:1"),
    ("LIVE_WEBHOOK_SECRET", "w" * 32, "commerce", "webhook_secret", SecretStr("w" * 32)),
    ("LIVE_WEBHOOK_MAX_ATTEMPTS", "9", "commerce", "webhook_max_attempts", 9),
    ("LIVE_WEBHOOK_BACKOFF_S", "0.25", "commerce", "webhook_backoff_s", 0.25),
    ("LIVE_WEBHOOK_BACKOFF_MAX_S", "31.5", "commerce", "webhook_backoff_max_s", 31.5),
    ("LIVE_WEBHOOK_TIMEOUT_S", "5.5", "commerce", "webhook_timeout_s", 5.5),
    (
        "LIVE_IMAGE_HOSTS",
        "a.example, B.example:8443",
        "commerce",
        "image_hosts",
        ("a.example", "b.example:8443"),
    ),
]


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name, *_ in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    for name in ("REDIS_URL", "JWT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env


def _value(settings: Settings, section: str, field: str) -> Any:
    value = getattr(getattr(settings, section), field)
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def test_every_variable_lands_in_its_section(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, text, *_ in ENVIRONMENT:
        monkeypatch.setenv(name, text)
    settings = Settings()
    defaults = Settings.model_construct(
        **{name: section.model_construct() for name, section in Settings.SECTIONS.items()}
    )
    for name, _, section, field, expected in ENVIRONMENT:
        if isinstance(expected, SecretStr):
            expected = expected.get_secret_value()
        assert _value(settings, section, field) == expected, name
        assert _value(defaults, section, field) != expected, f"{name}: pick a non-default value"
    # The table is the whole contract: every field of every section is in it.
    fields = {(section, field) for section, field in Settings.flat_names().values()}
    assert fields == {(section, field) for _, _, section, field, _ in ENVIRONMENT}


def test_aliases_and_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://plain:1")
    monkeypatch.setenv("JWT_SECRET", SECRET)
    (tmp_path / ".env").write_text("LIVE_CHAT_MAX_CHARS=42\nLIVE_COMMERCE_USER_RATE=43\n")
    settings = Settings()
    assert settings.store.redis_url == "redis://plain:1"
    assert settings.auth.jwt_secret.get_secret_value() == SECRET
    assert settings.chat.max_chars == 42
    assert settings.commerce.user_rate == 43


def test_messages_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIVE_JWT_SECRET", "short")
    with pytest.raises(ValidationError, match="LIVE_JWT_SECRET must be at least 32 bytes"):
        Settings()
    monkeypatch.delenv("LIVE_JWT_SECRET")
    monkeypatch.setenv("LIVE_MEDIA_WORKERS", "300")
    with pytest.raises(ValidationError, match="LIVE_MEDIA_WORKERS must be 0-256 or auto"):
        Settings()


def _args(*argv: str) -> argparse.Namespace:
    return parser().parse_args(["serve", *argv])


def test_flags_beat_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIVE_PORT", "9000")
    monkeypatch.setenv("LIVE_REGION", "eu")
    monkeypatch.setenv("LIVE_MEDIA_WORKERS", "3")
    monkeypatch.setenv("LIVE_CHAT_MAX_CHARS", "42")
    settings = settings_from(
        _args("--port", "9001", "--media-workers", "2", "--origin", "http://o")
    )
    assert settings.server.port == 9001
    assert settings.media.workers == 2
    assert settings.edge.origin_url == "http://o"
    assert settings.server.region == "eu"  # no flag: the environment's
    assert settings.chat.max_chars == 42
    assert settings_from(_args(), region="sea").server.region == "sea"  # overrides beat both


def test_media_workers_default_is_auto_only_for_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().media.workers == 0
    assert settings_from(_args()).media.workers == "auto"
    monkeypatch.setenv("LIVE_MEDIA_WORKERS", "0")
    assert settings_from(_args()).media.workers == 0
    assert settings_from(_args("--media-workers", "1")).media.workers == 1


def test_frozen_and_derived_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIVE_MEDIA_ADMISSION", raising=False)  # the suite's (tests/conftest.py)
    settings = Settings.of(media_workers=0, media_max_viewers="auto")
    with pytest.raises(ValidationError):
        settings.server.port = 1  # type: ignore[misc]
    with pytest.raises(ValidationError):
        settings.chat = settings.chat  # type: ignore[misc]
    assert settings.viewer_capacity == 500  # a ceiling: measured load decides below it
    assert settings.media.config().admission
    counted = Settings.of(media_workers=0, media_max_viewers="auto", media_admission="count")
    assert counted.viewer_capacity == 300
    assert not counted.media.config().admission
    assert Settings.of(node_capacity=7).viewer_capacity == 7
    assert Settings.of(media_max_viewers=0).viewer_capacity == 500
    assert Settings().commerce.outbox is False
    assert Settings.of(redis_cluster=True).commerce.outbox is True
    assert Settings.of(redis_cluster=True, commerce_outbox=False).commerce.outbox is False
    changed = settings.replace(port=1, origin_url="http://o")
    assert (changed.server.port, changed.edge.origin_url) == (1, "http://o")
    assert (settings.server.port, settings.edge.origin_url) == (8080, None)
    with pytest.raises(TypeError, match="LIVE_NO_SUCH"):
        Settings.of(no_such=1)
