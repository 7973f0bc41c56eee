"""Typed settings from `LIVE_*` environment variables (and `.env`), overridable by CLI flags.

Each package owns a section (a `Section`, read from the environment on its own); the kernel's are
here, the domains' in their `config.py`, and the app composes them (`live/settings.py`). Every
field's variable is `env_prefix` + its name, or its `validation_alias` where that differs.
"""

from __future__ import annotations

import re
import secrets
import socket
import uuid
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Role = Literal["all", "origin", "edge"]
# The embedded Valkey's default AOF fsync policy, from loadtest/benches/fsync.py (see
# docs/protocol.md "Durability: holds, streams and the store").
DEFAULT_FSYNC: Literal["always", "everysec"] = "always"
# A CSP frame-ancestors source: a keyword or an origin (no `;` or `,`: they would end the
# directive and let a setting add others).
FRAME_SOURCE = re.compile(
    r"^('self'|'none'|https?://(\*\.)?[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?)$"
)


class Section(BaseSettings):
    """One package's settings; frozen: a variant is a `model_copy(update=...)`."""

    model_config = SettingsConfigDict(
        env_prefix="LIVE_", env_file=".env", extra="ignore", frozen=True, populate_by_name=True
    )

    @classmethod
    def env_name(cls, field: str) -> str:
        """The `LIVE_*` variable that sets `field` (the first `LIVE_` one of its aliases)."""
        alias = cls.model_fields[field].validation_alias
        if alias is None:
            return (cls.model_config.get("env_prefix", "") + field).upper()
        names = alias.choices if isinstance(alias, AliasChoices) else [alias]
        return next(n for n in names if isinstance(n, str) and n.upper().startswith("LIVE_"))


class ServerSettings(Section):
    """This node: where it listens, what it is, how it leaves."""

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
    drain_s: float = Field(2.0, ge=0)  # on SIGTERM: draining (no new viewers) this long, then leave
    # HTTP connection limits (docs/protocol.md, "Connection and Socket.IO limits"). An idle
    # connection, or one whose next request's head is incomplete, closes after the keep-alive
    # timeout (aiohttp's default is an hour); a new connection's first request head must arrive
    # within the header timeout (0: none).
    keepalive_timeout_s: float = Field(15.0, gt=0)
    header_timeout_s: float = Field(10.0, ge=0)
    # Open connections per client address (0: no cap). Behind a proxy every client has the
    # proxy's address: raise it or set 0 there.
    max_connections_per_ip: int = Field(256, ge=0)
    # Who may embed the viewer page in a frame (CSP frame-ancestors sources, space-separated,
    # e.g. "'self' https://shop.example"); the studio and moderator console are never framed.
    frame_ancestors: str = "'self'"

    @field_validator("frame_ancestors")
    @classmethod
    def _check_ancestors(cls, value: str) -> str:
        sources = value.split()
        if not sources or not all(FRAME_SOURCE.match(s) for s in sources):
            raise ValueError(
                "frame_ancestors: space-separated 'self', 'none' or origins like "
                f"https://shop.example or https://*.shop.example, not {value!r}"
            )
        if "'none'" in sources and len(sources) > 1:
            raise ValueError("frame_ancestors: 'none' stands alone")
        return " ".join(sources)

    @property
    def advertised_url(self) -> str:
        """The URL clients should use to reach this node."""
        return self.public_url or f"http://{self.host}:{self.port}"


class StoreSettings(Section):
    """Redis (or Valkey) holding the shared state."""

    # No REDIS_URL means: start an embedded Valkey with its data under data_dir.
    redis_url: str | None = Field(
        None, validation_alias=AliasChoices("REDIS_URL", "LIVE_REDIS_URL")
    )
    redis_cluster: bool = False
    data_dir: Path = Path("var")
    # The embedded Valkey's AOF fsync policy (docs/protocol.md "Durability"): `always` loses no
    # acknowledged hold on power loss, `everysec` up to about a second of writes.
    valkey_appendfsync: Literal["always", "everysec"] = DEFAULT_FSYNC


class AuthSettings(Section):
    """Token signing and verification."""

    jwt_secret: SecretStr = Field(
        default_factory=lambda: SecretStr(secrets.token_urlsafe(32)),
        validation_alias=AliasChoices("LIVE_JWT_SECRET", "JWT_SECRET"),
    )
    jwt_public_key: str | None = None  # PEM; when set, RS256 tokens are accepted
    # A token whose `exp` is further away than this is refused: a leaked token must not be
    # good for months. Also the longest `live token --ttl`.
    token_max_ttl_s: int = Field(86_400, ge=60)
    # OIDC: tokens from the shop's identity provider (RS256/ES256), verified with its JWKS.
    jwks_url: str | None = None
    jwt_issuer: str | None = None  # when set, a JWKS token's `iss` must be this
    jwt_audience: str | None = None  # when set, a JWKS token's `aud` must name this
    # Where an IdP's token carries what ours call `role`, `rooms` and `shop`.
    jwt_role_claim: str = "role"
    jwt_rooms_claim: str = "rooms"
    jwt_shop_claim: str = "shop"
    # At most one JWKS fetch per this many seconds for unknown key ids: a flood of tokens with
    # forged `kid`s must not become a flood of requests to the IdP.
    jwks_refresh_min_s: float = Field(30.0, ge=0)

    @property
    def secret_configured(self) -> bool:
        """Whether the secret was given (else it is random, known to this process only)."""
        return "jwt_secret" in self.model_fields_set

    @field_validator("jwt_secret")
    @classmethod
    def _long_enough(cls, secret: SecretStr) -> SecretStr:
        # RFC 7518 3.2: an HS256 key needs at least 256 bits.
        if len(secret.get_secret_value().encode()) < 32:
            raise ValueError("LIVE_JWT_SECRET must be at least 32 bytes")
        return secret


class LogSettings(Section):
    model_config = SettingsConfigDict(env_prefix="LIVE_LOG_")

    level: str = "INFO"
    json_lines: bool = Field(True, validation_alias="LIVE_LOG_JSON")


class PrivacySettings(Section):
    """Privacy rights (docs/privacy.md): the pseudonym's key and how long chat is kept."""

    model_config = SettingsConfigDict(env_prefix="LIVE_PRIVACY_")

    # The key of erased users' pseudonyms (HMAC-SHA256); unset: the JWT secret. Every node must
    # use the same one, and changing it gives later erasures other pseudonyms.
    secret: SecretStr | None = None
    # Chat history and moderation records (audit, held messages, mutes that ended) older than
    # this many days are dropped by every node's retention sweep; 0 keeps them.
    chat_retention_days: int = Field(30, ge=0, le=36_500)
    retention_interval_s: float = Field(3600.0, gt=0)
