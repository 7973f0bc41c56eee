"""Upstreams: one WHEP pull per room from the node that holds the room's publisher (its source in
`edge.sources`; on an edge without one, the configured origin), opened by the room's first viewer
on this node, shared by every later one, closed a grace period after the last leaves, and reopened
by itself when it breaks while viewers wait (the source restarted or moved). A node never pulls
from itself: when the room's source is this node, the upstream ends and viewers are served here.

The upstream is a WHEP client (`RTCConfiguration(iceServers=[])`, the node's ICE addresses) whose
peer connection `MediaServer.relay` makes the local room's publisher: frames are forwarded to local
viewers as a host's would be, and their keyframe requests reach the source through the room's
coalescing `KeyframeRequester`, so at most one a second leaves this node per room.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urljoin

import aiohttp
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from core.store import STORE_ERRORS
from edge.config import EdgeSettings
from edge.registry import NodeRecord
from edge.sources import RoomSources
from media import MediaError, MediaServer

log = logging.getLogger(__name__)

SDP = "application/sdp"


CHECK_S = 0.25  # how often the viewer count and the source's instance are looked at
BACKOFF_MAX_S = 2.0


class UpstreamUnavailable(Exception):
    """The source could not be reached in time (or refused the pull); `local`: there is nothing
    to pull, the room's source is this node."""

    def __init__(self, detail: str, status: int | None = None, *, local: bool = False) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status  # the source's HTTP status when it answered
        self.local = local


class SourceIsHere(Exception):
    """The room's publisher is on this node: nothing to pull."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where a room is pulled from: its source node, or the configured origin (`node_id` None)."""

    url: str
    node_id: str | None = None


HERE = Target("")  # in `UpstreamManager.targets`: the room's source is this node

Token = Callable[[], str]


