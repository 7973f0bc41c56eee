"""Media's settings section (`LIVE_MEDIA_*`, `LIVE_ICE_ADDRESSES`) and the `MediaConfig` it
resolves into for a `MediaServer` (which tests and benchmarks also build directly)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from core.config import Section

# Viewers per process serving them for `max_viewers=auto`: a ceiling above what one core carried
# where it was measured (~400), the measured load (media.admission) deciding below it; with
# `admission=count` the count alone decides, and the older 300 stays. Why: docs/media.md.
VIEWERS_PER_PROCESS = 500
VIEWERS_PER_PROCESS_COUNTED = 300


def _loopback() -> list[str]:
    return ["127.0.0.1"]


@dataclass(frozen=True, slots=True)
class MediaConfig:
    """How a node's media behaves; defaults suit one machine and the tests."""

    # ICE host candidates offered; aioice leaves loopback out unless named here. [] = aioice's own.
    ice_addresses: list[str] = field(default_factory=_loopback)
    # Video codecs forwarded, in order of preference (no transcoding: viewers get the host's).
    video_codecs: tuple[str, ...] = ("VP8", "H264")
    # Per-viewer bounds: past these a video viewer skips to the next keyframe.
    video_queue_frames: int = 90
    audio_queue_frames: int = 50
    # GOP cache replayed to newcomers; longer GOPs are dropped and a fresh keyframe asked for.
    gop_cache_frames: int = 60
    gop_cache_bytes: int = 8 << 20
    # At most one keyframe request to the publisher per this many seconds.
    keyframe_interval_s: float = 1.0
    # Viewers this server (with its workers) takes at most; past it WHEP is refused with "full" so
    # the crowd goes to another node instead of slowing every viewer here down. 0 = no limit.
    max_viewers: int = 0
    # A session whose ICE/DTLS has not connected by then is closed (and its slot freed).
    connect_timeout_s: float = 10.0
    # Viewer sessions one owner (the token's `sub`) may hold on this server, those being answered
    # included; past it WHEP is refused with "too_many_sessions". 0 = no limit.
    sessions_per_owner: int = 0
    # "fast": viewers' RTP is written per packet header over payloads cut once per room and sent
    # directly (media.rtp_writer); "aiortc": each viewer's RTCRtpSender packetises and sends.
    send_path: Literal["fast", "aiortc"] = "fast"
    # Receive buffer of a publisher's sockets: a whole keyframe burst must fit while we fan out.
    ingest_receive_buffer: int = 1 << 20
    # How many time-to-first-frame samples stats keep.
    ttff_samples: int = 1000
    # Media worker processes serving the viewers' peer connections (media.workers); 0 = viewers are
    # served in this process. The ingest (publishers, edge upstreams) always stays here.
    workers: int = 0
    # Frames queued towards one worker (bytes) past which it skips to the room's next keyframe.
    worker_backlog_bytes: int = 4 << 20
    # How often workers report their counters to the node (seconds).
    worker_stats_interval_s: float = 0.5
    # A worker not ready this long after its start counts as failed (and is started again).
    worker_start_timeout_s: float = 20.0
    # WHIP/WHEP offers larger than this (bytes) or with more m-lines are refused (invalid_sdp):
    # a browser's audio+video offer is 4-8 KiB with 2 m-lines.
    sdp_max_bytes: int = 64 * 1024
    sdp_max_media: int = 4
    # Admission by measured load (media.admission): each process serving viewers refuses new ones
    # ("full") while its event loop lags, its core is busy or frames back up. Off: the count only.
    admission: bool = False
    admit_max_lag_s: float = 0.05  # loop lag p95 over 2 s; 0 = not used
    admit_max_cpu: float = 0.85  # CPU + run-queue wait, fraction of one core; 0 = not used
    admit_max_setups: int = 8  # viewer sessions being answered or connecting at once; 0 = any


