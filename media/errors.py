"""The error type of the media layer; the HTTP layer maps its codes to statuses."""

from __future__ import annotations

from typing import Any, Literal

from core.errors import DomainError

MediaErrorCode = Literal[
    "invalid_sdp",  # not an SDP offer aiortc can parse
    "unsupported_codec",  # no VP8/H.264 video or Opus audio to use
    "no_media",  # nothing to send (WHIP) or receive (WHEP)
    "publisher_exists",  # the room already has a live publisher
    "session_not_found",
    "closed",  # the media server is shutting down
    "full",  # the viewer ceiling (MediaConfig.max_viewers) or measured load (media.admission)
    "too_many_sessions",  # the owner holds MediaConfig.sessions_per_owner sessions already
]


class MediaError(DomainError):
    """A request the media layer refuses, with a stable code and a human-readable detail."""

    def __init__(
        self, code: MediaErrorCode, detail: str, *, retry_after: int | None = None, **extra: Any
    ) -> None:
        super().__init__(code, detail, retry_after=retry_after, **extra)
        self.code: MediaErrorCode = code
