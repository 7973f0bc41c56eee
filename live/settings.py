"""A node's settings: every package's section, composed (`settings.chat.history_len`, ...).

Each section reads its own `LIVE_*` variables (and `.env`) when it is built. `Settings.of` and
`Settings.replace` take values by their flat names, the variables' without `LIVE_`
(`media_workers`, `likes_flush_ms`), as the CLI flags and tests give them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from chat.config import ChatSettings
from commerce.config import CommerceSettings
from core.config import (
    AuthSettings,
    LogSettings,
    PrivacySettings,
    Section,
    ServerSettings,
    StoreSettings,
)
from edge.config import EdgeSettings
from media.config import MediaSettings

# Viewers at which selection counts a node as full when neither a capacity nor a limit is set.
FALLBACK_CAPACITY = 500


class Settings(BaseModel):
    """Everything a node needs to start; one instance per node, frozen."""

    model_config = ConfigDict(frozen=True)

    server: ServerSettings = Field(default_factory=ServerSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    chat: ChatSettings = Field(default_factory=ChatSettings)
    # After `store`: its outbox default depends on `store.redis_cluster`.
    commerce: CommerceSettings = Field(default_factory=CommerceSettings, validate_default=True)
    media: MediaSettings = Field(default_factory=MediaSettings)
    edge: EdgeSettings = Field(default_factory=EdgeSettings)
    privacy: PrivacySettings = Field(default_factory=PrivacySettings)

    SECTIONS: ClassVar[dict[str, type[Section]]] = {
        "server": ServerSettings,
        "store": StoreSettings,
        "auth": AuthSettings,
        "log": LogSettings,
        "chat": ChatSettings,
        "commerce": CommerceSettings,
        "media": MediaSettings,
        "edge": EdgeSettings,
        "privacy": PrivacySettings,
    }

    @field_validator("commerce")
    @classmethod
    def _outbox(cls, commerce: CommerceSettings, info: ValidationInfo) -> CommerceSettings:
        # Unset: an outbox exactly when Redis is a cluster (one slot per sale's keys).
        store = info.data.get("store")
        if commerce.outbox is None and isinstance(store, StoreSettings):
            return commerce.model_copy(update={"outbox": store.redis_cluster})
        return commerce

    @property
    def viewer_capacity(self) -> int:
        """Viewers at which selection counts this node as full."""
        return self.edge.node_capacity or self.media.viewer_limit or FALLBACK_CAPACITY

    @classmethod
    def flat_names(cls) -> dict[str, tuple[str, str]]:
        """Flat name (`LIVE_X` -> `x`) -> (section, field), for every field of every section."""
        return {
            section.env_name(field).removeprefix("LIVE_").lower(): (name, field)
            for name, section in cls.SECTIONS.items()
            for field in section.model_fields
        }

    @classmethod
    def sectioned(cls, values: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """`values` by flat name, grouped by section (an unknown name is a TypeError)."""
        names = cls.flat_names()
        nested: dict[str, dict[str, Any]] = {}
        for flat, value in values.items():
            if flat not in names:
                raise TypeError(f"no setting {flat!r} (LIVE_{flat.upper()})")
            section, field = names[flat]
            nested.setdefault(section, {})[field] = value
        return nested

    @classmethod
    def of(cls, **values: Any) -> Settings:
        """Settings from the environment, `values` (flat names) taking precedence."""
        return cls(**cls.sectioned(values))

    def replace(self, **values: Any) -> Settings:
        """A copy with `values` (flat names) changed."""
        update = {
            section: getattr(self, section).model_copy(update=fields)
            for section, fields in self.sectioned(values).items()
        }
        return self.model_copy(update=update)
