"""A node: the parts of one server process wired together (the composition root's product)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from aiohttp import web

from chat.errors import ChatError
from chat.schemas import parse
from chat.server import ChatServer
from commerce import Commerce
from commerce.keys import USER_ID
from commerce.schemas import BuySocketIn, GiftSocketIn
from commerce.wallet import Applied
from core.auth import BUYER_ROLES, Claims, Oidc, TokenAuthority, require_role
from core.config import AuthSettings
from core.errors import DomainError, unknown_room
from core.events import RoomStateSource
from core.jwks import KeySet, KeySetCollector
from core.metrics import Metrics
from core.rooms import Room, RoomStore
from core.store import STORE_ERRORS
from edge.registry import NodeRegistry
from live.privacy import Privacy
from live.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SentGift:
    applied: Applied
    gift: dict[str, Any]
    message: dict[str, Any] | None  # the posted message: {id, held}; None without one


class Node:
    def __init__(self, settings: Settings, redis: aioredis.Redis) -> None:
        self.settings = settings
        self.redis = redis
        self.metrics = Metrics(settings.server.node_id)
        self.auth = authority_of(settings.auth)
        if self.auth.keys is not None:
            self.metrics.registry.register(KeySetCollector(self.auth.keys))
        self.rooms = RoomStore(redis)
        self.state_sources: list[RoomStateSource] = []
        self.chat = ChatServer(
            redis,
            self.auth,
            self.metrics,
            settings.chat,
            settings.server.node_id,
            room_exists=self.rooms.exists,
            room_state=self.base_room_state,
        )
        self.commerce = Commerce(
            redis, self.chat, settings.commerce, settings.server.node_id, self.metrics.registry
        )
        self.state_sources.append(self.commerce.room_state)
        self.commerce.desk.viewers = self.chat.viewers.total
        self.chat.add_action("gift", self.gift)
        self.chat.add_action("buy", self.buy)
        self._buy_results: dict[str, Any] = {}  # bound children of live_socket_buys_total
        self.registry = NodeRegistry(
            redis,
            node_id=settings.server.node_id,
            role=settings.server.role,
            region=settings.server.region,
            capacity=settings.viewer_capacity,
            # Read at each heartbeat: `serve` fills it in once the port is known.
            url=lambda: self.settings.server.public_url,
            heartbeat_s=settings.edge.node_heartbeat_s,
            ttl_s=settings.edge.node_ttl_s,
        )
        self.registry.count_sockets = lambda: len(self.chat.sio.eio.sockets)
        self.privacy = Privacy(
            redis,
            settings.privacy,
            settings.auth.jwt_secret.get_secret_value(),
            settings.commerce,
            self.metrics.registry,
            on_erased=self.messages_erased,
        )

    async def messages_erased(self, room: str, message_ids: list[str]) -> None:
        """An erasure took messages out of a room's history: its clients drop them, as after a
        moderator's delete."""
        for message_id in message_ids:
            await self.chat.emit(room, "deleted", {"room": room, "message_id": message_id})

    async def base_room_state(self, room_id: str) -> dict[str, Any]:
        room = await self.rooms.get(room_id)
        if room is None:
            raise unknown_room(room_id)
        state: dict[str, Any] = {"room_id": room.room_id, "title": room.title, "live": room.live}
        for source in self.state_sources:
            state.update(await source(room_id))
        return state

    async def gift(
        self, claims: Claims, room_id: str, data: dict[str, Any], address: str
    ) -> dict[str, Any]:
        """Socket.IO `gift {room, gift_id, count, key}` from a socket in the room: as
        `POST /api/rooms/{room}/gifts`, acknowledged `{ok, balance, entry_id, ...}`."""
        req = parse(GiftSocketIn, data)
        room = await self.rooms.get(room_id)
        if room is None:
            raise unknown_room(room_id)
        if room.owner == claims.sub:
            raise ChatError("invalid_payload", "a host does not send gifts to their own room")
        if not USER_ID.match(claims.sub):
            raise ChatError("invalid_payload", "a user id is 1-128 of [A-Za-z0-9._:@-]")
        sent = await self.send_gift(
            claims, room, key=req.key, gift_id=req.gift_id, count=req.count, message=req.message
        )
        e = sent.applied.entry
        answer = {"ok": True, "balance": e["balance"], "entry_id": e["entry_id"],
                  "gift_id": sent.gift["gift_id"], "count": req.count, "amount": -e["amount"],
                  "replayed": sent.applied.replayed}  # fmt: skip
        if sent.message is not None:
            answer["message"] = sent.message
        return answer

    async def send_gift(
        self, claims: Claims, room: Room, *, key: str, gift_id: str, count: int,
        message: str | None,
    ) -> SentGift:  # fmt: skip
        """A gift from `claims` in `room` (over Socket.IO or REST), with its optional message:
        screened by the chat's rules before the debit (a refused text costs nothing), then
        posted in the room's chat (held for review if it has a blocked term) and carried on the
        room's `gift` event. Moderators hide it as a chat message; the ledger never holds it."""
        text = None
        if message is not None and message.strip():
            limit = self.settings.commerce.gifts_message_max_chars
            text = await self.chat.screen(room.room_id, claims.sub, message, limit)
        applied, gift = await self.commerce.send_gift(
            room.room_id, user=claims.sub, user_name=claims.name, host=room.owner,
            seller=room.seller, key=key, gift_id=gift_id, count=count, show=room.show,
            announce=False,
        )  # fmt: skip
        if applied.replayed:
            return SentGift(applied, gift, None)
        posted: dict[str, Any] | None = None
        shown: dict[str, str] | None = None
        if text is not None:
            try:
                about = {"gift_id": gift["gift_id"], "name": gift["name"], "count": count}
                m, held = await self.chat.post(room.room_id, claims, text, gift=about)
                posted = {"id": m["id"], "held": held}
                shown = None if held else {"id": m["id"], "text": text}
            except STORE_ERRORS as exc:  # the gift is made: it goes out without its text
                log.warning("gift message not posted in room %s: %s", room.room_id, exc)
        self.commerce.announce_gift(
            room.room_id, claims.sub, claims.name, gift, count, room.show, shown
        )
        return SentGift(applied, gift, posted)

    async def buy(
        self, claims: Claims, room_id: str, data: dict[str, Any], address: str
    ) -> dict[str, Any]:
        """Socket.IO `buy {room, sale_id, quantity, key}` from a socket in the room: the
        reservation of `POST /api/rooms/{room}/sales/{sale}/reservations` (same service call,
        script, idempotency and limits; `address` is the per-address limit's), acknowledged with
        the 201 answer's fields and `ok: true`, or the same error codes."""
        try:
            req = parse(BuySocketIn, data)
            require_role(claims, room_id, *BUYER_ROLES)
            result = await self.commerce.reserve(
                room_id, req.sale_id, user=claims.sub, user_name=claims.name,
                idempotency_key=req.key, ip=self.privacy.ip_key(address),
                **req.reservation_fields(),
            )  # fmt: skip
        except DomainError as exc:
            self._buy_result(exc.code).inc()
            raise
        except STORE_ERRORS:
            self._buy_result("store_unavailable").inc()
            raise
        self._buy_result("replay" if result.replayed else "reserved").inc()
        # A fresh dict per call (the script's JSON, decoded): extended in place.
        ack = result.reservation
        ack["stock_left"], ack["replayed"], ack["ok"] = result.stock_left, result.replayed, True
        return ack

    def _buy_result(self, result: str) -> Any:
        child = self._buy_results.get(result)
        if child is None:
            child = self._buy_results[result] = self.metrics.socket_buys.labels(result)
        return child

    async def start(self, app: web.Application) -> None:
        await self.chat.start()
        await self.commerce.start()
        await self.registry.start()
        await self.privacy.start()

    async def stop(self, app: web.Application) -> None:
        await self.privacy.stop()
        await self.registry.stop()
        await self.commerce.stop()
        await self.chat.stop()
        await self.auth.close()


def authority_of(auth: AuthSettings) -> TokenAuthority:
    """The node's token authority: its secret, a PEM public key, the IdP's JWKS, as configured."""
    oidc = None
    if auth.jwks_url:
        oidc = Oidc(
            KeySet(auth.jwks_url, refresh_min_s=auth.jwks_refresh_min_s),
            issuer=auth.jwt_issuer,
            audience=auth.jwt_audience,
            role_claim=auth.jwt_role_claim,
            rooms_claim=auth.jwt_rooms_claim,
            shop_claim=auth.jwt_shop_claim,
        )
    return TokenAuthority(
        auth.jwt_secret.get_secret_value(),
        auth.jwt_public_key,
        max_ttl_s=auth.token_max_ttl_s,
        oidc=oidc,
    )


NODE = web.AppKey("node", Node)
