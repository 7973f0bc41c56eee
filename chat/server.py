"""Socket.IO namespace `/live`: join, chat, like and moderation, fanned out across nodes.

Clients authenticate at connect with `auth: {token}`. Every request is answered through its
acknowledgement, `{ok: true, ...}` or `{ok: false, error, detail}`; nothing a client sends can
raise out of a handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
import socketio
from aiohttp import web

from chat import schemas
from chat.bus import Envelope, RoomBus
from chat.config import ChatSettings
from chat.counters import LikeCounter, ViewerCounter
from chat.deadlines import Deadlines
from chat.errors import ChatError, ack
from chat.fanout import FanoutManager
from chat.history import History, valid_stream_id
from chat.moderation import Moderation
from chat.text import clean_text, compile_terms, normalise_term
from chat.throttle import Buckets, retry_after_s
from chat.translation import OUTCOMES, LibreTranslate, Translations, language_of
from core.auth import Claims, TokenAuthority
from core.errors import DomainError, unknown_room
from core.events import RoomAction, RoomStateSource
from core.metrics import Metrics
from core.store import STORE_ERRORS

log = logging.getLogger(__name__)

NAMESPACE = "/live"
DEFAULT_MUTE_S = 300
Handler = Callable[[str, Any], Awaitable[dict[str, Any]]]


@dataclass
class _Socket:
    claims: Claims
    address: str = "unknown"  # the client's address (the connection's peer)
    rooms: set[str] = field(default_factory=set)
    # Joined rooms this socket moderates (its role there, and its seller's room).
    moderating: set[str] = field(default_factory=set)
    # Room -> the language this socket gets `chat_translation`s in (`translate`).
    translate: dict[str, str] = field(default_factory=dict)


def _safe_int(digits: str) -> int:
    # engine.io's guard: Python's int() of a huge digit string is quadratic.
    if len(digits) > 100:
        raise ValueError("Integer is too large")
    return int(digits)


class _PacketJson:
    """The JSON python-socketio and engine.io encode and decode packets with (their `json`
    option): the stdlib's with engine.io's guard against huge integers, and one decoder for every
    packet (engine.io's own `loads` passes `parse_int`, which builds a decoder per packet)."""

    dumps = staticmethod(json.dumps)
    _decode = json.JSONDecoder(parse_int=_safe_int).decode

    @staticmethod
    def loads(s: Any, **kwargs: Any) -> Any:
        if kwargs or not isinstance(s, str):
            return json.loads(s, **{"parse_int": _safe_int, **kwargs})
        return _PacketJson._decode(s)


def _mods(room: str) -> str:
    return "mods:" + room


def _lang_room(room: str, lang: str) -> str:
    return f"{room}:lang:{lang}"


class ChatServer:
    """The chat layer of one node; also the node's `RoomBroadcast` for other packages."""

    def __init__(
        self,
        redis: aioredis.Redis,
        auth: TokenAuthority,
        metrics: Metrics,
        config: ChatSettings,
        node_id: str,
        room_exists: Callable[[str], Awaitable[bool]],
        room_state: RoomStateSource,
    ) -> None:
        self.config = config
        self._auth = auth
        self._metrics = metrics
        self._room_exists = room_exists
        self._room_state = room_state
        self.fanout = FanoutManager(
            config.max_client_queue,
            metrics.slow_clients_dropped.inc,
            on_oversize=metrics.chat_limits.labels("frame_size", "closed").inc,
        )
        self.sio = socketio.AsyncServer(
            async_mode="aiohttp",
            client_manager=self.fanout,
            cors_allowed_origins="*",
            # Engine.IO applies it to polling bodies and (as aiohttp's max_msg_size) to
            # WebSocket frames: a larger one closes the connection before it is decoded.
            max_http_buffer_size=config.max_frame_bytes,
            json=_PacketJson,
            logger=False,
            engineio_logger=False,
        )
        self.history = History(redis, config.history_len)
        self.moderation = Moderation(
            redis, config.rate_count, config.rate_window_s,
            lambda action: metrics.mod_refusals.labels(action).inc(),
        )  # fmt: skip
        self.likes = LikeCounter(redis)
        self.viewers = ViewerCounter(redis, node_id)
        self.bus = RoomBus(redis, node_id, self._deliver, self._resync)
        self._sockets: dict[str, _Socket] = {}
        self._members: defaultdict[str, set[str]] = defaultdict(set)
        self._user_sids: defaultdict[tuple[str, str], set[str]] = defaultdict(set)
        self._terms: dict[str, Any] = {}  # room -> compiled pattern (or None), refreshed on change
        # Translation (off without a URL): room -> language -> local sockets asking for it.
        self.translations: Translations | None = None
        if config.translate_url:
            key = config.translate_api_key
            outcomes = {o: metrics.chat_translations.labels(o) for o in OUTCOMES}
            self.translations = Translations(
                LibreTranslate(config.translate_url, key.get_secret_value() if key else None),
                timeout_s=config.translate_timeout_s,
                concurrency=config.translate_concurrency,
                queue=config.translate_queue,
                cache_size=config.translate_cache,
                count=lambda outcome: outcomes[outcome].inc(),
                observe=metrics.chat_translation_seconds.observe,
            )
        self._langs: defaultdict[str, defaultdict[str, int]] = defaultdict(lambda: defaultdict(int))
        self._tasks: set[asyncio.Task[None]] = set()
        # Engine.IO sessions that have not connected to /live yet, and sessions' token expiry.
        self._join_deadlines = Deadlines(self._join_overdue)
        self._expiry = Deadlines(self._token_due)
        self._socket_rate = Buckets(config.socket_rate, config.socket_burst)
        self._user_rate = Buckets(config.user_rate, config.user_burst)
        # A second's worth saved up, and never less than one like of the largest count.
        likes_burst = max(config.user_likes_per_s, schemas.MAX_LIKE_COUNT)
        self._user_likes = Buckets(config.user_likes_per_s, likes_burst)
        self._user_sockets: defaultdict[str, int] = defaultdict(int)
        limits = metrics.chat_limits
        self._limit_allowed = limits.labels("requests", "allowed")
        self._limit_socket = limits.labels("socket_rate", "refused")
        self._limit_user = limits.labels("user_rate", "refused")
        self._limit_likes = {d: limits.labels("user_likes", d) for d in ("allowed", "clamped")}
        self._limit_likes_refused = limits.labels("user_likes", "refused")
        self._limit_join_timeout = limits.labels("join_timeout", "closed")
        self._limit_expired = limits.labels("token_expiry", "disconnected")
        self._register()

    # Lifecycle
    def attach(self, app: web.Application) -> None:
        self.sio.attach(app, socketio_path="socket.io")

    async def start(self) -> None:
        await self.bus.start()
        self._spawn(self._tick_likes(), "likes-ticker")
        self._spawn(self._tick_viewers(), "viewers-ticker")

    async def close_connections(self, app: web.Application | None = None) -> None:
        """Disconnect every client so the web server can stop (clients reconnect elsewhere)."""
        if self.sio.eio.sockets:  # engineio's disconnect-all fails on an empty set
            try:
                # A graceful close waits for each client's queue to drain; a client that
                # stopped reading would hold shutdown forever, so it gets a bound.
                async with asyncio.timeout(2.0):
                    await self.sio.eio.disconnect()
            except TimeoutError:
                log.warning("clients did not close in time; aborting their connections")
                for client in list(self.sio.eio.sockets.values()):
                    with contextlib.suppress(Exception):
                        await client.close(wait=False, abort=True)
        await self.sio.shutdown()

    async def stop(self) -> None:
        self._join_deadlines.cancel_all()
        self._expiry.cancel_all()
        for task in self._tasks:
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(*STORE_ERRORS):
            await self.viewers.withdraw(list(self._members))
        await self.bus.stop()
        if self.translations is not None:
            await self.translations.close()

    def _spawn(self, coro: Awaitable[None], name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # RoomBroadcast port
    async def emit(self, room: str, event: str, data: dict[str, Any], to: str = "room") -> None:
        await self._fanout(room, event, data, "mods" if to == "staff" else "room")

    async def _fanout(self, room: str, event: str, data: dict[str, Any], target: str) -> None:
        await self._deliver(room, {"e": event, "d": data, "t": target})
        await self.bus.publish(room, event, data, target)

    async def _deliver(self, room: str, envelope: Envelope) -> None:
        event, data, target = envelope["e"], envelope["d"], envelope["t"]
        if "n" in envelope:
            self._metrics.chat_events_in.inc()
        if target == "room":
            if event == "likes":
                self.likes.observe(room, data["total"])
                return  # emitted by the ticker, at most once per tick
            if event == "terms_changed":
                self._terms.pop(room, None)
                return
            await self.sio.emit(event, data, room=room, namespace=NAMESPACE)
            if self.translations is not None:
                self._after_delivery(room, event, data)
        elif target == "mods":
            await self.sio.emit(event, data, room=_mods(room), namespace=NAMESPACE)
        elif target.startswith("user:") or target.startswith("kick:"):
            kind, _, user = target.partition(":")
            for sid in list(self._user_sids.get((room, user), ())):
                await self.sio.emit(event, data, to=sid, namespace=NAMESPACE)
                if kind == "kick":
                    await self._leave(sid, room)
                    await self.sio.disconnect(sid, namespace=NAMESPACE)

    async def _resync(self, rooms: list[str]) -> None:
        """Tell local clients to re-join with their last id: live events may have been lost."""
        for room in rooms:
            await self.sio.emit("resync", {"room": room}, room=room, namespace=NAMESPACE)

    # Handlers
    def _register(self) -> None:
        # Engine.IO's own connect/disconnect (python-socketio's handlers, wrapped): a connection
        # that opens but never connects to /live would otherwise hold its socket for ever.
        eio = self.sio.eio
        on_open, on_close = eio.handlers["connect"], eio.handlers["disconnect"]

        async def eio_connect(eio_sid: str, environ: dict[str, Any]) -> Any:
            accepted = await on_open(eio_sid, environ)
            if accepted is not False:
                self._join_deadlines.set(eio_sid, self.config.join_timeout_s)
            return accepted

        async def eio_disconnect(eio_sid: str, reason: Any) -> Any:
            self._join_deadlines.cancel(eio_sid)
            return await on_close(eio_sid, reason)

        eio.on("connect", eio_connect)
        eio.on("disconnect", eio_disconnect)
        self.sio.on("connect", self._on_connect, namespace=NAMESPACE)
        self.sio.on("disconnect", self._on_disconnect, namespace=NAMESPACE)
        handlers: dict[str, Handler] = {
            "join": self._on_join,
            "leave": self._on_leave,
            "chat": self._on_chat,
            "like": self._on_like,
            "mod": self._on_mod,
            "mod_state": self._on_mod_state,
            "refresh_token": self._on_refresh_token,
            "translate": self._on_translate,
        }
        for event, handler in handlers.items():
            # Chat has its own limit (the admission script), which hosts and moderators skip.
            limited = event != "chat"
            self.sio.on(event, self._guard(event, handler, limited), namespace=NAMESPACE)

    def add_action(self, event: str, action: RoomAction) -> None:
        """Serve `event {room, ...}` from a socket that joined `room` by `action` (another
        domain's request, e.g. commerce's `gift`), rate-limited like every `/live` request."""

        async def handler(sid: str, data: Any) -> dict[str, Any]:
            # The room is all chat reads; a well-formed one skips the model (the action
            # validates the whole payload; a bad one gets the model's detail).
            room = data.get("room") if isinstance(data, dict) else None
            if not (type(room) is str and schemas.ROOM_ID.match(room)):
                room = schemas.parse(schemas.RoomRequestIn, data).room
            sock = self._joined(sid, room)
            return await action(sock.claims, room, data, sock.address)

        self.sio.on(event, self._guard(event, handler, True), namespace=NAMESPACE)

    def _guard(
        self, event: str, handler: Handler, limited: bool
    ) -> Callable[..., Awaitable[dict[str, Any]]]:
        async def guarded(sid: str, data: Any = None, *_extra: Any) -> dict[str, Any]:
            try:
                self._admit(sid, limited)
                return await handler(sid, data)
            except DomainError as exc:  # a ChatError, or the kernel's (unknown_room)
                return ack(exc)
            except STORE_ERRORS as exc:
                log.warning("store error in %s: %s", event, exc)
                return {"ok": False, "error": "store_unavailable", "detail": "try again shortly"}
            except Exception:
                log.exception("unhandled error in chat event %s", event)
                return {"ok": False, "error": "internal", "detail": "an internal error occurred"}

        return guarded

    def _admit(self, sid: str, limited: bool) -> None:
        """Refuse a request of an unknown or expired session, or one over its rate limits."""
        sock = self._socket(sid)
        if sock.claims.exp <= time.time():  # its timer may not have fired yet
            raise ChatError("token_expired", "the token has expired: connect with a new one")
        if not limited:
            return
        wait = self._socket_rate.take(sid)
        if wait:
            self._limit_socket.inc()
            raise _rate_limited("this connection", wait)
        wait = self._user_rate.take(sock.claims.sub)
        if wait:
            self._limit_user.inc()
            raise _rate_limited("this user", wait)
        self._limit_allowed.inc()

    def _join_overdue(self, eio_sid: str) -> None:
        if eio_sid in self.sio.eio.sockets:
            self._limit_join_timeout.inc()
            self._spawn(self.fanout.close_connection(eio_sid), "close-unjoined")

    def _token_due(self, sid: str) -> None:
        self._spawn(self._expire(sid), "token-expired")

    async def _expire(self, sid: str) -> None:
        sock = self._sockets.get(sid)
        if sock is None:
            return
        if sock.claims.exp > time.time():  # the loop's clock ran ahead of the wall clock
            self._expiry.set(sid, sock.claims.exp - time.time())
            return
        self._limit_expired.inc()
        detail = "the token has expired: connect with a new one"
        with contextlib.suppress(Exception):  # it may be gone meanwhile
            await self.sio.emit("token_expired", {"detail": detail}, to=sid, namespace=NAMESPACE)
            await self.sio.disconnect(sid, namespace=NAMESPACE)

    async def _on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        token = auth.get("token") if isinstance(auth, dict) else None
        try:
            await self._auth.prepare(token)  # an IdP token's keys, fetched if its kid is new
            claims = self._auth.verify(token)
        except DomainError as exc:
            raise socketio.exceptions.ConnectionRefusedError(exc.detail, exc.body()) from None
        eio_sid = self.sio.manager.eio_sid_from_sid(sid, NAMESPACE)
        if eio_sid is not None:
            self._join_deadlines.cancel(eio_sid)
        request = environ.get("aiohttp.request")  # engine.io's REMOTE_ADDR is a constant
        address = getattr(request, "remote", None) or "unknown"
        self._sockets[sid] = _Socket(claims, address)
        self._user_sockets[claims.sub] += 1
        self._expiry.set(sid, claims.exp - time.time())
        self._metrics.sockets.inc()

    async def _on_disconnect(self, sid: str, *_reason: Any) -> None:
        sock = self._sockets.get(sid)
        if sock is None:
            return
        for room in list(sock.rooms):
            await self._leave(sid, room)
        del self._sockets[sid]
        self._expiry.cancel(sid)
        self._socket_rate.forget(sid)
        self._forget_user(sock.claims.sub)
        self._metrics.sockets.dec()

    def _forget_user(self, user: str) -> None:
        self._user_sockets[user] -= 1
        if self._user_sockets[user] <= 0:
            del self._user_sockets[user]
            self._user_rate.forget(user)
            self._user_likes.forget(user)

    async def _on_refresh_token(self, sid: str, data: Any) -> dict[str, Any]:
        """Replace the session's token with a newer one for the same user and role."""
        req = schemas.parse(schemas.RefreshTokenIn, data)
        sock = self._socket(sid)
        claims = self._auth.verify(req.token)
        if (claims.sub, claims.role) != (sock.claims.sub, sock.claims.role):
            raise ChatError("invalid_token", "the new token must be for the same user and role")
        for room in list(sock.rooms):
            if not claims.in_room(room):
                await self._leave(sid, room)
        sock.claims = claims
        self._expiry.set(sid, claims.exp - time.time())
        return {"ok": True, "exp": claims.exp}

    def _socket(self, sid: str) -> _Socket:
        sock = self._sockets.get(sid)
        if sock is None:
            raise ChatError("not_connected", "the connection is not authenticated")
        return sock

    def _joined(self, sid: str, room: str) -> _Socket:
        sock = self._socket(sid)
        if room not in sock.rooms:
            raise ChatError("not_joined", f"join room {room!r} first")
        return sock

    async def _on_join(self, sid: str, data: Any) -> dict[str, Any]:
        req = schemas.parse(schemas.JoinIn, data)
        sock = self._socket(sid)
        claims = sock.claims
        if not await self._room_exists(req.room):
            raise unknown_room(req.room)
        if not claims.in_room(req.room):
            raise ChatError("forbidden", f"the token does not grant room {req.room!r}")
        if await self.moderation.is_banned(req.room, claims.sub):
            raise ChatError("banned", "you are banned from this room")
        if req.room not in sock.rooms:
            # Enter before reading history: a message sent meanwhile may then arrive twice
            # (clients dedupe by id) but is never missed.
            sock.rooms.add(req.room)
            await self.sio.enter_room(sid, req.room, namespace=NAMESPACE)
            if await self._moderates(claims, req.room):
                sock.moderating.add(req.room)
                await self.sio.enter_room(sid, _mods(req.room), namespace=NAMESPACE)
            self._members[req.room].add(sid)
            self._user_sids[(req.room, claims.sub)].add(sid)
            await self.bus.watch(req.room)
            role = claims.role if req.room in sock.moderating else "viewer"
            await self.moderation.remember_user(req.room, claims.sub, claims.name, role)
        history = await self.history.since(req.room, req.since)
        state = await self.room_state(req.room)
        return {"ok": True, "history": history, "state": state, "user": claims.public_user()}

    async def room_state(self, room: str) -> dict[str, Any]:
        state = await self._room_state(room)
        state["pinned_message"] = await self.moderation.pinned(room)
        state["likes"] = await self.likes.total(room)
        state["viewers"] = await self.viewers.total(room)
        state["slow"] = await self.moderation.slow(room)
        return state

    async def _on_leave(self, sid: str, data: Any) -> dict[str, Any]:
        req = schemas.parse(schemas.LeaveIn, data)
        self._joined(sid, req.room)
        await self._leave(sid, req.room)
        return {"ok": True}

    async def _leave(self, sid: str, room: str) -> None:
        sock = self._sockets.get(sid)
        if sock is None or room not in sock.rooms:
            return
        sock.rooms.discard(room)
        sock.moderating.discard(room)
        await self._set_translation(sid, sock, room, None)
        await self.sio.leave_room(sid, room, namespace=NAMESPACE)
        await self.sio.leave_room(sid, _mods(room), namespace=NAMESPACE)
        self._members[room].discard(sid)
        key = (room, sock.claims.sub)
        self._user_sids[key].discard(sid)
        if not self._user_sids[key]:
            del self._user_sids[key]
        if not self._members[room]:
            del self._members[room]
            self._terms.pop(room, None)
            self.likes.forget(room)
            with contextlib.suppress(*STORE_ERRORS):
                await self.bus.unwatch(room)

    async def _on_chat(self, sid: str, data: Any) -> dict[str, Any]:
        started = time.perf_counter()
        req = schemas.parse(schemas.ChatIn, data)
        sock = self._joined(sid, req.room)
        claims = sock.claims
        text = clean_text(req.text, self.config.max_chars)
        privileged = req.room in sock.moderating
        status, until = await self.moderation.admit(req.room, claims.sub, privileged)
        if status != "ok":
            self._metrics.chat_messages.labels(status).inc()
            raise ChatError(status, _refusal(status), until=until)
        message: dict[str, Any] = {
            "room": req.room,
            "user": claims.public_user(),
            "text": text,
            "ts": int(time.time() * 1000),
        }
        if req.lang is not None:
            message["lang"] = req.lang
        if not privileged and await self._blocked(req.room, text):
            message["id"] = "h-" + secrets.token_hex(16)
            await self.moderation.hold(req.room, message)
            await self._fanout(req.room, "held", {"room": req.room, "message": message}, "mods")
            self._metrics.chat_messages.labels("held").inc()
            return {"ok": True, "id": message["id"], "held": True}
        message["id"] = await self.history.append(req.room, message)
        await self._fanout(req.room, "chat", message, "room")
        self._metrics.chat_messages.labels("ok").inc()
        self._metrics.chat_handle_seconds.observe(time.perf_counter() - started)
        return {"ok": True, "id": message["id"]}

    # Translation: each node translates for its own viewers, after delivering the original.
    async def _on_translate(self, sid: str, data: Any) -> dict[str, Any]:
        """`translate {room, lang, ids}`: `chat_translation`s of the room's new messages into
        `lang` (None: stop), and now of the messages `ids` (those the page already shows)."""
        req = schemas.parse(schemas.TranslateIn, data)
        sock = self._joined(sid, req.room)
        lang = language_of(req.lang)
        targets = self.config.translate_targets
        if lang is not None and lang not in targets:
            raise ChatError(
                "invalid_payload",
                f"lang: translations are into {', '.join(sorted(targets))} only",
            )
        await self._set_translation(sid, sock, req.room, lang)
        available = self.translations is not None
        if available and lang is not None and req.ids:
            ids = [i for i in dict.fromkeys(req.ids) if valid_stream_id(i)]
            self._spawn(self._translate_for(sid, req.room, lang, ids), "translate-history")
        return {"ok": True, "lang": lang, "available": available}

    async def _set_translation(self, sid: str, sock: _Socket, room: str, lang: str | None) -> None:
        old = sock.translate.pop(room, None)
        if old == lang:
            if lang is not None:
                sock.translate[room] = lang
            return
        langs = self._langs[room]
        if old is not None:
            await self.sio.leave_room(sid, _lang_room(room, old), namespace=NAMESPACE)
            langs[old] -= 1
            if langs[old] <= 0:
                del langs[old]
        if lang is not None:
            sock.translate[room] = lang
            await self.sio.enter_room(sid, _lang_room(room, lang), namespace=NAMESPACE)
            langs[lang] += 1
        if not langs:
            del self._langs[room]

    def _after_delivery(self, room: str, event: str, data: dict[str, Any]) -> None:
        assert self.translations is not None
        if event == "chat":
            source = language_of(data.get("lang"))
            for lang in self._langs.get(room, {}):
                if lang != source:
                    self._spawn(self._translate_live(room, lang, data), "translate")
        elif event == "deleted":
            self.translations.forget(room, data.get("message_id"))
        elif event == "cleared":
            self.translations.forget(room)

    async def _translation(self, room: str, lang: str, message: dict[str, Any]) -> str | None:
        assert self.translations is not None
        source = language_of(message.get("lang")) or "auto"
        text = message.get("text")
        if source == lang or not isinstance(text, str) or not text:
            return None
        return await self.translations.get(room, message["id"], text, source, lang)

    async def _translate_live(self, room: str, lang: str, message: dict[str, Any]) -> None:
        text = await self._translation(room, lang, message)
        if text is not None:
            data = {"room": room, "id": message["id"], "lang": lang, "text": text}
            await self.sio.emit(
                "chat_translation", data, room=_lang_room(room, lang), namespace=NAMESPACE
            )

    async def _translate_for(self, sid: str, room: str, lang: str, ids: list[str]) -> None:
        try:
            messages = [await self.history.get(room, i) for i in ids]
        except STORE_ERRORS as exc:
            log.warning("reading messages to translate failed: %s", exc)
            return
        for message in messages:
            if message is None:
                continue
            text = await self._translation(room, lang, message)
            sock = self._sockets.get(sid)
            if sock is None or sock.translate.get(room) != lang:
                return  # gone, or asked for another language meanwhile
            if text is not None:
                data = {"room": room, "id": message["id"], "lang": lang, "text": text}
                await self.sio.emit("chat_translation", data, to=sid, namespace=NAMESPACE)

    # Text another domain posts in the room on a user's behalf (a gift's message): the chat's
    # text rules, bans, mutes and blocked terms apply; slow mode and the chat rate do not (the
    # caller has its own limit). Moderators remove it as any message (`mod` `delete`).
    async def screen(self, room: str, user: str, text: str, max_chars: int) -> str:
        """The cleaned `text` if `user` may post it in `room` now; else ChatError (`too_long`,
        `empty_message`, `banned`, `muted`). Call before what the text comes with is done."""
        cleaned = clean_text(text, max_chars)
        status, until = await self.moderation.admit(room, user, True)
        if status != "ok":
            self._metrics.chat_messages.labels(status).inc()
            raise ChatError(status, _refusal(status), until=until)
        return cleaned

    async def post(
        self, room: str, claims: Claims, text: str, **extra: Any
    ) -> tuple[dict[str, Any], bool]:
        """Post screened `text` as `claims`' message with `extra` fields: into the history and to
        the room, or held for review when it has a blocked term. The message and whether held."""
        message: dict[str, Any] = {
            "room": room,
            "user": claims.public_user(),
            "text": text,
            "ts": int(time.time() * 1000),
            **extra,
        }
        if await self._blocked(room, text):
            message["id"] = "h-" + secrets.token_hex(16)
            await self.moderation.hold(room, message)
            await self._fanout(room, "held", {"room": room, "message": message}, "mods")
            self._metrics.chat_messages.labels("held").inc()
            return message, True
        message["id"] = await self.history.append(room, message)
        await self._fanout(room, "chat", message, "room")
        self._metrics.chat_messages.labels("ok").inc()
        return message, False

    async def _blocked(self, room: str, text: str) -> bool:
        if room not in self._terms:
            self._terms[room] = compile_terms(await self.moderation.terms(room))
        pattern = self._terms[room]
        return pattern is not None and pattern.search(text) is not None

    async def _on_like(self, sid: str, data: Any) -> dict[str, Any]:
        req = schemas.parse(schemas.LikeIn, data)
        sock = self._joined(sid, req.room)
        count = self._user_likes.take_up_to(sock.claims.sub, req.count)
        if not count:
            self._limit_likes_refused.inc()
            raise _rate_limited("likes of this user", self._user_likes.wait(sock.claims.sub))
        self._limit_likes["allowed" if count == req.count else "clamped"].inc()
        self.likes.add(req.room, count)
        self._metrics.likes.inc(count)
        return {"ok": True, "count": count}

    async def _on_mod_state(self, sid: str, data: Any) -> dict[str, Any]:
        req = schemas.parse(schemas.RoomIn, data)
        await self._require_moderator(sid, req.room)
        mod = self.moderation
        muted = await mod.muted(req.room)
        banned = await mod.banned(req.room)
        names = await mod.names(req.room, [m["user_id"] for m in muted] + banned)
        return {
            "ok": True,
            "muted": [{**m, "name": names[m["user_id"]]} for m in muted],
            "banned": [{"user_id": u, "name": names[u]} for u in banned],
            "held": await mod.held(req.room),
            "audit": await mod.audit_log(req.room),
            "slow": await mod.slow(req.room),
            "terms": await mod.terms(req.room),
            "pinned_message": await mod.pinned(req.room),
        }

    async def _moderates(self, claims: Claims, room: str) -> bool:
        """A host or moderator granted the room, of the room's seller (a host of another shop
        whose token grants every room does not moderate this one)."""
        if not claims.can_moderate(room):
            return False
        record = await self.moderation.room(room)
        return record is not None and record.staffed_by(claims)

    async def _require_moderator(self, sid: str, room: str) -> Claims:
        claims = self._socket(sid).claims
        if not await self._moderates(claims, room):
            raise ChatError("forbidden", f"only a host or moderator of room {room!r} may do this")
        return claims

    async def _on_mod(self, sid: str, data: Any) -> dict[str, Any]:
        req = schemas.parse(schemas.ModIn, data)
        if not await self._room_exists(req.room):
            raise unknown_room(req.room)
        claims = await self._require_moderator(sid, req.room)
        result = await _MOD_ACTIONS[req.action](self, req, claims)
        entry = {
            "action": req.action,
            "actor": claims.sub,
            "actor_name": claims.name,
            **{k: v for k, v in req.model_dump().items() if k not in ("room", "action") and v},
        }
        audit = await self.moderation.audit(req.room, entry)
        await self._fanout(req.room, "audit", {"room": req.room, "entry": audit}, "mods")
        self._metrics.mod_actions.labels(req.action).inc()
        return {"ok": True, **result}

    # Moderator actions; each returns extra acknowledgement fields.
    async def _mute(self, req: schemas.ModIn, claims: Claims) -> dict[str, Any]:
        user = _target_user(req, claims)
        seconds = DEFAULT_MUTE_S if req.seconds is None else req.seconds
        if seconds < 1:
            raise ChatError("invalid_payload", "mute needs seconds of at least 1")
        await self.moderation.check_target(req.room, claims.role, req.action, user)
        until = await self.moderation.mute(req.room, user, seconds)
        await self._fanout(req.room, "muted", {"room": req.room, "until": until}, "user:" + user)
        return {"until": until}

    async def _unmute(self, req: schemas.ModIn, claims: Claims) -> dict[str, Any]:
        user = _target_user(req, claims)
        await self.moderation.unmute(req.room, user)
        await self._fanout(req.room, "muted", {"room": req.room, "until": 0}, "user:" + user)
        return {}

    async def _ban(self, req: schemas.ModIn, claims: Claims) -> dict[str, Any]:
        user = _target_user(req, claims)
        await self.moderation.check_target(req.room, claims.role, req.action, user)
        await self.moderation.ban(req.room, user)
        await self._fanout(req.room, "banned", {"room": req.room}, "kick:" + user)
        return {}

    async def _unban(self, req: schemas.ModIn, claims: Claims) -> dict[str, Any]:
        await self.moderation.unban(req.room, _target_user(req, claims))
        return {}

    async def _delete(self, req: schemas.ModIn, claims: Claims) -> dict[str, Any]:
        message_id = _target_message(req)
        if not await self.history.delete(req.room, message_id):
            raise ChatError("unknown_message", f"no message {message_id} in this room")
        pinned = await self.moderation.pinned(req.room)
        if pinned and pinned.get("id") == message_id:
            await self.moderation.pin(req.room, None)
            await self._fanout(req.room, "pinned", {"room": req.room, "message": None}, "room")
        await self._fanout(
            req.room, "deleted", {"room": req.room, "message_id": message_id}, "room"
        )
        return {}

    async def _clear(self, req: schemas.ModIn, claims: Claims) -> dict[str, Any]:
        await self.history.clear(req.room)
        await self._fanout(req.room, "cleared", {"room": req.room}, "room")
        return {}

    async def _slow(self, req: schemas.ModIn, claims: Claims) -> dict[str, Any]:
        if req.seconds is None or req.seconds > 3600:
            raise ChatError("invalid_payload", "slow needs seconds between 0 (off) and 3600")
        await self.moderation.set_slow(req.room, req.seconds)
        await self._fanout(req.room, "slow", {"room": req.room, "seconds": req.seconds}, "room")
        return {"seconds": req.seconds}

    async def _pin_message(self, req: schemas.ModIn, claims: Claims) -> dict[str, Any]:
        message_id = _target_message(req)
        message = await self.history.get(req.room, message_id)
        if message is None:
            raise ChatError("unknown_message", f"no message {message_id} in this room")
        await self.moderation.pin(req.room, message)
        await self._fanout(req.room, "pinned", {"room": req.room, "message": message}, "room")
        return {}

    async def _unpin_message(self, req: schemas.ModIn, claims: Claims) -> dict[str, Any]:
        await self.moderation.pin(req.room, None)
        await self._fanout(req.room, "pinned", {"room": req.room, "message": None}, "room")
        return {}

    async def _approve(self, req: schemas.ModIn, claims: Claims) -> dict[str, Any]:
        held = await self._take_held(req)
        held.pop("id")
        held["id"] = await self.history.append(req.room, held)
        await self._fanout(req.room, "chat", held, "room")
        return {"id": held["id"]}

    async def _reject(self, req: schemas.ModIn, claims: Claims) -> dict[str, Any]:
        await self._take_held(req)
        return {}

    async def _take_held(self, req: schemas.ModIn) -> dict[str, Any]:
        held_id = _target_message(req)
        held = await self.moderation.take_held(req.room, held_id)
        if held is None:
            raise ChatError("unknown_message", f"no held message {held_id} in this room")
        data = {"room": req.room, "message_id": held_id, "action": req.action}
        await self._fanout(req.room, "held_resolved", data, "mods")
        return held

    async def _block_term(self, req: schemas.ModIn, claims: Claims) -> dict[str, Any]:
        term = normalise_term(req.term or "")
        await self.moderation.add_term(req.room, term)
        await self._fanout(req.room, "terms_changed", {"room": req.room}, "room")
        return {"term": term}

    async def _unblock_term(self, req: schemas.ModIn, claims: Claims) -> dict[str, Any]:
        term = normalise_term(req.term or "")
        await self.moderation.remove_term(req.room, term)
        await self._fanout(req.room, "terms_changed", {"room": req.room}, "room")
        return {"term": term}

    # Tickers
    async def _tick_likes(self) -> None:
        interval = self.config.likes_flush_ms / 1000
        while True:
            await asyncio.sleep(interval)
            try:
                for room, total in (await self.likes.flush()).items():
                    data = {"room": room, "total": total}
                    if room in self._members:
                        await self.sio.emit("likes", data, room=room, namespace=NAMESPACE)
                    await self.bus.publish(room, "likes", data, "room")
            except STORE_ERRORS as exc:
                log.warning("likes flush failed: %s", exc)

    async def _tick_viewers(self) -> None:
        while True:
            try:
                local = {room: len(sids) for room, sids in self._members.items()}
                self._metrics.rooms_joined.set(len(local))
                for room, count in (await self.viewers.publish(local)).items():
                    data = {"room": room, "count": count}
                    await self.sio.emit("viewers", data, room=room, namespace=NAMESPACE)
            except STORE_ERRORS as exc:
                log.warning("viewer count update failed: %s", exc)
            await asyncio.sleep(self.config.viewer_count_interval_s)


_MOD_ACTIONS: dict[
    str, Callable[[ChatServer, schemas.ModIn, Claims], Awaitable[dict[str, Any]]]
] = {
    "mute": ChatServer._mute,
    "unmute": ChatServer._unmute,
    "ban": ChatServer._ban,
    "unban": ChatServer._unban,
    "delete": ChatServer._delete,
    "clear": ChatServer._clear,
    "slow": ChatServer._slow,
    "pin_message": ChatServer._pin_message,
    "unpin_message": ChatServer._unpin_message,
    "approve": ChatServer._approve,
    "reject": ChatServer._reject,
    "block_term": ChatServer._block_term,
    "unblock_term": ChatServer._unblock_term,
}


def _target_user(req: schemas.ModIn, claims: Claims) -> str:
    if not req.user_id:
        raise ChatError("invalid_payload", f"{req.action} needs user_id")
    if req.user_id == claims.sub:
        raise ChatError("invalid_target", "moderators cannot act on themselves")
    return req.user_id


def _target_message(req: schemas.ModIn) -> str:
    if not req.message_id:
        raise ChatError("invalid_payload", f"{req.action} needs message_id")
    return req.message_id


def _rate_limited(who: str, wait_s: float) -> ChatError:
    return ChatError(
        "rate_limited",
        f"too many requests from {who}: wait before sending again",
        retry_after=retry_after_s(wait_s),
    )


def _refusal(status: str) -> str:
    return {
        "banned": "you are banned from this room",
        "muted": "you are muted in this room",
        "slow": "slow mode is on: wait before sending again",
        "rate_limited": "too many messages: wait before sending again",
    }.get(status, status)
