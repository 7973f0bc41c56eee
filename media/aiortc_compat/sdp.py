"""Codecs and header extensions a transceiver negotiated, and what an SDP offer asks for."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from aiortc import RTCRtpTransceiver
from aiortc import sdp as aiortc_sdp

from media.rtp_writer import HeaderExtensionIds

_ABS_SEND_TIME_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
_MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"


class Codec(Protocol):
    mimeType: str
    payloadType: int


def codec_name(codec: Codec) -> str:
    """The codec's name as EncodedFrame.codec spells it (VP8, H264, opus, RTX)."""
    name = codec.mimeType.split("/")[1].upper()
    return "opus" if name == "OPUS" else name


def negotiated_codec(transceiver: RTCRtpTransceiver) -> str | None:
    """The codec name the sender will use (first negotiated), as EncodedFrame.codec spells it."""
    codecs: list[Any] = transceiver._codecs
    return codec_name(codecs[0]) if codecs else None


def restrict_codecs(transceiver: RTCRtpTransceiver, preferred: Sequence[str]) -> str | None:
    """Keep only the `preferred` codecs (and their RTX) negotiated by setRemoteDescription, in
    that order, so the answer names only what we can forward; returns the codec used, or None.

    Done after setRemoteDescription because aiortc builds the answerer's transceivers there.
    """
    codecs: list[Any] = transceiver._codecs
    kept: list[Any] = []
    for name in preferred:
        for codec in codecs:
            if codec_name(codec) == name:
                kept.append(codec)
                kept.extend(
                    c
                    for c in codecs
                    if codec_name(c) == "RTX" and c.parameters.get("apt") == codec.payloadType
                )
    transceiver._codecs = kept
    return codec_name(kept[0]) if kept else None


def offer_media(sdp: str) -> list[tuple[str, str]]:
    """(kind, direction) of each audio/video section of an SDP offer; ValueError if unparsable."""
    try:
        description = aiortc_sdp.SessionDescription.parse(sdp)
    except Exception as exc:
        # aiortc's parser asserts on malformed lines, and fails in other ways on others (an
        # attribute with no value: AttributeError); any of them means the offer is unparsable.
        raise ValueError(f"unparsable SDP: {exc}") from exc
    return [
        (m.kind, m.direction or "sendrecv")
        for m in description.media
        if m.kind in ("audio", "video")
    ]


def extension_ids(transceiver: RTCRtpTransceiver) -> HeaderExtensionIds:
    """The RTP header extension ids the viewer's answer gave the MID and abs-send-time."""
    mid = abs_send_time = 0
    for ext in transceiver._headerExtensions:
        if ext.uri == _MID_URI:
            mid = ext.id
        elif ext.uri == _ABS_SEND_TIME_URI:
            abs_send_time = ext.id
    return HeaderExtensionIds(mid=mid, abs_send_time=abs_send_time)
