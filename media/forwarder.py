"""Pure forwarding: one Forwarder per room and kind fans frames out to one Downtrack per viewer.

No aiortc here, so loss, skips and late joins are tested without sockets.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import deque
from collections.abc import Callable

from media.frames import AUDIO_FRAME_TICKS, VIDEO_FRAME_TICKS, EncodedFrame


class DowntrackClosed(Exception):
    """The viewer left or the room closed: no more frames will come."""


class Downtrack:
    """One viewer's share of a room's track: a bounded queue and a continuous timeline.

    A viewer that falls behind does not hold frames for long: when its queue is full it drops what
    it has and waits for the next keyframe (video), or drops the oldest frame (audio).
    Timestamps are rebased so they stay monotonic across publisher changes.
    """

    def __init__(
        self,
        kind: str,
        max_queue: int,
        codec: str | None = None,
        on_need_keyframe: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kind = kind
        self.codec = codec  # what the viewer negotiated; frames of another codec are dropped
        self._max_queue = max_queue
        self._queue: deque[EncodedFrame] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._on_need_keyframe = on_need_keyframe
        self._clock = clock
        self._closed = False
        self._listener: Callable[[], None] | None = None
        self.waiting_keyframe = kind == "video"
        # timeline
        self._epoch: int | None = None
        self._offset = 0
        self._last_out: int | None = None
        self._step = VIDEO_FRAME_TICKS if kind == "video" else AUDIO_FRAME_TICKS
        # counters
        self.created_at = clock()
        self.first_frame_at: float | None = None
        self.frames_out = 0
        self.bytes_out = 0
        self.dropped = 0
        self.skips = 0

    @property
    def queued(self) -> int:
        return len(self._queue)

    def offer(self, frame: EncodedFrame) -> None:
        """Queue a frame for this viewer, never blocking the room."""
        if self._closed:
            return
        if self.codec is not None and frame.codec != self.codec:
            self.dropped += 1
            return
        if self.waiting_keyframe:
            if not frame.keyframe:
                self.dropped += 1
                return
            self.waiting_keyframe = False
        if len(self._queue) >= self._max_queue:
            if self.kind == "video":
                self.dropped += len(self._queue)
                self._queue.clear()
                self.skips += 1
                if not frame.keyframe:
                    self.dropped += 1
                    self.waiting_keyframe = True
                    if self._on_need_keyframe is not None:
                        self._on_need_keyframe()
                    return
            else:
                self._queue.popleft()
                self.dropped += 1
        self._queue.append(frame)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self._listener is not None:
            self._listener()

    def set_listener(self, listener: Callable[[], None] | None) -> None:
        """Call `listener` synchronously after each queued frame (a writer draining with `pop`)."""
        self._listener = listener

    def pop(self) -> tuple[EncodedFrame, int] | None:
        """The next queued frame and its timestamp on the viewer's timeline; None when empty."""
        if not self._queue:
            return None
        frame = self._queue.popleft()
        return frame, self._rebase_timestamp(frame)

    async def next(self) -> EncodedFrame:
        """The next frame for this viewer, its timestamp on the viewer's timeline."""
        while not self._queue:
            if self._closed:
                raise DowntrackClosed
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._rebase(self._queue.popleft())

    def _rebase(self, frame: EncodedFrame) -> EncodedFrame:
        return dataclasses.replace(frame, timestamp=self._rebase_timestamp(frame))

    def _rebase_timestamp(self, frame: EncodedFrame) -> int:
        if frame.epoch != self._epoch:
            # A new publisher starts its clock again: continue one frame after what we last sent.
            start = 0 if self._last_out is None else self._last_out + self._step
            self._offset = start - frame.timestamp
            self._epoch = frame.epoch
        timestamp = frame.timestamp + self._offset
        if self._last_out is not None and timestamp < self._last_out:
            # Out of order within an epoch (GOP cache overlap): never step the viewer's clock back.
            timestamp = self._last_out
        self._last_out = timestamp
        if self.first_frame_at is None:
            self.first_frame_at = self._clock()
        self.frames_out += 1
        self.bytes_out += len(frame.data)
        return timestamp

    def close(self) -> None:
        self._closed = True
        self._listener = None
        self._queue.clear()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    @property
    def closed(self) -> bool:
        return self._closed


class Forwarder:
    """A room's track: keeps the GOP cache and hands each frame to every viewer's Downtrack."""

    def __init__(
        self,
        kind: str,
        gop_max_frames: int = 60,
        gop_max_bytes: int = 8 << 20,
        request_keyframe: Callable[[], None] | None = None,
    ) -> None:
        self.kind = kind
        self._gop: list[EncodedFrame] = []
        self._gop_bytes = 0
        self._gop_max_frames = gop_max_frames
        self._gop_max_bytes = gop_max_bytes
        self._request_keyframe = request_keyframe
        self.downtracks: set[Downtrack] = set()
        self.codec: str | None = None
        self.frames_in = 0
        self.bytes_in = 0

    @property
    def gop(self) -> list[EncodedFrame]:
        return list(self._gop)

    def push(self, frame: EncodedFrame) -> None:
        """A frame from the publisher: cache it if it belongs to the current GOP, fan it out."""
        self.frames_in += 1
        self.bytes_in += len(frame.data)
        self.codec = frame.codec
        if self.kind == "video":
            self._cache(frame)
        for downtrack in self.downtracks:
            downtrack.offer(frame)

    def _cache(self, frame: EncodedFrame) -> None:
        if frame.keyframe:
            self._gop = [frame]
            self._gop_bytes = len(frame.data)
        elif self._gop:
            if (
                len(self._gop) >= self._gop_max_frames
                or self._gop_bytes + len(frame.data) > self._gop_max_bytes
            ):
                # Too long to replay to a newcomer: a fresh keyframe is asked for when one joins.
                self._gop = []
                self._gop_bytes = 0
            else:
                self._gop.append(frame)
                self._gop_bytes += len(frame.data)

    def subscribe(self, downtrack: Downtrack) -> None:
        """Add a viewer; for video, replay the cached GOP so it has a picture at once."""
        self.downtracks.add(downtrack)
        if self.kind != "video":
            return
        usable = [f for f in self._gop if downtrack.codec in (None, f.codec)]
        if usable:
            for frame in usable:
                downtrack.offer(frame)
        elif self._request_keyframe is not None:
            self._request_keyframe()

    def unsubscribe(self, downtrack: Downtrack) -> None:
        self.downtracks.discard(downtrack)

    def end_of_publisher(self) -> None:
        """The publisher left: its GOP means nothing to the next one."""
        self._gop = []
        self._gop_bytes = 0
