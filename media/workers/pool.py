"""The node's media worker processes: places viewers on the least loaded one, feeds each worker
the frames of the rooms it has viewers in, carries their keyframe requests back, and restarts a
worker that died (its viewers' sessions end; their pages retry)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from media.admission import Load
from media.config import MediaConfig
from media.errors import MediaError
from media.frames import EncodedFrame
from media.stats import VIEWER_COUNTERS, MediaStats, WorkerStats, add_counts, add_viewer_counters
from media.workers.channel import Control, frame_record
from media.workers.link import WorkerLink

logger = logging.getLogger(__name__)

# A worker that dies sooner than this after its start is restarted after a pause, not at once.
_QUICK_DEATH_S = 2.0
_RESTART_PAUSE_S = 1.0
_STOP_TIMEOUT_S = 1.5


@dataclass(frozen=True, slots=True)
class RemoteViewer:
    """A WHEP session a worker holds; what the node needs to route and authorise its DELETE."""

    id: str
    room_id: str
    owner: str | None
    worker: int
    role: Literal["viewer"] = "viewer"


@dataclass(frozen=True, slots=True)
class IngestHooks:
    """What the pool asks of the node's ingest (the MediaServer that owns it)."""

    request_keyframe: Callable[[str], None]  # room id: coalesced PLI to the room's publisher
    gop: Callable[[str], list[EncodedFrame]]  # room id: its cached GOP, for a worker joining it
    viewer_ended: Callable[[RemoteViewer], None]


