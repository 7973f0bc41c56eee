"""Thin HTTP adapter for media: WHIP (RFC 9725) ingest and WHEP playback over `media.MediaServer`.

Routes carry SDP only; tokens, room existence, the room's `live` flag, the Socket.IO notice and
metrics are the kernel's business and live here, so `media` stays free of HTTP and Redis. A WHIP
session makes this node the room's source (`edge.sources`) for as long as it lives, so viewers on
other nodes can pull the room from here; a room has one host session across all nodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from core.errors import DomainError, unknown_room
from core.store import STORE_ERRORS
from edge.sources import RoomSources, Source
from live.http.common import claims_of, unknown_charset
from live.node import NODE, Node
from media import MediaEvent, MediaServer
from media.errors import MediaError

log = logging.getLogger(__name__)

MEDIA = web.AppKey("media", MediaServer)


@dataclass
class Publishing:
    """This node's claims on the rooms its hosts publish."""

    sources: RoomSources
    claiming: set[str] = field(default_factory=set)  # rooms whose WHIP is being answered here
    tokens: dict[str, tuple[str, str]] = field(default_factory=dict)  # session -> room, token


PUBLISHING = web.AppKey("publishing", Publishing)
SOURCES = web.AppKey("sources", RoomSources)
SDP = "application/sdp"

routes = web.RouteTableDef()
# Refusals of a WHEP offer by a limit, counted by code on /metrics (live_whep_refused_total).
LIMIT_CODES = frozenset({"full", "too_many_sessions"})


def setup(app: web.Application, node: Node) -> MediaServer:
    """Add the WHIP/WHEP routes, the media metrics and the live/ended notices to `app`."""
    media = MediaServer(node.settings.media.config())
    app[MEDIA] = media
    sources = app[SOURCES] = RoomSources(
        node.redis,
        node_id=node.settings.server.node_id,
        url=lambda: node.settings.server.public_url,
        heartbeat_s=node.settings.edge.node_heartbeat_s,
        ttl_s=node.settings.edge.node_ttl_s,
    )
    publishing = app[PUBLISHING] = Publishing(sources)
    app.add_routes(routes)
    node.metrics.registry.register(MediaCollector(media))
    tasks: set[asyncio.Task[None]] = set()

    def on_event(event: MediaEvent) -> None:
        if event.kind == "closed":
            claim = publishing.tokens.pop(event.session_id, None)
            if claim is None:
                return
            task = asyncio.ensure_future(_release(sources, *claim))
        else:
            task = asyncio.ensure_future(_announce(node, event))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    media.add_listener(on_event)

    async def start(app: web.Application) -> None:
        await media.start()
        await sources.start()

    app.on_startup.append(start)

    async def shutdown(app: web.Application) -> None:
        await media.shutdown()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await sources.stop()

    app.on_shutdown.append(shutdown)
    return media


async def _announce(node: Node, event: MediaEvent) -> None:
    live = event.kind == "live"
    try:
        await node.rooms.set_live(event.room_id, live)
        await node.chat.emit(event.room_id, "stream", {"room": event.room_id, "live": live})
    except Exception:
        log.exception("announcing %s of room %s failed", event.kind, event.room_id)


async def _release(sources: RoomSources, room_id: str, token: str) -> None:
    try:
        await sources.release(room_id, token)
    except STORE_ERRORS as exc:
        # The key expires with its TTL, no longer refreshed.
        log.warning("room %s: source not released: %s", room_id, exc)


def already_live(room_id: str, where: Source) -> DomainError:
    return DomainError(
        "already_live",
        f"room {room_id!r} is live on node {where.node_id} ({where.url}): end that session first",
        node_id=where.node_id,
        url=where.url,
    )


async def _offer(request: web.Request) -> str:
    if request.content_type != SDP:
        raise DomainError("unsupported_media_type", f"the body must be {SDP}")
    limit = request.app[MEDIA].config.sdp_max_bytes
    if request.content_length is not None and request.content_length > limit:
        # Refused unread (MediaServer checks the size of what it is given again).
        request.app[MEDIA].offers_refused["too_large"] += 1
        raise DomainError(
            "invalid_sdp", f"the offer has {request.content_length} bytes; at most {limit}"
        )
    try:
        return await request.text()
    except LookupError:
        raise unknown_charset(request.charset) from None
    except UnicodeError:
        raise DomainError("invalid_sdp", "the SDP offer is not UTF-8 text") from None


