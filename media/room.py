"""A room's media state: its publisher (if any), its viewers and a Forwarder per kind."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Literal, Protocol

from aiortc import RTCPeerConnection

from media.aiortc_compat import ForwardSender, ReceiverTap, packetize_once
from media.config import MediaConfig
from media.forwarder import Downtrack, Forwarder
from media.frames import EncodedFrame
from media.keyframes import KeyframeRequester, Send


class RoomTee(Protocol):
    """Where a room's frames also go (media worker processes), with the publisher's end."""

    def frame(self, room_id: str, frame: EncodedFrame) -> None: ...

    def publisher_ended(self, room_id: str) -> None: ...


@dataclass(eq=False)
class Session:
    """One WHIP or WHEP peer connection."""

    id: str
    room_id: str
    role: Literal["publisher", "viewer"]
    pc: RTCPeerConnection
    owner: str | None = None  # opaque to media: who may end the session (the adapter's user id)
    created_at: float = field(default_factory=time.monotonic)
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    connected_at: float = 0.0  # time.monotonic() when it connected
    closed: bool = False
    # publisher
    taps: dict[str, ReceiverTap] = field(default_factory=dict)
    epoch: int = 0
    live: bool = False
    relay: bool = False  # another node's stream (an edge's upstream): no live/ended events
    # viewer
    downtracks: dict[str, Downtrack] = field(default_factory=dict)
    senders: dict[str, ForwardSender] = field(default_factory=dict)  # fast send path
    subscribed: bool = False


class Room:
    """Fans the publisher's frames out; outlives publishers so viewers stay across a host rejoin."""

    def __init__(self, room_id: str, config: MediaConfig, tee: RoomTee | None = None) -> None:
        self.id = room_id
        self.tee = tee
        self.keyframes = KeyframeRequester(config.keyframe_interval_s)
        self.video = Forwarder(
            "video",
            gop_max_frames=config.gop_cache_frames,
            gop_max_bytes=config.gop_cache_bytes,
            request_keyframe=self.keyframes.request,
        )
        self.audio = Forwarder("audio")
        self.publisher: Session | None = None
        self.viewers: dict[str, Session] = {}
        self.video_codec: str | None = None  # the codec viewers negotiated or the host sent
        # Frames come from elsewhere (a media worker's channel from the node's ingest), not a
        # publisher session of this process: the room lives while the feed is open.
        self.fed = False
        self._epoch = 0

    def forwarder(self, kind: str) -> Forwarder:
        return self.video if kind == "video" else self.audio

    def on_frame(self, frame: EncodedFrame) -> None:
        if self.tee is not None:
            self.tee.frame(self.id, frame)
        # Cut RTP payloads once here: each viewer's writer only puts its header in front.
        self.forwarder(frame.kind).push(packetize_once(frame))

    def open_feed(self, request_keyframe: Send) -> None:
        """Take frames from a feed's `on_frame` calls; keyframe requests go to the feed."""
        self.fed = True
        self.keyframes.bind(request_keyframe)

    def close_feed(self) -> None:
        self.fed = False
        self.keyframes.bind(None)
        self.end_of_publisher()

    def end_of_publisher(self) -> None:
        """The frames' source changed or left: cached frames mean nothing to the next one."""
        self.video.end_of_publisher()
        self.audio.end_of_publisher()

    def next_epoch(self) -> int:
        self._epoch += 1
        return self._epoch

    def attach_publisher(self, session: Session) -> None:
        self.publisher = session
        tap = session.taps.get("video")
        self.keyframes.bind(tap.request_keyframe if tap is not None else None)

    def detach_publisher(self, session: Session) -> None:
        if self.publisher is session:
            self.publisher = None
            self.keyframes.bind(None)
            self.end_of_publisher()
            if self.tee is not None:
                self.tee.publisher_ended(self.id)

    def subscribe(self, session: Session) -> None:
        if session.subscribed or session.closed:
            return
        session.subscribed = True
        for kind, downtrack in session.downtracks.items():
            self.forwarder(kind).subscribe(downtrack)

    def unsubscribe(self, session: Session) -> None:
        for kind, downtrack in session.downtracks.items():
            self.forwarder(kind).unsubscribe(downtrack)
            downtrack.close()

    @property
    def empty(self) -> bool:
        return self.publisher is None and not self.viewers and not self.fed

    def close(self) -> None:
        self.keyframes.close()