class WorkerPool:
    """`config.workers` worker processes serving this node's viewers; also the rooms' RoomTee."""

    def __init__(self, config: MediaConfig, hooks: IngestHooks) -> None:
        self.config = config
        self._hooks = hooks
        self.links: list[WorkerLink | None] = [None] * config.workers
        self.sessions: dict[str, RemoteViewer] = {}
        self.restarts = [0] * config.workers
        # room id -> the links fed its frames, with how many of that room's viewers each holds
        self._members: dict[str, Counter[WorkerLink]] = {}
        self._ended_early: set[str] = set()
        self._retired: Counter[str] = Counter()  # counters of workers that ended
        self._retired_dropped = [0] * config.workers
        self._retired_fallbacks: dict[str, int] = {}
        self._changed = asyncio.Event()  # set on each change: a worker ready, ended, reporting
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start every worker; returns when all are ready (one that fails is retried later)."""
        started = [asyncio.get_running_loop().create_future() for _ in self.links]
        self._tasks = [
            asyncio.ensure_future(self._supervise(i, started[i])) for i in range(len(self.links))
        ]
        await asyncio.gather(*started)

    async def _supervise(self, index: int, started: asyncio.Future[None]) -> None:
        while True:
            link = WorkerLink(index, self.config, self._on_notice)
            self.links[index] = link
            try:
                await link.start()
                logger.info("media worker %d ready (pid %s)", index, link.pid)
                self._changed.set()
            except MediaError:
                pass  # logged by the link; started again below
            except Exception:
                logger.exception("media worker %d could not be started", index)
                link.closed.set()
            finally:
                if not started.done():
                    started.set_result(None)
            await link.closed.wait()
            self._lost(link)
            self._changed.set()
            if self._closing:
                return
            await link.stop(_STOP_TIMEOUT_S)  # reap it
            self.restarts[index] += 1
            logger.warning("media worker %d (pid %s) ended; restarting", index, link.pid)
            if time.monotonic() - link.started_at < _QUICK_DEATH_S:
                await asyncio.sleep(_RESTART_PAUSE_S)

    async def close(self) -> None:
        """Stop every worker (their viewers' sessions end) within about a second and a half."""
        self._closing = True
        links = [link for link in self.links if link is not None]
        await asyncio.gather(*(link.stop(_STOP_TIMEOUT_S) for link in links))
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for link in links:
            self._lost(link)

    def _lost(self, link: WorkerLink) -> None:
        """A worker's channel closed: its sessions are over, its counters retire."""
        for room_id, members in list(self._members.items()):
            members.pop(link, None)
            if not members:
                del self._members[room_id]
        for viewer in [v for v in self.sessions.values() if self.links[v.worker] is link]:
            del self.sessions[viewer.id]
            self._hooks.viewer_ended(viewer)
        link.viewers = 0
        if link.stats:
            for name in (*VIEWER_COUNTERS, "keyframe_requests_coalesced"):
                self._retired[name] += int(link.stats.get(name, 0))
            add_counts(self._retired_fallbacks, link.stats.get("fast_path_fallbacks", {}))
            link.stats = {}
        self._retired["viewer_skips"] += link.skips
        self._retired_dropped[link.index] += link.frames_dropped
        link.frames_dropped = link.skips = 0

    # -- viewers ------------------------------------------------------------------------------

    async def play(
        self,
        room_id: str,
        offer_sdp: str,
        owner: str | None,
        video_codec: str | None,
        *,
        beyond_limit: bool = False,
    ) -> tuple[RemoteViewer, str, str | None]:
        """Have the least loaded worker that admits viewers answer a WHEP offer: (session, SDP
        answer, video codec). A worker that refuses ("full": its measured load) is passed over
        for the next; when every one refuses, so does this."""
        refused: set[WorkerLink] = set()
        while True:
            link = await self._pick(refused, beyond_limit)
            try:
                return await self._play_on(
                    link, room_id, offer_sdp, owner, video_codec, beyond_limit
                )
            except MediaError as exc:
                if exc.code != "full":
                    raise
                # Its report said it admits, its own check says no: it refuses until it reports.
                link.refusing = True
                refused.add(link)
                if not any(other not in refused for other in self._usable()):
                    raise

    async def _play_on(
        self,
        link: WorkerLink,
        room_id: str,
        offer_sdp: str,
        owner: str | None,
        video_codec: str | None,
        beyond_limit: bool,
    ) -> tuple[RemoteViewer, str, str | None]:
        self._join(room_id, link)
        try:
            reply = await link.request(
                {
                    "op": "play",
                    "room": room_id,
                    "offer": offer_sdp,
                    "owner": owner,
                    "codec": video_codec,
                    "beyond_limit": beyond_limit,
                }
            )
        except BaseException:
            self._leave(room_id, link)
            raise
        viewer = RemoteViewer(reply["session"], room_id, owner, link.index)
        if link.closed.is_set() or viewer.id in self._ended_early:
            self._ended_early.discard(viewer.id)
            self._leave(room_id, link)
            raise MediaError("closed", "the media worker ended the session at once")
        self.sessions[viewer.id] = viewer
        return viewer, reply["answer"], reply.get("codec")

    async def close_session(self, session_id: str) -> None:
        """End a worker-held session; MediaError session_not_found if there is none."""
        viewer = self.sessions.get(session_id)
        link = self.links[viewer.worker] if viewer is not None else None
        if viewer is None or link is None:
            raise MediaError("session_not_found", f"no media session {session_id!r}")
        with contextlib.suppress(MediaError):
            # The worker's "ended" notice comes first; if the worker is gone so is the session.
            await link.request({"op": "close", "session": session_id})
        self._drop(session_id)

    def viewers_in(self, room_id: str) -> int:
        """Viewers of `room_id` on workers, those being answered included."""
        members = self._members.get(room_id)
        return sum(members.values()) if members else 0

    @property
    def viewer_count(self) -> int:
        return sum(link.viewers for link in self.links if link is not None)

    async def _pick(self, refused: set[WorkerLink], beyond_limit: bool) -> WorkerLink:
        """The usable worker with the fewest viewers among those that admit viewers (by their
        last report; any with `beyond_limit`), `refused` left out; waits a little for one being
        restarted. MediaError "full" when none admits."""
        try:
            async with asyncio.timeout(self.config.worker_start_timeout_s):
                await self.until(lambda: self._closing or any(self._usable()))
        except TimeoutError:
            raise MediaError("closed", "no media worker is running") from None
        if self._closing:
            raise MediaError("closed", "the media server is shutting down")
        usable = [link for link in self._usable() if link not in refused]
        admitting = usable if beyond_limit else [link for link in usable if link.admitting]
        if not admitting:
            reasons = [link.load.reason for link in usable if link.load.reason is not None]
            raise MediaError(
                "full",
                "no media worker of this node takes viewers now",
                retry_after=2,
                reason=reasons[0] if reasons else "workers",
            )
        return min(admitting, key=lambda link: (link.viewers, link.index))

    def loads(self) -> dict[str, Load]:
        """Each running worker's last reported load (those that report one)."""
        return {
            f"worker-{link.index}": link.load
            for link in self.links
            if link is not None and link.usable and link.stats
        }

    @property
    def admitting(self) -> bool:
        """Whether some running worker admits viewers (by its last report)."""
        return any(link.admitting for link in self._usable())

    @property
    def backlog_drops(self) -> int:
        """Frames not sent to workers that were behind, so far (the node's backlog signal)."""
        return sum(self._retired_dropped) + sum(
            link.frames_dropped for link in self.links if link is not None
        )

    def _usable(self) -> list[WorkerLink]:
        return [link for link in self.links if link is not None and link.usable]

    async def until(self, condition: Callable[[], bool]) -> None:
        """Return once `condition()` holds, re-checked when a worker starts, ends or reports."""
        while not condition():
            self._changed.clear()
            await self._changed.wait()

    def _join(self, room_id: str, link: WorkerLink) -> None:
        members = self._members.setdefault(room_id, Counter())
        first = link not in members
        members[link] += 1
        link.viewers += 1
        if first:
            # The room's GOP first, so the worker's viewers get a picture at once.
            link.send({"op": "feed", "room": room_id})
            for frame in self._hooks.gop(room_id):
                link.send_frame(room_id, frame, frame_record(room_id, frame))

    def _leave(self, room_id: str, link: WorkerLink) -> None:
        members = self._members.get(room_id)
        if members is None or link not in members:
            return  # the worker ended meanwhile
        link.viewers -= 1
        members[link] -= 1
        if members[link] <= 0:
            del members[link]
            link.forget_room(room_id)
            link.send({"op": "unfeed", "room": room_id})
            if not members:
                del self._members[room_id]

    def _drop(self, session_id: str) -> None:
        viewer = self.sessions.pop(session_id, None)
        if viewer is None:
            return
        link = self.links[viewer.worker]
        if link is not None:
            self._leave(viewer.room_id, link)
        self._hooks.viewer_ended(viewer)

    # -- RoomTee: frames from the ingest -------------------------------------------------------

    def frame(self, room_id: str, frame: EncodedFrame) -> None:
        members = self._members.get(room_id)
        if not members:
            return
        record = frame_record(room_id, frame)  # once, whatever the number of workers
        for link in members:
            if link.send_frame(room_id, frame, record):
                self._hooks.request_keyframe(room_id)

    def publisher_ended(self, room_id: str) -> None:
        for link in self._members.get(room_id, ()):
            link.send({"op": "publisher_end", "room": room_id})

    # -- notices from workers -----------------------------------------------------------------

    def _on_notice(self, link: WorkerLink, message: Control) -> None:
        self._changed.set()
        op = message.get("op")
        if op == "keyframe":
            self._hooks.request_keyframe(message["room"])
        elif op == "log":
            logging.getLogger(message.get("logger", __name__)).log(
                message.get("level", logging.INFO),
                "media worker %d: %s",
                link.index,
                message.get("message", ""),
            )
        elif op == "ended":
            session_id = message["session"]
            if session_id in self.sessions:
                self._drop(session_id)
            else:
                # Its play reply is still on its way to the waiting request.
                self._ended_early.add(session_id)
                if len(self._ended_early) > 10_000:
                    self._ended_early.clear()

    # -- stats ------------------------------------------------------------------------------------

    def add_stats(self, total: MediaStats) -> None:
        """Add the workers' viewers and counters (their last reports) into the node's `total`."""
        for name, value in self._retired.items():
            setattr(total, name, getattr(total, name) + value)
        add_counts(total.fast_path_fallbacks, self._retired_fallbacks)
        for i, link in enumerate(self.links):
            dropped = self._retired_dropped[i]
            if link is not None:
                add_viewer_counters(total, link.stats)
                dropped += link.frames_dropped
                total.viewer_skips += link.skips
                total.ttff_seconds.extend(link.stats.get("ttff_seconds", ()))
            total.frames_dropped += dropped
            total.workers.append(
                WorkerStats(
                    index=i,
                    pid=link.pid if link is not None else None,
                    viewers=link.viewers if link is not None else 0,
                    frames_dropped=dropped,
                    restarts=self.restarts[i],
                )
            )
        total.viewers += self.viewer_count