async def _known_room(request: web.Request) -> str:
    room_id = request.match_info["room"]
    if not await request.app[NODE].rooms.exists(room_id):
        raise unknown_room(room_id)
    return room_id


def _answer(answer: str, location: str) -> web.Response:
    return web.Response(status=201, text=answer, content_type=SDP, headers={"Location": location})


@routes.post("/whip/{room}")
async def whip(request: web.Request) -> web.Response:
    claims = claims_of(request)
    room_id = request.match_info["room"]
    if claims.role != "host" or not claims.in_room(room_id):
        raise DomainError("forbidden", "publishing needs a host token for this room")
    await _known_room(request)
    offer = await _offer(request)
    media, publishing = request.app[MEDIA], request.app[PUBLISHING]
    sources = publishing.sources
    current = media.publisher(room_id)
    if room_id in publishing.claiming or (current is not None and not current.relay):
        raise already_live(room_id, Source(sources.node_id, sources.url))
    publishing.claiming.add(room_id)
    try:
        token = uuid.uuid4().hex
        other = await sources.claim(room_id, token)
        if other is not None:
            raise already_live(room_id, other)
        try:
            current = media.publisher(room_id)
            if current is not None:
                # The room was pulled from its last source; its host publishes here now.
                with contextlib.suppress(MediaError):
                    await media.close(current.id)
            session_id, answer = await media.publish(room_id, offer, owner=claims.sub)
        except BaseException:
            await _release(sources, room_id, token)
            raise
        publishing.tokens[session_id] = (room_id, token)
    finally:
        publishing.claiming.discard(room_id)
    return _answer(answer, f"/whip/{room_id}/{session_id}")


@routes.post("/whep/{room}")
async def whep(request: web.Request) -> web.Response:
    claims = claims_of(request)
    room_id = request.match_info["room"]
    if not claims.in_room(room_id):
        raise DomainError("forbidden", f"the token does not grant room {room_id!r}")
    await _known_room(request)
    offer = await _offer(request)
    node = request.app[NODE]
    # An edge's upstream (node token) is one session carrying a whole edge's viewers: beyond the
    # limits, but only for a node the registry knows (a leaked node token is an ordinary viewer).
    exempt = claims.role == "node" and await node.registry.get(claims.sub) is not None
    try:
        session_id, answer = await request.app[MEDIA].play(
            room_id, offer, owner=claims.sub, beyond_limit=exempt
        )
    except MediaError as exc:
        if exc.code in LIMIT_CODES:
            node.metrics.whep_refused.labels(exc.code).inc()
        raise
    return _answer(answer, f"/whep/{room_id}/{session_id}")


@routes.delete("/whip/{room}/{session}")
@routes.delete("/whep/{room}/{session}")
async def end_session(request: web.Request) -> web.Response:
    claims = claims_of(request)
    media = request.app[MEDIA]
    session = media.session(request.match_info["session"])
    kind = "publisher" if request.path.startswith("/whip/") else "viewer"
    if session is None or session.room_id != request.match_info["room"] or session.role != kind:
        raise DomainError("session_not_found", "there is no such media session")
    if session.owner != claims.sub:
        raise DomainError("forbidden", "this session belongs to someone else")
    await media.close(session.id)
    return web.Response(status=200)


