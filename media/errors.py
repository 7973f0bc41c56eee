"""The one error type of the media layer; the HTTP adapter maps `code` to a status."""

from __future__ import annotations

from typing import Literal

MediaErrorCode = Literal[
    "invalid_sdp",  # 400: not an SDP offer aiortc can parse
    "unsupported_codec",  # 400/415: no VP8/H.264 video or Opus audio to use
    "no_media",  # 400: nothing to send (WHIP) or receive (WHEP)
    "publisher_exists",  # 409: the room already has a live publisher
    "session_not_found",  # 404
    "closed",  # 503: the media server is shutting down
    "full",  # 503: the node serves as many viewers as it is allowed (MediaConfig.max_viewers)
]


class MediaError(Exception):
    """A request the media layer refuses, with a stable code and a human-readable detail."""

    def __init__(self, code: MediaErrorCode, detail: str) -> None:
        super().__init__(detail)
        self.code: MediaErrorCode = code
        self.detail = detail
