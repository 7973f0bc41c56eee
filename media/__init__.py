"""WebRTC ingest (WHIP) and fan-out (WHEP) that forwards the host's encoded media:
no transcoding.

Knows nothing of Redis, HTTP routes or chat; an HTTP adapter drives `MediaServer`.
"""

from media.config import MediaConfig, MediaSettings
from media.errors import MediaError, MediaErrorCode
from media.server import MediaEvent, MediaServer
from media.stats import MediaStats

__all__ = [
    "MediaConfig",
    "MediaError",
    "MediaErrorCode",
    "MediaEvent",
    "MediaServer",
    "MediaSettings",
    "MediaStats",
]
