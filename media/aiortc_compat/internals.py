"""Every private aiortc/aioice/pylibsrtp name the media code relies on, in one table, and the
check a node runs when its media server starts (`check_internals`): a release that renamed one
refuses to start, naming it, rather than failing on the first viewer or silently going slow.

How each name is checked (`Internal.checked`):
- "static": an attribute of the class or module itself (methods, module functions);
- "instance": set in `__init__` (name-mangled `self.__x` included), so checked on an object built
  for the check (a sender and receiver on an unconnected DTLS transport, as the tests build them);
- "set by <function>": set on another object by aiortc's own code; checked by reading that
  function's compiled names (co_names), the only way short of running it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aioice
import pylibsrtp
from aiortc import (
    RTCCertificate,
    RTCDtlsTransport,
    RTCIceGatherer,
    RTCIceTransport,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCRtpTransceiver,
)
from aiortc.jitterbuffer import JitterBuffer

from media.aiortc_compat.version import installed_versions

# Name-mangled attributes of aiortc's RTCRtpReceiver and RTCRtpSender.
RECEIVER_DECODER_QUEUE = "_RTCRtpReceiver__decoder_queue"
RECEIVER_JITTER_BUFFER = "_RTCRtpReceiver__jitter_buffer"
RECEIVER_CODECS = "_RTCRtpReceiver__codecs"
SENDER_ENCODER = "_RTCRtpSender__encoder"
# What RTCRtpSender._run_rtcp puts in its sender reports.
SENDER_NTP_TIMESTAMP = "_RTCRtpSender__ntp_timestamp"
SENDER_RTP_TIMESTAMP = "_RTCRtpSender__rtp_timestamp"
SENDER_PACKET_COUNT = "_RTCRtpSender__packet_count"
SENDER_OCTET_COUNT = "_RTCRtpSender__octet_count"

STATIC = "static"
INSTANCE = "instance"
BENCH = "used by the media benchmark's lean viewers (lean_receive.py)"


@dataclass(frozen=True, slots=True)
class Internal:
    owner: str  # the class or module, as imported
    name: str
    why: str
    checked: str = STATIC  # or INSTANCE, or "set by <module.Class.function>"


_RECEIVER = "aiortc.RTCRtpReceiver"
_DTLS = "aiortc.RTCDtlsTransport"
_SENDER = "aiortc.RTCRtpSender"
_JITTER = "aiortc.jitterbuffer.JitterBuffer"
_H264 = "aiortc.codecs.h264.H264Encoder"

INTERNALS: tuple[Internal, ...] = (
    # receive.py
    Internal(_RECEIVER, RECEIVER_DECODER_QUEUE, "ReceiverTap takes its place", INSTANCE),
    Internal(_RECEIVER, RECEIVER_JITTER_BUFFER, "ReceiverTap swaps in its own buffers", INSTANCE),
    Internal(_RECEIVER, RECEIVER_CODECS, "ReceiverTap tells media from RTX types", INSTANCE),
    Internal(_RECEIVER, "_handle_rtp_packet", "ReceiverTap counts and learns the SSRC"),
    Internal(_RECEIVER, "_send_rtcp_pli", "ReceiverTap asks the publisher for a keyframe"),
    Internal(_JITTER, "_remove_frame", "MarkerJitterBuffer releases frames on the marker"),
    Internal(_JITTER, "remove", "MarkerJitterBuffer drops a released frame's packets"),
    Internal(_JITTER, "_origin", "MarkerJitterBuffer reads the buffer's slots", INSTANCE),
    Internal(_JITTER, "_packets", "MarkerJitterBuffer reads the buffer's slots", INSTANCE),
    Internal(_JITTER, "_capacity", "MarkerJitterBuffer reads the buffer's slots", INSTANCE),
    Internal(
        "aiortc.rtp.RtpPacket",
        "_data",
        "MarkerJitterBuffer joins the depayloaded bodies",
        f"set by {_RECEIVER}._handle_rtp_packet",
    ),
    Internal(
        "aiortc.RTCIceTransport",
        "_connection",
        f"enlarge_receive_buffers and SrtpUdpSink reach aioice; {BENCH}",
        INSTANCE,
    ),
    Internal("aioice.Connection", "_protocols", "enlarge_receive_buffers", INSTANCE),
    # packer.py
    Internal(_SENDER, SENDER_ENCODER, "attach_sender presets FramePacker", INSTANCE),
    Internal(_SENDER, "_send_keyframe", "attach_sender reroutes the viewer's PLI/FIR"),
    Internal("aiortc.codecs.vpx.Vp8Encoder", "_packetize", "FramePacker packetises VP8"),
    Internal(_H264, "_split_bitstream", "FramePacker and packetize_once cut H.264"),
    Internal(_H264, "_packetize", "FramePacker and packetize_once packetise H.264"),
    # sdp.py
    Internal(
        "aiortc.RTCRtpTransceiver",
        "_codecs",
        f"restrict_codecs, negotiated_codec, ForwardSender; {BENCH}",
        INSTANCE,
    ),
    Internal("aiortc.RTCRtpTransceiver", "_headerExtensions", "ForwardSender's ids", INSTANCE),
    Internal("aiortc.sdp.SessionDescription", "parse", "offer_media"),
    # ice.py
    Internal("aioice.ice", "get_host_addresses", "set_ice_addresses replaces it"),
    # fast_path.py
    Internal(_DTLS, "_tx_srtp", "SrtpUdpSink protects with it", INSTANCE),
    Internal(_DTLS, "_rx_srtp", f"{BENCH}: the lean viewer", INSTANCE),
    Internal("aioice.Connection", "_nominated", f"SrtpUdpSink's ICE pair; {BENCH}", INSTANCE),
    Internal(
        "aioice.ice.CandidatePair",
        "protocol",
        f"SrtpUdpSink's socket; {BENCH}",
        "set by aioice.ice.CandidatePair.__init__",
    ),
    Internal("aioice.ice.CandidatePair", "remote_addr", "SrtpUdpSink's destination"),
    Internal("aioice.ice.StunProtocol", "datagram_received", f"{BENCH}: the lean viewer"),
    Internal(_SENDER, "_ssrc", "ForwardSender writes the sender's SSRC", INSTANCE),
    Internal(_SENDER, "_rtx_ssrc", "ForwardSender writes the sender's RTX SSRC", INSTANCE),
    Internal(_SENDER, "_retransmit", "ForwardSender answers NACKs from its history"),
    Internal(_SENDER, SENDER_NTP_TIMESTAMP, "ForwardSender feeds sender reports", INSTANCE),
    Internal(_SENDER, SENDER_RTP_TIMESTAMP, "ForwardSender feeds sender reports", INSTANCE),
    Internal(_SENDER, SENDER_PACKET_COUNT, "ForwardSender feeds sender reports", INSTANCE),
    Internal(_SENDER, SENDER_OCTET_COUNT, "ForwardSender feeds sender reports", INSTANCE),
    Internal("pylibsrtp", "_binding", "SrtpUdpSink calls libsrtp itself"),
    Internal("pylibsrtp._binding", "ffi", "SrtpUdpSink's send buffer"),
    Internal("pylibsrtp._binding.lib", "srtp_protect", "SrtpUdpSink protects in place"),
    Internal("pylibsrtp.Session", "_srtp", "SrtpUdpSink passes its srtp_t", INSTANCE),
)


class AiortcInternalsError(RuntimeError):
    """An aiortc/aioice/pylibsrtp internal the media code relies on is missing."""


def check_internals() -> None:
    """Raise AiortcInternalsError naming every name of INTERNALS the installed releases lack.

    Builds a few unconnected aiortc objects (and a DTLS certificate): call it from the event
    loop, once when a node starts."""
    samples = _Samples()
    missing: list[str] = []
    for item in INTERNALS:
        try:
            found = _present(item, samples)
        except Exception as exc:  # a renamed class or a changed constructor
            missing.append(f"{item.owner}.{item.name} ({item.why}): {type(exc).__name__}: {exc}")
            continue
        if not found:
            missing.append(f"{item.owner}.{item.name} ({item.why})")
    if missing:
        raise AiortcInternalsError(
            f"the media server relies on internals that the installed {installed_versions()} "
            "lack (see media/aiortc_compat/internals.py): " + "; ".join(missing)
        )


def _present(item: Internal, samples: _Samples) -> bool:
    if item.checked == STATIC:
        return hasattr(resolve(item.owner), item.name)
    if item.checked == INSTANCE:
        return hasattr(samples.get(item.owner), item.name)
    setter = resolve(item.checked.removeprefix("set by "))
    return item.name in setter.__code__.co_names


def resolve(path: str) -> Any:
    """The module, class or function `path` names (its longest importable prefix, then getattr)."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for part in parts[cut:]:
            found = getattr(found, part)
        return found
    raise ImportError(f"no module in {path!r}")


