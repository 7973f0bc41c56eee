"""Edge upstreams: one WHEP pull per room from the origin, opened by the room's first viewer on this
node, shared by every later one, closed a grace period after the last leaves, and reopened by
itself when it breaks while viewers wait (the origin restarted).

The upstream is a WHEP client (`RTCConfiguration(iceServers=[])`, the node's ICE addresses) whose
peer connection `MediaServer.relay` makes the local room's publisher: frames are forwarded to local
viewers as a host's would be, and their keyframe requests reach the origin through the room's
coalescing `KeyframeRequester`, so at most one a second leaves this edge per room.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from urllib.parse import urljoin

import aiohttp
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from edge.config import EdgeSettings
from media import MediaError, MediaServer

log = logging.getLogger(__name__)

SDP = "application/sdp"


CHECK_S = 0.25  # how often the viewer count and the origin's instance are looked at
BACKOFF_MAX_S = 2.0


class UpstreamUnavailable(Exception):
    """The origin could not be reached in time (or refused the pull)."""

    def __init__(self, detail: str, status: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status  # the origin's HTTP status when it answered


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
        self._origin_started: float | None = None
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
        """Wait until the pull breaks, the origin restarts, or nobody watched for the grace."""
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
            current = self.manager.origin_started
            if None not in (current, self._origin_started) and current != self._origin_started:
                return "origin restarted"
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._broken.wait(), CHECK_S)

    # -- WHEP client ----------------------------------------------------------------------------

    async def _connect(self) -> None:
        m = self.manager
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self._pc = pc
        self._broken.clear()

        @pc.on("connectionstatechange")
        def _on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                self._broken.set()

        pc.addTransceiver("video", direction="recvonly")
        pc.addTransceiver("audio", direction="recvonly")
        self._origin_started = m.origin_started
        await pc.setLocalDescription(await pc.createOffer())
        assert pc.localDescription is not None
        url = f"{m.origin_url.rstrip('/')}/whep/{self.room_id}"
        headers = {"Content-Type": SDP, "Authorization": f"Bearer {m.token()}"}
        try:
            async with m.http.post(url, data=pc.localDescription.sdp, headers=headers) as r:
                body = await r.text()
                if r.status != 201:
                    raise UpstreamUnavailable(f"origin answered {r.status}: {body[:200]}", r.status)
                self._location = urljoin(url, r.headers.get("Location", ""))
            await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
            self.session_id = m.media.relay(self.room_id, pc, owner=m.node_id)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise UpstreamUnavailable(f"origin unreachable: {exc!r}") from None
        except (MediaError, ValueError) as exc:
            raise UpstreamUnavailable(f"bad answer from the origin: {exc}") from None
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
            # Tell the origin at once rather than leave it to notice the silence.
            headers = {"Authorization": f"Bearer {m.token()}"}
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
                async with m.http.delete(location, headers=headers) as r:
                    await r.read()


class UpstreamManager:
    """Every upstream of this edge node, one per room at most."""

    def __init__(
        self, media: MediaServer, config: EdgeSettings, origin_url: str, node_id: str, token: Token
    ) -> None:
        self.media = media
        self.config = config
        self.origin_url = origin_url
        self.node_id = node_id
        self.token = token
        self.upstreams: dict[str, Upstream] = {}
        self.origin_started: float | None = None  # the origin's instance, kept fresh by the node
        self.connects = 0
        self.failures = 0
        self.closing = False
        self._http: aiohttp.ClientSession | None = None

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        return self._http

    def forget(self, upstream: Upstream) -> None:
        if self.upstreams.get(upstream.room_id) is upstream:
            del self.upstreams[upstream.room_id]

    @contextlib.asynccontextmanager
    async def hold(self, room_id: str) -> AsyncIterator[Upstream]:
        """Keep `room_id`'s upstream open (opening it if needed) while a viewer joins; raises
        UpstreamUnavailable if it is not negotiated within `upstream_timeout_s`."""
        if self.closing:
            raise UpstreamUnavailable("the node is shutting down")
        upstream = self.upstreams.get(room_id)
        if upstream is None:
            # No await between the lookup and this: concurrent first viewers share one upstream.
            upstream = self.upstreams[room_id] = Upstream(self, room_id)
        upstream.pending += 1
        try:
            try:
                await asyncio.wait_for(upstream.ready.wait(), self.config.upstream_timeout_s)
            except TimeoutError:
                last = upstream.last_error
                raise UpstreamUnavailable(
                    last.detail if last else "the origin did not answer in time",
                    last.status if last else None,
                ) from None
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
