"""Every hook into aiortc/aioice/pylibsrtp internals lives here, pinned to the versions it was
checked on (version.py), one module per concern:

- receive.py: a tap in place of a receiver's decoder queue takes its assembled encoded frames;
- packer.py: a sender packetises forwarded frames through a preset packer, never encodes; viewers'
  PLI/FIR are rerouted to us;
- fast_path.py: a viewer's RTP written, SRTP-protected and sent without the sender's RTP loop;
- sdp.py: codecs a transceiver negotiated, what an offer asks for;
- ice.py: the node's ICE host addresses (aioice leaves loopback out);
- internals.py: the private names the others read or replace, checked when a node starts.

aiortc decodes what it receives and encodes what it sends; we forward instead.
"""

from media.aiortc_compat.fast_path import (
    FALLBACK_REASONS,
    ForwardSender,
    IdleTrack,
    SrtpUdpSink,
)
from media.aiortc_compat.ice import set_ice_addresses
from media.aiortc_compat.internals import AiortcInternalsError, check_internals
from media.aiortc_compat.packer import ForwardTrack, FramePacker, attach_sender, packetize_once
from media.aiortc_compat.receive import MarkerJitterBuffer, ReceiverTap, enlarge_receive_buffers
from media.aiortc_compat.sdp import negotiated_codec, offer_media, restrict_codecs
from media.aiortc_compat.version import check_aiortc_version

check_aiortc_version()

__all__ = [
    "FALLBACK_REASONS",
    "AiortcInternalsError",
    "ForwardSender",
    "ForwardTrack",
    "FramePacker",
    "IdleTrack",
    "MarkerJitterBuffer",
    "ReceiverTap",
    "SrtpUdpSink",
    "attach_sender",
    "check_aiortc_version",
    "check_internals",
    "enlarge_receive_buffers",
    "negotiated_codec",
    "offer_media",
    "packetize_once",
    "restrict_codecs",
    "set_ice_addresses",
]