class MediaCollector(Collector):
    """Reads MediaServer.stats() at scrape time."""

    def __init__(self, media: MediaServer) -> None:
        self._media = media

    def _admission(self, viewers: int) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        """The admission decision and its inputs, per process serving viewers (media.admission)."""
        media = self._media
        limit = media.config.max_viewers
        yield GaugeMetricFamily(
            "live_media_admitting",
            "1 while this node admits new viewers (count and measured load), else 0",
            value=int(media.admitting and (not limit or viewers < limit)),
        )
        yield GaugeMetricFamily(
            "live_media_admission_ceiling",
            "Viewers this node takes at most (LIVE_MEDIA_MAX_VIEWERS resolved; 0: none)",
            value=media.config.max_viewers,
        )
        refusals = CounterMetricFamily(
            "live_media_admission_refusals",
            "WHEP offers refused as full, by reason (ceiling, lag, cpu, backlog, setup, headroom, "
            "workers)",
            labels=["reason"],
        )
        for reason, count in media.admission_refusals.items():
            refusals.add_metric([reason], count)
        yield refusals
        families = {
            "admitting": ("1 while the process admits viewers by its measured load", "admitting"),
            "loop_lag_seconds": ("Event-loop lag, p95 over the last 2 s", "lag_s"),
            "cpu": ("CPU used, fraction of one core over the last 2 s", "cpu"),
            "runqueue_wait": ("Time waiting for a core, fraction over the last 2 s", "wait"),
            "backlog_frames": ("Frames queued towards viewers", "backlog"),
            "skips_per_second": ("Slow-viewer skips and backlog drops per second", "skips_per_s"),
            "cpu_per_viewer": ("Measured busy fraction of a core per viewer", "cpu_per_viewer"),
            "viewers": ("Viewer sessions of the process", "viewers"),
            "setups": (
                "Viewer sessions being answered, connecting or connected within 2.5 s",
                "setups",
            ),
        }
        gauges = {
            name: GaugeMetricFamily(f"live_media_admission_{name}", doc, labels=["process"])
            for name, (doc, _) in families.items()
        }
        for process, load in media.loads().items():
            for name, (_, attr) in families.items():
                gauges[name].add_metric([process], float(getattr(load, attr)))
        yield from gauges.values()

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        s = self._media.stats()
        for name, doc, value in (
            ("live_media_rooms", "Rooms with media sessions", s.rooms),
            ("live_media_publishers", "Connected or connecting publishers", s.publishers),
            ("live_media_viewers", "Viewer sessions", s.viewers),
            ("live_media_peer_connections", "Open WebRTC peer connections", s.peer_connections),
        ):
            yield GaugeMetricFamily(name, doc, value=value)
        for name, doc, value in (
            ("live_media_packets_in", "RTP packets received from publishers", s.packets_in),
            ("live_media_bytes_in", "RTP payload bytes received from publishers", s.bytes_in),
            ("live_media_frames_in", "Encoded frames received from publishers", s.frames_in),
            ("live_media_frames_forwarded", "Encoded frames sent to viewers", s.frames_out),
            ("live_media_bytes_forwarded", "Encoded bytes sent to viewers", s.bytes_out),
            ("live_media_frames_dropped", "Frames dropped for slow viewers", s.frames_dropped),
            ("live_media_viewer_skips", "Slow-viewer skips to a keyframe", s.viewer_skips),
            ("live_media_keyframe_requests", "PLIs sent to publishers", s.keyframe_requests),
            (
                "live_media_sessions_unconnected_closed",
                "Sessions closed (their slot freed) for not connecting in time",
                s.unconnected_closed,
            ),
            (
                "live_media_keyframe_requests_coalesced",
                "Keyframe requests folded into another",
                s.keyframe_requests_coalesced,
            ),
        ):
            yield CounterMetricFamily(name, doc, value=value)
        ttff = GaugeMetricFamily(
            "live_media_time_to_first_frame_seconds",
            "Time from WHEP offer to the first video frame sent, recent viewers",
            labels=["quantile"],
        )
        samples = sorted(s.ttff_seconds)
        if samples:
            for q in (0.5, 0.95, 1.0):
                ttff.add_metric([str(q)], samples[min(len(samples) - 1, int(q * len(samples)))])
        yield ttff
        refused = CounterMetricFamily(
            "live_media_offers_refused",
            "WHIP/WHEP offers refused unparsed, by reason (too_large, too_many_media)",
            labels=["reason"],
        )
        for reason, count in self._media.offers_refused.items():
            refused.add_metric([reason], count)
        yield refused
        fallbacks = CounterMetricFamily(
            "live_media_fast_path_fallbacks",
            "Viewer tracks whose fast send path fell back to a slower way, by reason",
            labels=["reason"],
        )
        for reason, count in s.fast_path_fallbacks.items():
            fallbacks.add_metric([reason], count)
        yield fallbacks
        yield from self._admission(s.viewers)
        if s.workers:
            viewers = GaugeMetricFamily(
                "live_media_worker_viewers", "Viewer sessions per media worker", labels=["worker"]
            )
            dropped = CounterMetricFamily(
                "live_media_worker_frames_dropped",
                "Frames not sent to a media worker that was behind (it skips to a keyframe)",
                labels=["worker"],
            )
            restarts = CounterMetricFamily(
                "live_media_worker_restarts", "Media workers started again", labels=["worker"]
            )
            for w in s.workers:
                viewers.add_metric([str(w.index)], w.viewers)
                dropped.add_metric([str(w.index)], w.frames_dropped)
                restarts.add_metric([str(w.index)], w.restarts)
            yield viewers
            yield dropped
            yield restarts