class Upstream:
    """The pull of one room; lives in a task of its own."""

    def __init__(self, manager: UpstreamManager, room_id: str) -> None:
        self.manager = manager
        self.room_id = room_id
        self.ready = asyncio.Event()  # negotiated: viewers may be answered
        self.pending = 0  # viewers between their WHEP offer and their session
        self.connects = 0
        self.last_error: UpstreamUnavailable | None = None
        self.session_id: str | None = None
        self._pc: RTCPeerConnection | None = None
        self._location: str | None = None
        self._broken = asyncio.Event()
        self.target: Target | None = None  # where the current connection pulls from
        self.local = False  # ended because the room's source is this node
        self._target_started: float | None = None
        self.task = asyncio.ensure_future(self._run())
        self.task.set_name(f"upstream-{room_id}")

    # -- lifecycle ----------------------------------------------------------------------------

    async def _run(self) -> None:
        cfg = self.manager.config
        failures = 0
        try:
            while failures <= cfg.upstream_retries:
                try:
                    await self._connect()
                    failures = 0
                    reason = await self._hold()
                except SourceIsHere:
                    self.local = True
                    self.manager.forget(self)
                    await self._disconnect()
                    log.info("upstream %s closed (the source is this node)", self.room_id)
                    return
                except UpstreamUnavailable as exc:
                    self.last_error = exc
                    self.manager.failures += 1
                    reason = f"failed: {exc.detail}"
                if reason == "idle" or self.manager.closing or not self._wanted():
                    self.manager.forget(self)
                    await self._disconnect()
                    log.info("upstream %s closed (%s)", self.room_id, reason)
                    return
                await self._disconnect()
                failures += 1
                log.info("upstream %s lost (%s), reconnect #%d", self.room_id, reason, failures)
                await asyncio.sleep(min(BACKOFF_MAX_S, 0.05 * 2**failures))
            log.warning("upstream %s gave up after %d attempts", self.room_id, failures)
        finally:
            self.manager.forget(self)
            await self._disconnect()

    def _viewers(self) -> int:
        return self.manager.media.viewer_count(self.room_id)

    def _wanted(self) -> bool:
        return self.pending > 0 or self._viewers() > 0

    async def _hold(self) -> str:
        """Wait until the pull breaks, the source restarts or moves, or nobody watched for the
        grace."""
        cfg = self.manager.config
        idle_since: float | None = None
        while True:
            if self._broken.is_set():
                return "connection closed"
            if self._wanted():
                idle_since = None
            else:
                now = time.monotonic()
                idle_since = idle_since or now
                if now - idle_since >= cfg.upstream_grace_s:
                    return "idle"
            current = self.manager.started_of(self.target)
            if None not in (current, self._target_started) and current != self._target_started:
                return "source restarted"
            # None: no source is registered now (the host stopped); the pull stays as it is.
            wanted = self.manager.targets.get(self.room_id)
            if wanted is HERE:
                return "the source is this node"
            if wanted is not None and wanted != self.target:
                return "source moved"
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._broken.wait(), CHECK_S)

    # -- WHEP client ----------------------------------------------------------------------------

    async def _connect(self) -> None:
        m = self.manager
        try:
            target = await m.target(self.room_id)
        except STORE_ERRORS as exc:
            raise UpstreamUnavailable(f"the room's source is unknown: {exc}") from None
        if target is None:
            raise UpstreamUnavailable("no node publishes the room")
        m.targets[self.room_id] = self.target = target
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self._pc = pc
        self._broken.clear()

        @pc.on("connectionstatechange")
        def _on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                self._broken.set()

        pc.addTransceiver("video", direction="recvonly")
        pc.addTransceiver("audio", direction="recvonly")
        self._target_started = m.started_of(target)
        await pc.setLocalDescription(await pc.createOffer())
        assert pc.localDescription is not None
        url = f"{target.url.rstrip('/')}/whep/{self.room_id}"
        headers = {"Content-Type": SDP, "Authorization": f"Bearer {m.token()}"}
        try:
            async with m.http.post(url, data=pc.localDescription.sdp, headers=headers) as r:
                body = await r.text()
                if r.status != 201:
                    raise UpstreamUnavailable(f"source answered {r.status}: {body[:200]}", r.status)
                self._location = urljoin(url, r.headers.get("Location", ""))
            await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
            self.session_id = m.media.relay(self.room_id, pc, owner=m.node_id)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise UpstreamUnavailable(f"source unreachable: {exc!r}") from None
        except MediaError as exc:
            if exc.code == "publisher_exists":
                raise SourceIsHere from None  # a host published here meanwhile
            raise UpstreamUnavailable(f"bad answer from the source: {exc}") from None
        except ValueError as exc:
            raise UpstreamUnavailable(f"bad answer from the source: {exc}") from None
        self.connects += 1
        m.connects += 1
        self.ready.set()

    async def _disconnect(self) -> None:
        self.ready.clear()
        session_id, pc, location = self.session_id, self._pc, self._location
        self.session_id = self._pc = self._location = None
        m = self.manager
        if session_id is not None and m.media.session(session_id) is not None:
            with contextlib.suppress(MediaError):
                await m.media.close(session_id)  # closes pc too
        elif pc is not None:
            await pc.close()
        if location is not None and not m.http.closed:
            # Tell the source at once rather than leave it to notice the silence.
            headers = {"Authorization": f"Bearer {m.token()}"}
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
                async with m.http.delete(location, headers=headers) as r:
                    await r.read()


