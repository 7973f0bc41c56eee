"""Typed settings from `LIVE_*` environment variables (and `.env`), overridable by CLI flags."""

from __future__ import annotations

import os
import secrets
import socket
import uuid
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Role = Literal["all", "origin", "edge"]


MEDIA_VIEWERS_PER_PROCESS = 300


class Settings(BaseSettings):
    """Everything a node needs to start; one instance per node."""

    model_config = SettingsConfigDict(env_prefix="LIVE_", env_file=".env", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    # Pending connections the kernel holds for the node (capped by net.core.somaxconn). aiohttp's
    # 128 overflows when a crowd arrives at once (a show starts, an edge fails over): the kernel
    # then drops handshakes and clients wait out SYN retransmits, some past their timeout.
    listen_backlog: int = Field(4096, ge=1, le=65535)
    role: Role = "all"
    region: str = "local"
    node_id: str = Field(default_factory=lambda: f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}")
    public_url: str | None = None
    origin_url: str | None = None

    # No REDIS_URL means: start an embedded Valkey with its data under data_dir.
    redis_url: str | None = Field(
        None, validation_alias=AliasChoices("REDIS_URL", "LIVE_REDIS_URL")
    )
    redis_cluster: bool = False
    data_dir: Path = Path("var")

    jwt_secret: SecretStr = Field(
        default_factory=lambda: SecretStr(secrets.token_urlsafe(32)),
        validation_alias=AliasChoices("LIVE_JWT_SECRET", "JWT_SECRET"),
    )
    jwt_public_key: str | None = None  # PEM; when set, RS256 tokens are accepted

    # Chat
    chat_max_chars: int = 500
    chat_history_len: int = 1000
    chat_rate_count: int = 20
    chat_rate_window_s: float = 30.0
    likes_flush_ms: int = 200
    viewer_count_interval_s: float = 1.0
    # Packets queued for one client before it counts as too slow and is disconnected.
    chat_max_client_queue: int = Field(1000, ge=10)

    # WebRTC: the addresses aioice offers as host candidates (loopback for tests and demos).
    ice_addresses: list[str] = Field(default_factory=lambda: ["127.0.0.1"])
    # Media worker processes serving the viewers' peer connections (the ingest stays in the node):
    # 0 = in the node process; "auto" = one per usable core when there is more than one
    # (`live serve`/`demo` default to "auto" unless this or --media-workers says otherwise).
    media_workers: int | Literal["auto"] = 0
    # Viewers a node takes at most before WHEP answers 503 "full" (0 = no limit); "auto" = 300 per
    # process serving viewers (the node itself, or each media worker). The fast path holds ~400 on
    # one core of the development VM at its limit (docs/media.md); 300 leaves room for the rest.
    media_max_viewers: int | Literal["auto"] = "auto"

    # Edge (edge/): node registry heartbeats, viewer routing by region, origin upstreams.
    node_heartbeat_s: float = Field(1.0, gt=0)
    node_ttl_s: float = Field(3.0, gt=0)  # a node silent this long drops out of the registry
    # Viewers at which a node counts as fully loaded for selection; unset: the media viewer limit
    # (so selection stops offering a node before its WHEP refuses), or 500 when that is off.
    node_capacity: int | None = Field(None, ge=1)
    drain_s: float = Field(2.0, ge=0)  # on SIGTERM: draining (no new viewers) this long, then leave
    # Distances (any unit, e.g. ms RTT) between regions; selection falls back to the nearest region
    # with a healthy node. Symmetric: one direction is enough. JSON in LIVE_REGION_DISTANCES.
    region_distances: dict[str, dict[str, float]] = Field(
        default_factory=lambda: {"na": {"eu": 90.0, "sea": 180.0}, "eu": {"sea": 160.0}}
    )
    edge_upstream_grace_s: float = Field(10.0, ge=0)  # upstream kept this long after last viewer
    edge_upstream_timeout_s: float = Field(5.0, gt=0)  # a viewer waits this long for the upstream
    edge_upstream_retries: int = Field(60, ge=0)  # reconnect attempts while viewers are waiting

    purchase_stream: str = "live:purchases"
    # Commerce (see commerce/config.py for what each one governs)
    commerce_sweep_interval_s: float = Field(0.5, gt=0)
    commerce_stock_event_interval_s: float = Field(0.25, ge=0)
    commerce_notice_interval_s: float = Field(1.0, ge=0)
    commerce_user_rate: int = Field(20, ge=1)
    commerce_ip_rate: int = Field(2000, ge=1)
    commerce_rate_window_s: float = Field(10.0, gt=0)
    commerce_redis_timeout_s: float = Field(1.0, gt=0)
    commerce_retention_s: int = Field(7 * 24 * 3600, ge=60)
    commerce_outbox: bool | None = None  # None: only with redis_cluster
    dead_letter_stream: str = "live:purchases:dead"
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    webhook_max_attempts: int = Field(6, ge=1, le=20)
    webhook_backoff_s: float = Field(0.5, gt=0)
    webhook_backoff_max_s: float = Field(30.0, gt=0)
    webhook_timeout_s: float = Field(5.0, gt=0)
    log_level: str = "INFO"
    log_json: bool = True

    @field_validator("media_workers")
    @classmethod
    def _workers(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not 0 <= value <= 256:
            raise ValueError("LIVE_MEDIA_WORKERS must be 0-256 or auto")
        return value

    @field_validator("media_max_viewers")
    @classmethod
    def _max_viewers(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 0:
            raise ValueError("LIVE_MEDIA_MAX_VIEWERS must be 0 (no limit), a count or auto")
        return value

    @property
    def media_worker_count(self) -> int:
        """How many media worker processes to run (`auto` resolved against the usable cores)."""
        if self.media_workers != "auto":
            return self.media_workers
        cores = len(os.sched_getaffinity(0))
        return cores if cores > 1 else 0

    @property
    def media_viewer_limit(self) -> int:
        """The viewer limit, `auto` resolved (0 = none)."""
        if self.media_max_viewers != "auto":
            return self.media_max_viewers
        return MEDIA_VIEWERS_PER_PROCESS * max(1, self.media_worker_count)

    @property
    def viewer_capacity(self) -> int:
        """Viewers at which selection counts this node as full."""
        return self.node_capacity or self.media_viewer_limit or 500

    @field_validator("jwt_secret")
    @classmethod
    def _long_enough(cls, secret: SecretStr) -> SecretStr:
        # RFC 7518 3.2: an HS256 key needs at least 256 bits.
        if len(secret.get_secret_value().encode()) < 32:
            raise ValueError("LIVE_JWT_SECRET must be at least 32 bytes")
        return secret

    @property
    def advertised_url(self) -> str:
        """The URL clients should use to reach this node."""
        return self.public_url or f"http://{self.host}:{self.port}"
