"""Edge's settings section: node registry heartbeats, viewer routing by region, origin upstreams."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from core.config import Section


class EdgeSettings(Section):
    model_config = SettingsConfigDict(env_prefix="LIVE_")

    origin_url: str | None = None  # the origin an edge node pulls from
    node_heartbeat_s: float = Field(1.0, gt=0)
    node_ttl_s: float = Field(3.0, gt=0)  # a node silent this long drops out of the registry
    # Viewers at which a node counts as fully loaded for selection; unset: the media viewer limit
    # (so selection stops offering a node before its WHEP refuses), or 500 when that is off
    # (the node's settings decide, live/settings.py).
    node_capacity: int | None = Field(None, ge=1)
    # Distances (any unit, e.g. ms RTT) between regions; selection falls back to the nearest region
    # with a healthy node. Symmetric: one direction is enough. JSON in LIVE_REGION_DISTANCES.
    region_distances: dict[str, dict[str, float]] = Field(
        default_factory=lambda: {"na": {"eu": 90.0, "sea": 180.0}, "eu": {"sea": 160.0}}
    )
    # An upstream is kept this long after its last viewer left.
    upstream_grace_s: float = Field(10.0, ge=0, validation_alias="LIVE_EDGE_UPSTREAM_GRACE_S")
    # A joining viewer waits this long for the upstream to be negotiated.
    upstream_timeout_s: float = Field(5.0, gt=0, validation_alias="LIVE_EDGE_UPSTREAM_TIMEOUT_S")
    # Reconnect attempts in a row while viewers are watching or waiting.
    upstream_retries: int = Field(60, ge=0, validation_alias="LIVE_EDGE_UPSTREAM_RETRIES")