class UpstreamManager:
    """Every upstream of this node, one per room at most. `fallback_url`: where a room without a
    registered source is pulled from (an edge's configured origin); None on other nodes."""

    def __init__(
        self,
        media: MediaServer,
        config: EdgeSettings,
        sources: RoomSources,
        node_id: str,
        token: Token,
        fallback_url: str | None = None,
    ) -> None:
        self.media = media
        self.config = config
        self.sources = sources
        self.fallback_url = fallback_url
        self.node_id = node_id
        self.token = token
        self.upstreams: dict[str, Upstream] = {}
        # Kept fresh by the node's watch (`refresh`): every node's instance, by id and by URL,
        # and where each pulled room should come from now.
        self.started: dict[str, float] = {}
        self.started_by_url: dict[str, float] = {}
        self.targets: dict[str, Target | None] = {}
        self.connects = 0
        self.failures = 0
        self.closing = False
        self._http: aiohttp.ClientSession | None = None

    async def target(self, room_id: str) -> Target | None:
        """Where `room_id` is pulled from now; None when nothing is to be pulled; SourceIsHere
        when this node holds its publisher."""
        source = await self.sources.get(room_id)
        if source is not None:
            if source.node_id == self.node_id:
                raise SourceIsHere
            return Target(source.url, source.node_id)
        return Target(self.fallback_url) if self.fallback_url else None

    def started_of(self, target: Target | None) -> float | None:
        """The instance (registry `started_at`) of the node `target` names, if it is listed."""
        if target is None:
            return None
        if target.node_id is not None:
            return self.started.get(target.node_id)
        return self.started_by_url.get(target.url.rstrip("/"))

    async def refresh(self, nodes: Iterable[NodeRecord]) -> None:
        """Take in the registry's records and every pulled room's current source; open the
        upstream of a room whose viewers joined here before its host published elsewhere."""
        records = list(nodes)
        self.started = {n.node_id: n.started_at for n in records}
        self.started_by_url = {n.url.rstrip("/"): n.started_at for n in records}
        for room_id in list(self.upstreams):
            try:
                self.targets[room_id] = await self.target(room_id)
            except SourceIsHere:
                self.targets[room_id] = HERE
        for room_id in list(self.targets):
            if room_id not in self.upstreams:
                del self.targets[room_id]
        for room_id in list(self.media.rooms):
            if (
                self.closing
                or room_id in self.upstreams
                or self.media.publisher(room_id) is not None
                or not self.media.viewer_count(room_id)
            ):
                continue
            with contextlib.suppress(SourceIsHere):
                if await self.target(room_id) is not None:
                    self.ensure(room_id)

    def ensure(self, room_id: str) -> Upstream:
        """The room's upstream, opened if there is none."""
        upstream = self.upstreams.get(room_id)
        if upstream is None:
            upstream = self.upstreams[room_id] = Upstream(self, room_id)
        return upstream

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        return self._http

    def forget(self, upstream: Upstream) -> None:
        if self.upstreams.get(upstream.room_id) is upstream:
            del self.upstreams[upstream.room_id]
            self.targets.pop(upstream.room_id, None)

    @contextlib.asynccontextmanager
    async def hold(self, room_id: str) -> AsyncIterator[Upstream]:
        """Keep `room_id`'s upstream open (opening it if needed) while a viewer joins; raises
        UpstreamUnavailable if it is not negotiated within `upstream_timeout_s` (`local` when it
        ended because the room's source is this node)."""
        if self.closing:
            raise UpstreamUnavailable("the node is shutting down")
        # No await between the lookup and this: concurrent first viewers share one upstream.
        upstream = self.ensure(room_id)
        upstream.pending += 1
        try:
            ready = asyncio.ensure_future(upstream.ready.wait())
            try:
                await asyncio.wait(
                    (ready, upstream.task),
                    timeout=self.config.upstream_timeout_s,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                ready.cancel()
            if not upstream.ready.is_set():
                if upstream.local:
                    raise UpstreamUnavailable("the room's source is this node", local=True)
                last = upstream.last_error
                raise UpstreamUnavailable(
                    last.detail if last else "the source did not answer in time",
                    last.status if last else None,
                )
            yield upstream
        finally:
            upstream.pending -= 1

    def ready_count(self) -> int:
        return sum(1 for u in self.upstreams.values() if u.ready.is_set())

    async def close(self) -> None:
        self.closing = True
        tasks = [u.task for u in self.upstreams.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.close()
