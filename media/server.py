"""The session API an HTTP adapter calls: publish (WHIP), play (WHEP), close; events and stats."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal

from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)

from media import aiortc_compat as compat
from media.admission import SETTLE_S, AdmissionLimits, Load, LoadGovernor, Reason
from media.config import MediaConfig
from media.errors import MediaError
from media.forwarder import Downtrack
from media.frames import EncodedFrame
from media.keyframes import Send
from media.room import Room, Session
from media.stats import MediaStats, add_counts
from media.workers.pool import IngestHooks, RemoteViewer, WorkerPool

logger = logging.getLogger(__name__)

AUDIO_CODECS = ("opus",)


@dataclass(frozen=True, slots=True)
class MediaEvent:
    """A room went live (its publisher connected) or ended (its publisher left); `closed`: a host's
    publishing session ended, whether or not it ever connected (after `ended` if it was live)."""

    kind: Literal["live", "ended", "closed"]
    room_id: str
    session_id: str


Listener = Callable[[MediaEvent], None]


class MediaServer:
    """WebRTC sessions and forwarding for every room of a node; no decoder or encoder runs.

    With `config.workers` > 0 the viewers' peer connections live in that many worker processes
    (media.workers) fed with the frames of this process's publishers; `start()` starts them.
    """

    def __init__(self, config: MediaConfig | None = None) -> None:
        self.config = config or MediaConfig()
        compat.set_ice_addresses(list(self.config.ice_addresses))
        self.rooms: dict[str, Room] = {}
        self.sessions: dict[str, Session] = {}
        self.workers: WorkerPool | None = None
        if self.config.workers > 0:
            self.workers = WorkerPool(
                self.config,
                IngestHooks(
                    request_keyframe=self._request_keyframe,
                    gop=self._gop,
                    viewer_ended=self._remote_viewer_ended,
                ),
            )
        # Called when a session of this process ends (a worker tells the node).
        self.session_closed: Callable[[Session], None] | None = None
        self._listeners: list[Listener] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._measuring = False
        self._totals = MediaStats()
        self._ttff: deque[float] = deque(maxlen=self.config.ttff_samples)
        # Viewer sessions per owner, here and on workers, those being answered included: counted
        # before the first await so a burst of offers from one owner cannot all pass the check.
        self._owned: Counter[str] = Counter()
        # Offers refused before aiortc parses them, by reason (`too_large`, `too_many_media`).
        self.offers_refused: Counter[str] = Counter()
        # Viewers refused as "full", by reason (media.admission.REASONS).
        self.admission_refusals: Counter[str] = Counter()
        self.governor: LoadGovernor | None = None
        if self.config.admission:
            self.governor = LoadGovernor(
                AdmissionLimits(
                    max_lag_s=self.config.admit_max_lag_s,
                    max_cpu=self.config.admit_max_cpu,
                    max_setups=self.config.admit_max_setups,
                ),
                self._pressure,
            )

    # -- events -------------------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        """Call `listener` on every MediaEvent (synchronously; it must not block)."""
        self._listeners.append(listener)

    def _emit(self, event: MediaEvent) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                logger.exception("media event listener failed on %s", event)

    # -- queries ------------------------------------------------------------------------------

    def is_live(self, room_id: str) -> bool:
        room = self.rooms.get(room_id)
        return room is not None and room.publisher is not None and room.publisher.live

    def publisher(self, room_id: str) -> Session | None:
        """The room's publisher session on this node (a host's, or a relay from another node)."""
        room = self.rooms.get(room_id)
        return room.publisher if room is not None else None

    def session(self, session_id: str) -> Session | RemoteViewer | None:
        """A session of this process, or a viewer's held by a worker."""
        session = self.sessions.get(session_id)
        if session is None and self.workers is not None:
            return self.workers.sessions.get(session_id)
        return session

    def viewer_count(self, room_id: str) -> int:
        """Viewers of a room, here and on workers, those being answered included."""
        room = self.rooms.get(room_id)
        local = len(room.viewers) if room is not None else 0
        return local + (self.workers.viewers_in(room_id) if self.workers is not None else 0)

    def stats(self) -> MediaStats:
        s = MediaStats(**{k: getattr(self._totals, k) for k in _TOTAL_FIELDS})
        s.rooms = len(self.rooms)
        s.ttff_seconds = list(self._ttff)
        s.fast_path_fallbacks = dict.fromkeys(compat.FALLBACK_REASONS, 0)
        add_counts(s.fast_path_fallbacks, self._totals.fast_path_fallbacks)
        for room in self.rooms.values():
            if room.publisher is not None:
                s.publishers += 1
                s.live_rooms += room.publisher.live
                for tap in room.publisher.taps.values():
                    s.packets_in += tap.packets
                    s.bytes_in += tap.bytes
            s.viewers += len(room.viewers)
            s.frames_in += room.video.frames_in + room.audio.frames_in
            s.keyframe_requests += room.keyframes.sent
            s.keyframe_requests_coalesced += room.keyframes.coalesced
            for viewer in room.viewers.values():
                for d in viewer.downtracks.values():
                    s.frames_out += d.frames_out
                    s.bytes_out += d.bytes_out
                    s.frames_dropped += d.dropped
                    s.viewer_skips += d.skips
        s.peer_connections = len(self.sessions)
        if self.workers is not None:
            self.workers.add_stats(s)
        return s

    # -- sessions -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Check the aiortc internals the forwarding relies on (AiortcInternalsError names any
        missing: the node refuses to start), then start the media workers, if any, and wait until
        they are ready."""
        compat.check_internals()
        self.measure()
        if self.workers is not None:
            await self.workers.start()

    def measure(self) -> None:
        """Start measuring this process's load for admission (with `config.admission`)."""
        if self.governor is not None and not self._measuring:
            self._measuring = True
            self.governor.start()

    def loads(self) -> dict[str, Load]:
        """The measured load of each process serving viewers: "node" (this one) and each media
        worker ("worker-N", its last report); empty without measured admission."""
        found: dict[str, Load] = {}
        if self.governor is not None:
            found["node"] = self.governor.load
        if self.workers is not None:
            found.update(self.workers.loads())
        return found

    @property
    def admitting(self) -> bool:
        """Whether a viewer's offer would pass the measured load now (the count aside)."""
        if self.governor is not None and not self.governor.load.admitting:
            return False
        if self.workers is not None:
            return self.workers.admitting
        return True

    def _pressure(self) -> tuple[int, int, int, int]:
        """(viewers, viewers whose cost is not measured yet, skips and backlog drops so far,
        frames queued) of this process."""
        viewers = queued = 0
        skips = self._totals.viewer_skips
        for room in self.rooms.values():
            for viewer in room.viewers.values():
                viewers += 1
                for d in viewer.downtracks.values():
                    skips += d.skips
                    queued += d.queued
        if self.workers is not None:
            skips += self.workers.backlog_drops
        setups, fresh = self._unsettled()
        return viewers, setups + fresh, skips, queued

    def _unsettled(self) -> tuple[int, int]:
        """Viewer sessions of this process (being answered or connecting, connected within the
        last `SETTLE_S`): those whose cost the measured CPU does not show yet."""
        setups = fresh = 0
        since = time.monotonic() - SETTLE_S
        for room in self.rooms.values():
            for viewer in room.viewers.values():
                if not viewer.connected.is_set():
                    setups += 1
                elif viewer.connected_at > since:
                    fresh += 1
        return setups, fresh

    async def publish(
        self, room_id: str, offer_sdp: str, owner: str | None = None
    ) -> tuple[str, str]:
        """Accept a host's WHIP offer; returns (session id, SDP answer)."""
        self._check_open()
        media = self._validate_offer(offer_sdp, wanted=("sendonly", "sendrecv"), what="send")
        room = self._room(room_id)
        if room.publisher is not None:
            raise MediaError("publisher_exists", f"room {room_id!r} already has a publisher")
        session = Session(
            id=_new_id(), room_id=room_id, role="publisher", pc=self._new_pc(), owner=owner
        )
        session.epoch = room.next_epoch()
        # Reserve the slot before the first await so a second WHIP POST gets 409.
        room.publisher = session
        try:
            await _set_offer(session.pc, offer_sdp)
            video_prefs = _preferred(room.video_codec, self.config.video_codecs)
            for transceiver in session.pc.getTransceivers():
                kind = transceiver.kind
                if (kind, "recvonly") in media or (kind, "inactive") in media:
                    continue
                prefs = video_prefs if kind == "video" else AUDIO_CODECS
                codec = compat.restrict_codecs(transceiver, prefs)
                if codec is None:
                    raise MediaError("unsupported_codec", f"no {'/'.join(prefs)} {kind} offered")
                transceiver.direction = "recvonly"
                session.taps[kind] = compat.ReceiverTap(
                    transceiver.receiver, kind, room.on_frame, session.epoch
                )
                if kind == "video":
                    room.video_codec = codec
            if not session.taps:
                raise MediaError("no_media", "the offer sends no audio or video")
            answer = await _answer(session.pc)
        except BaseException:
            room.detach_publisher(session)
            self._release_if_empty(room)
            await self._discard(session)
            raise
        room.attach_publisher(session)
        self._register(session)
        return session.id, answer

    def relay(self, room_id: str, pc: RTCPeerConnection, owner: str | None = None) -> str:
        """Make `pc` the room's publisher: a peer connection, already negotiated, that receives the
        room from another node (an edge's WHEP client of the origin); returns its session id.

        Its frames are forwarded as a host's would be, but it emits no live/ended events: the
        room's live state belongs to the origin.
        """
        self._check_open()
        room = self._room(room_id)
        if room.publisher is not None:
            raise MediaError("publisher_exists", f"room {room_id!r} already has a publisher")
        session = Session(
            id=_new_id(), room_id=room_id, role="publisher", pc=pc, owner=owner, relay=True
        )
        session.epoch = room.next_epoch()
        for transceiver in pc.getTransceivers():
            codec = compat.negotiated_codec(transceiver)
            if transceiver.direction not in ("recvonly", "sendrecv") or codec is None:
                continue
            session.taps[transceiver.kind] = compat.ReceiverTap(
                transceiver.receiver, transceiver.kind, room.on_frame, session.epoch
            )
            if transceiver.kind == "video":
                room.video_codec = codec
        if not session.taps:
            self._release_if_empty(room)
            raise MediaError("no_media", "the relayed connection receives no audio or video")
        room.attach_publisher(session)
        self._register(session)
        return session.id

    @property
    def viewer_total(self) -> int:
        """Viewers of every room, here and on workers, those being answered included."""
        local = sum(len(room.viewers) for room in self.rooms.values())
        return local + (self.workers.viewer_count if self.workers is not None else 0)

    async def play(
        self, room_id: str, offer_sdp: str, owner: str | None = None, *, beyond_limit: bool = False
    ) -> tuple[str, str]:
        """Accept a viewer's WHEP offer, before or after the host is live; (session id, answer).
        `beyond_limit`: admit even when full (an edge's upstream, which serves a crowd itself)."""
        self._check_open()
        limit = self.config.max_viewers
        if limit and not beyond_limit and self.viewer_total >= limit:
            raise self._full("ceiling", f"this node serves its limit of {limit} viewers")
        if self.governor is not None and not beyond_limit:
            reason = self.governor.refusal(*self._unsettled())
            if reason is not None:
                raise self._full(reason, _REFUSED[reason])
        per_owner = self.config.sessions_per_owner
        if per_owner and not beyond_limit and owner and self._owned[owner] >= per_owner:
            # A slot frees when a session ends, at the latest when an unconnected one expires.
            raise MediaError(
                "too_many_sessions",
                f"{owner!r} already has {per_owner} viewer sessions on this node; "
                "end one (DELETE its Location) first",
                retry_after=max(1, math.ceil(self.config.connect_timeout_s)),
            )
        media = self._validate_offer(offer_sdp, wanted=("recvonly", "sendrecv"), what="receive")
        if self.workers is not None:
            self._own(owner)
            try:
                return await self._play_on_worker(
                    self.workers, room_id, offer_sdp, owner, beyond_limit
                )
            except MediaError as exc:
                self._disown(owner)
                if exc.code == "full":
                    self.admission_refusals[exc.extra.get("reason", "workers")] += 1
                raise
            except BaseException:
                self._disown(owner)
                raise
        room = self._room(room_id)
        session = Session(
            id=_new_id(), room_id=room_id, role="viewer", pc=self._new_pc(), owner=owner
        )
        room.viewers[session.id] = session
        self._own(owner)
        try:
            await _set_offer(session.pc, offer_sdp)
            for transceiver in session.pc.getTransceivers():
                kind = transceiver.kind
                if kind in session.downtracks or (kind, "sendonly") in media:
                    continue
                if kind == "video":
                    prefs = _preferred(room.video_codec, self.config.video_codecs)
                else:
                    prefs = AUDIO_CODECS
                codec = compat.restrict_codecs(transceiver, prefs)
                if codec is None:
                    raise MediaError("unsupported_codec", f"no {'/'.join(prefs)} {kind} offered")
                if kind == "video" and room.video_codec is None:
                    room.video_codec = codec
                downtrack = Downtrack(
                    kind,
                    self.config.video_queue_frames
                    if kind == "video"
                    else self.config.audio_queue_frames,
                    codec=codec,
                    on_need_keyframe=room.keyframes.request,
                )
                session.downtracks[kind] = downtrack
                track: MediaStreamTrack
                if self.config.send_path == "fast":
                    track = compat.IdleTrack(kind)
                else:
                    track = compat.ForwardTrack(downtrack, self._record_ttff)
                transceiver.sender.replaceTrack(track)
                transceiver.direction = "sendonly"
                compat.attach_sender(transceiver.sender, room.keyframes.request)
            if not session.downtracks:
                raise MediaError("no_media", "the offer receives no audio or video")
            answer = await _answer(session.pc)
        except BaseException:
            room.viewers.pop(session.id, None)
            self._disown(owner)
            self._release_if_empty(room)
            await self._discard(session)
            raise
        self._register(session)
        return session.id, answer

    def _full(self, reason: Reason, detail: str) -> MediaError:
        self.admission_refusals[reason] += 1
        return MediaError("full", detail, retry_after=_RETRY_FULL_S, reason=reason)

    def sessions_of(self, owner: str) -> int:
        """Viewer sessions `owner` holds (here and on workers, those being answered included)."""
        return self._owned.get(owner, 0)

    def _own(self, owner: str | None) -> None:
        if owner is not None:
            self._owned[owner] += 1

    def _disown(self, owner: str | None) -> None:
        if owner is not None and self._owned[owner] > 0:
            self._owned[owner] -= 1
            if not self._owned[owner]:
                del self._owned[owner]

    async def close(self, session_id: str) -> None:
        """End a WHIP or WHEP session; MediaError session_not_found if there is none."""
        session = self.sessions.get(session_id)
        if session is None:
            if self.workers is not None and session_id in self.workers.sessions:
                await self.workers.close_session(session_id)
                return
            raise MediaError("session_not_found", f"no media session {session_id!r}")
        await self._end(session)

    async def shutdown(self) -> None:
        """Close every session (and stop the workers); the server accepts none after this."""
        self._closed = True
        if self.governor is not None:
            self.governor.stop()
        await asyncio.gather(
            *(self._end(s) for s in list(self.sessions.values())),
            *([self.workers.close()] if self.workers is not None else []),
            return_exceptions=True,
        )
        for task in list(self._tasks):
            task.cancel()
        for room in self.rooms.values():
            room.close()
        self.rooms.clear()

    # -- frames fed from elsewhere (in a media worker) ---------------------------------------

    def open_feed(self, room_id: str, request_keyframe: Send) -> Room:
        """Make `room_id` take frames through `Room.on_frame` from a feed rather than a publisher
        session (a worker's channel from the node's ingest); it lives until `close_feed`."""
        self._check_open()
        room = self._room(room_id)
        room.open_feed(request_keyframe)
        return room

    def close_feed(self, room_id: str) -> None:
        room = self.rooms.get(room_id)
        if room is not None:
            room.close_feed()
            self._release_if_empty(room)

    # -- viewers on workers ---------------------------------------------------------------------

    async def _play_on_worker(
        self,
        workers: WorkerPool,
        room_id: str,
        offer_sdp: str,
        owner: str | None,
        beyond_limit: bool,
    ) -> tuple[str, str]:
        # The room exists here too: its publisher, epochs and GOP are the node's.
        room = self._room(room_id)
        try:
            viewer, answer, codec = await workers.play(
                room_id, offer_sdp, owner, room.video_codec, beyond_limit=beyond_limit
            )
        finally:
            self._release_if_empty(room)
        room = self._room(room_id)
        if room.video_codec is None:
            room.video_codec = codec
        return viewer.id, answer

    def _remote_viewer_ended(self, viewer: RemoteViewer) -> None:
        self._disown(viewer.owner)
        room = self.rooms.get(viewer.room_id)
        if room is not None:
            self._release_if_empty(room)

    def _request_keyframe(self, room_id: str) -> None:
        room = self.rooms.get(room_id)
        if room is not None:
            room.keyframes.request()

    def _gop(self, room_id: str) -> list[EncodedFrame]:
        room = self.rooms.get(room_id)
        return room.video.gop if room is not None else []

    # -- internals ----------------------------------------------------------------------------

    def _validate_offer(
        self, sdp: str, wanted: tuple[str, ...], what: str
    ) -> list[tuple[str, str]]:
        # Bounded before aiortc parses it: its parser's work grows with lines and m-sections, and
        # a WHIP/WHEP session needs at most audio and video (plus what a browser adds).
        size, limit = len(sdp.encode("utf-8", "surrogatepass")), self.config.sdp_max_bytes
        if size > limit:
            self.offers_refused["too_large"] += 1
            raise MediaError("invalid_sdp", f"the offer has {size} bytes; at most {limit}")
        sections = sum(1 for line in sdp.split("\n") if line.startswith("m="))
        if sections > self.config.sdp_max_media:
            self.offers_refused["too_many_media"] += 1
            raise MediaError(
                "invalid_sdp",
                f"the offer has {sections} m-lines; at most {self.config.sdp_max_media}",
            )
        return _validate_offer(sdp, wanted, what)

    def _check_open(self) -> None:
        if self._closed:
            raise MediaError("closed", "the media server is shutting down")

    def _new_pc(self) -> RTCPeerConnection:
        # No public STUN server: candidates are the configured host addresses only.
        return RTCPeerConnection(RTCConfiguration(iceServers=[]))

    def _room(self, room_id: str) -> Room:
        room = self.rooms.get(room_id)
        if room is None:
            room = self.rooms[room_id] = Room(room_id, self.config, tee=self.workers)
        return room

    def _register(self, session: Session) -> None:
        self.sessions[session.id] = session

        @session.pc.on("connectionstatechange")
        def _on_state() -> None:
            state = session.pc.connectionState
            if state == "connected":
                self._on_connected(session)
            elif state in ("failed", "closed"):
                self._spawn(self._end(session))

        self._spawn(self._expire_unconnected(session))

    def _on_connected(self, session: Session) -> None:
        session.connected.set()
        session.connected_at = time.monotonic()
        room = self.rooms.get(session.room_id)
        if room is None or session.closed:
            return
        if session.role == "viewer":
            if self.config.send_path == "fast" and not self._attach_senders(session):
                self._spawn(self._end(session))
                return
            room.subscribe(session)
        elif room.publisher is session and not session.live:
            session.live = True
            for transceiver in session.pc.getTransceivers():
                compat.enlarge_receive_buffers(
                    transceiver.receiver, self.config.ingest_receive_buffer
                )
            if not session.relay:
                self._emit(MediaEvent("live", session.room_id, session.id))

    def _attach_senders(self, session: Session) -> bool:
        """Start the fast send path of each of a connected viewer's tracks; False if it failed."""
        for transceiver in session.pc.getTransceivers():
            downtrack = session.downtracks.get(transceiver.kind)
            if downtrack is None or transceiver.kind in session.senders:
                continue
            try:
                session.senders[transceiver.kind] = compat.ForwardSender(
                    transceiver, downtrack, self._record_ttff, on_fallback=self._fast_path_fell_back
                )
            except ConnectionError:
                logger.info("viewer %s connected without a usable transport", session.id)
                return False
        return True

    async def _expire_unconnected(self, session: Session) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(session.connected.wait(), self.config.connect_timeout_s)
            return
        logger.info("media session %s never connected, closing", session.id)
        if not session.closed:
            self._totals.unconnected_closed += 1
        await self._end(session)

    async def _end(self, session: Session) -> None:
        if session.closed:
            return
        session.closed = True
        self.sessions.pop(session.id, None)
        if session.role == "viewer":
            self._disown(session.owner)
        if self.session_closed is not None:
            self.session_closed(session)
        room = self.rooms.get(session.room_id)
        if room is not None:
            if session.role == "publisher":
                was_live = session.live and room.publisher is session
                room.detach_publisher(session)
                self._fold_publisher(session, room)
                if was_live and not session.relay:
                    self._emit(MediaEvent("ended", session.room_id, session.id))
                if not session.relay:
                    self._emit(MediaEvent("closed", session.room_id, session.id))
            else:
                room.unsubscribe(session)
                room.viewers.pop(session.id, None)
                self._fold_viewer(session)
            self._release_if_empty(room)
        await self._discard(session)

    def _release_if_empty(self, room: Room) -> None:
        remote = self.workers.viewers_in(room.id) if self.workers is not None else 0
        if room.empty and not remote and self.rooms.get(room.id) is room:
            room.close()
            self._totals.frames_in += room.video.frames_in + room.audio.frames_in
            self._totals.keyframe_requests += room.keyframes.sent
            self._totals.keyframe_requests_coalesced += room.keyframes.coalesced
            del self.rooms[room.id]

    async def _discard(self, session: Session) -> None:
        session.closed = True
        for sender in session.senders.values():
            sender.close()
        for downtrack in session.downtracks.values():
            downtrack.close()
        try:
            await session.pc.close()
        except Exception:
            logger.exception("closing peer connection of %s failed", session.id)

    def _fold_publisher(self, session: Session, room: Room) -> None:
        for tap in session.taps.values():
            self._totals.packets_in += tap.packets
            self._totals.bytes_in += tap.bytes

    def _fold_viewer(self, session: Session) -> None:
        for d in session.downtracks.values():
            self._totals.frames_out += d.frames_out
            self._totals.bytes_out += d.bytes_out
            self._totals.frames_dropped += d.dropped
            self._totals.viewer_skips += d.skips

    def _fast_path_fell_back(self, reason: str) -> None:
        add_counts(self._totals.fast_path_fallbacks, {reason: 1})

    def _record_ttff(self, downtrack: Downtrack) -> None:
        if downtrack.kind == "video" and downtrack.first_frame_at is not None:
            self._ttff.append(downtrack.first_frame_at - downtrack.created_at)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


