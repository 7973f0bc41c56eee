"""The private aiortc attributes the other modules read or replace, named once."""

from __future__ import annotations

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