class _Samples:
    """The objects INSTANCE names are checked on, built on first use as a peer connection builds
    them (nothing connects: no socket, no task)."""

    def __init__(self) -> None:
        self._built: dict[str, object] = {}
        self._builders: dict[str, Callable[[], object]] = {
            "aiortc.RTCIceTransport": lambda: RTCIceTransport(RTCIceGatherer(iceServers=[])),
            _DTLS: lambda: RTCDtlsTransport(
                self.get("aiortc.RTCIceTransport"), [RTCCertificate.generateCertificate()]
            ),
            _SENDER: lambda: RTCRtpSender("video", self.get(_DTLS)),
            _RECEIVER: lambda: RTCRtpReceiver("video", self.get(_DTLS)),
            "aiortc.RTCRtpTransceiver": lambda: RTCRtpTransceiver(
                "video", self.get(_RECEIVER), self.get(_SENDER)
            ),
            "aioice.Connection": lambda: aioice.Connection(ice_controlling=False),
            _JITTER: lambda: JitterBuffer(capacity=16),
            "pylibsrtp.Session": lambda: pylibsrtp.Session(
                pylibsrtp.Policy(key=bytes(30), ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
            ),
        }

    def get(self, owner: str) -> Any:
        if owner not in self._built:
            self._built[owner] = self._builders[owner]()
        return self._built[owner]
