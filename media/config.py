"""Media settings: plain values the composition root fills from the node's Settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True, slots=True)
class MediaConfig:
    """How a node's media behaves; defaults suit one machine and the tests."""

    # ICE host candidates offered; aioice leaves loopback out unless named here. [] = aioice's own.
    ice_addresses: list[str] = field(default_factory=lambda: ["127.0.0.1"])
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
    # A session whose ICE/DTLS has not connected by then is closed.
    connect_timeout_s: float = 20.0
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