_TOTAL_FIELDS = (
    "packets_in",
    "bytes_in",
    "frames_out",
    "bytes_out",
    "frames_dropped",
    "viewer_skips",
    "frames_in",
    "keyframe_requests",
    "keyframe_requests_coalesced",
    "unconnected_closed",
)


# Retry-After of a "full" refusal (seconds): about the time the measurement takes to clear.
_RETRY_FULL_S = 2
_REFUSED: dict[Reason, str] = {
    "lag": "this node's event loop is behind: it takes no more viewers for now",
    "cpu": "this node's core is busy: it takes no more viewers for now",
    "backlog": "frames back up towards this node's viewers: it takes no more for now",
    "setup": "this node is setting up as many viewers as it does at once",
    "headroom": "one more viewer would take this node past its CPU bound",
    "workers": "no media worker of this node takes viewers now",
    "ceiling": "this node serves its limit of viewers",
}


def _new_id() -> str:
    return uuid.uuid4().hex


def _preferred(first: str | None, configured: tuple[str, ...]) -> tuple[str, ...]:
    if first is None or first not in configured:
        return configured
    return (first, *(c for c in configured if c != first))


def _validate_offer(sdp: str, wanted: tuple[str, ...], what: str) -> list[tuple[str, str]]:
    if not sdp.lstrip().startswith("v=0"):
        raise MediaError("invalid_sdp", "the body is not an SDP offer")
    try:
        media = compat.offer_media(sdp)
    except ValueError as exc:
        raise MediaError("invalid_sdp", str(exc)) from None
    if not any(direction in wanted for _, direction in media):
        raise MediaError("no_media", f"the offer has no audio or video to {what}")
    return media


async def _set_offer(pc: RTCPeerConnection, sdp: str) -> None:
    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
    except MediaError:
        raise
    except Exception as exc:
        if "send parameters" in str(exc):
            raise MediaError("unsupported_codec", "no VP8/H.264 video or Opus audio") from None
        raise MediaError("invalid_sdp", f"the offer was refused: {exc}") from None


async def _answer(pc: RTCPeerConnection) -> str:
    try:
        answer = await pc.createAnswer()
        await pc.setLocalDescription(answer)
    except Exception as exc:
        # aiortc accepts some offers it cannot answer (an m-section it never made a transceiver
        # for fails with AttributeError): the offer's fault, not ours.
        logger.info("no answer to an offer: %r", exc)
        raise MediaError("invalid_sdp", "the offer cannot be answered") from None
    local = pc.localDescription
    assert local is not None
    return str(local.sdp)