class MediaSettings(Section):
    model_config = SettingsConfigDict(env_prefix="LIVE_MEDIA_")

    # The addresses aioice offers as host candidates (loopback for tests and demos).
    ice_addresses: list[str] = Field(
        default_factory=_loopback, validation_alias="LIVE_ICE_ADDRESSES"
    )
    # Media worker processes serving the viewers' peer connections (the ingest stays in the node):
    # 0 = in the node process; "auto" = one per usable core when there is more than one
    # (`live serve`/`demo` default to "auto" unless this or --media-workers says otherwise:
    # live/cli/options.py).
    workers: int | Literal["auto"] = 0
    # Viewers a node takes at most before WHEP answers 503 "full" (0 = no limit); "auto" =
    # VIEWERS_PER_PROCESS per process serving viewers (the node itself, or each media worker).
    max_viewers: int | Literal["auto"] = "auto"
    # "measured": each process serving viewers also refuses them (503 "full") from what it measures
    # (event-loop lag, CPU, backlog: media.admission), below the count; "count": the count only.
    admission: Literal["measured", "count"] = "measured"
    # The measured admission's bounds: loop lag p95 (ms), busy fraction of a core (CPU plus time
    # waiting for it), viewer sessions in setup at once (0: unbounded). 0 turns lag or CPU off.
    admit_max_lag_ms: float = Field(50.0, ge=0)
    admit_max_cpu: float = Field(0.85, ge=0, le=1)
    admit_max_setups: int = Field(8, ge=0)
    # WHEP sessions one user (token `sub`) holds on this node at most (a few tabs or devices);
    # one token must not take a node's viewer slots. 0 = no limit.
    sessions_per_user: int = Field(3, ge=0, validation_alias="LIVE_WHEP_SESSIONS_PER_USER")
    # A WHEP/WHIP session not connected (ICE and DTLS) this long after its offer is closed.
    connect_timeout_s: float = Field(10.0, gt=0)

    # WHIP/WHEP offers past these are 400 invalid_sdp (see MediaConfig).
    sdp_max_bytes: int = Field(default=64 * 1024, ge=1024, le=256 * 1024)  # <= client_max_size
    sdp_max_media: int = Field(default=4, ge=1, le=64)

    @field_validator("workers")
    @classmethod
    def _workers(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not 0 <= value <= 256:
            raise ValueError("LIVE_MEDIA_WORKERS must be 0-256 or auto")
        return value

    @field_validator("max_viewers")
    @classmethod
    def _max_viewers(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 0:
            raise ValueError("LIVE_MEDIA_MAX_VIEWERS must be 0 (no limit), a count or auto")
        return value

    @property
    def worker_count(self) -> int:
        """How many media worker processes to run (`auto` resolved against the usable cores)."""
        if self.workers != "auto":
            return self.workers
        cores = len(os.sched_getaffinity(0))
        return cores if cores > 1 else 0

    @property
    def viewer_limit(self) -> int:
        """The viewer limit, `auto` resolved (0 = none)."""
        if self.max_viewers != "auto":
            return self.max_viewers
        per_process = (
            VIEWERS_PER_PROCESS if self.admission == "measured" else VIEWERS_PER_PROCESS_COUNTED
        )
        return per_process * max(1, self.worker_count)

    def config(self) -> MediaConfig:
        """The `MediaServer` configuration these settings make."""
        return MediaConfig(
            ice_addresses=list(self.ice_addresses),
            workers=self.worker_count,
            max_viewers=self.viewer_limit,
            sessions_per_owner=self.sessions_per_user,
            connect_timeout_s=self.connect_timeout_s,
            sdp_max_bytes=self.sdp_max_bytes,
            sdp_max_media=self.sdp_max_media,
            admission=self.admission == "measured",
            admit_max_lag_s=self.admit_max_lag_ms / 1000,
            admit_max_cpu=self.admit_max_cpu,
            admit_max_setups=self.admit_max_setups,
        )
