"""Counters of a node's media for /metrics, and how a worker's report adds into them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class WorkerStats:
    """One media worker process as /metrics shows it."""

    index: int
    pid: int | None
    viewers: int
    frames_dropped: int  # frames not sent to it: its backlog was full
    restarts: int


@dataclass(slots=True)
class MediaStats:
    """Counters for /metrics; totals include sessions already closed (and workers since ended)."""

    rooms: int = 0
    live_rooms: int = 0
    publishers: int = 0
    viewers: int = 0
    peer_connections: int = 0
    packets_in: int = 0
    bytes_in: int = 0
    frames_in: int = 0
    frames_out: int = 0
    bytes_out: int = 0
    frames_dropped: int = 0
    viewer_skips: int = 0
    keyframe_requests: int = 0
    keyframe_requests_coalesced: int = 0
    # Sessions closed because ICE/DTLS had not connected within MediaConfig.connect_timeout_s.
    unconnected_closed: int = 0
    ttff_seconds: list[float] = field(default_factory=list)
    workers: list[WorkerStats] = field(default_factory=list)
    # Viewer tracks whose fast send path fell back to a slower way, by reason
    # (media.aiortc_compat.fast_path.FALLBACK_REASONS).
    fast_path_fallbacks: dict[str, int] = field(default_factory=dict)


# What a worker's viewers add to the node's totals (its rooms, ingest and PLIs are the node's).
VIEWER_COUNTERS = (
    "frames_out",
    "bytes_out",
    "frames_dropped",
    "viewer_skips",
    "unconnected_closed",
)


def add_viewer_counters(total: MediaStats, report: dict[str, Any]) -> None:
    """Add a worker's reported viewer counters into `total`."""
    for name in VIEWER_COUNTERS:
        setattr(total, name, getattr(total, name) + int(report.get(name, 0)))
    total.keyframe_requests_coalesced += int(report.get("keyframe_requests_coalesced", 0))
    total.peer_connections += int(report.get("peer_connections", 0))
    add_counts(total.fast_path_fallbacks, report.get("fast_path_fallbacks", {}))


def add_counts(total: dict[str, int], counts: Mapping[str, int]) -> None:
    for key, count in counts.items():
        total[key] = total.get(key, 0) + int(count)
