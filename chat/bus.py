"""Cross-node fan-out: one Redis pub/sub channel per room, msgpack envelopes.

A node subscribes only to the rooms it has members in, so it never decodes the traffic of rooms
it does not serve (python-socketio's Redis manager decodes every broadcast on every node).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgpack
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

log = logging.getLogger(__name__)

# An envelope: {"n": origin node, "e": event, "d": data, "t": target}. Targets: "room",
# "mods" (the room's moderators), "user:<id>" (that user's sockets), "kick:<id>" (ban).
Envelope = dict[str, Any]
Deliver = Callable[[str, Envelope], Awaitable[None]]
Resubscribed = Callable[[list[str]], Awaitable[None]]

CHANNEL_PREFIX = "live:bus:"


def channel(room: str) -> str:
    return CHANNEL_PREFIX + room


class RoomBus:
    def __init__(
        self, redis: aioredis.Redis, node_id: str, deliver: Deliver, resubscribed: Resubscribed
    ) -> None:
        self._redis = redis
        self._node_id = node_id
        self._deliver = deliver
        self._resubscribed = resubscribed
        self._pubsub = redis.pubsub(ignore_subscribe_messages=True)
        self._watching: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def start(self) -> None:
        # A node channel keeps the pub/sub connection open before any room is watched.
        await self._pubsub.subscribe(self._node_channel)
        self._task = asyncio.create_task(self._read(), name="room-bus")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._pubsub.aclose()

    @property
    def _node_channel(self) -> str:
        return "live:node:" + self._node_id

    async def watch(self, room: str) -> None:
        if room not in self._watching:
            self._watching.add(room)
            await self._pubsub.subscribe(channel(room))

    async def unwatch(self, room: str) -> None:
        if room in self._watching:
            self._watching.discard(room)
            await self._pubsub.unsubscribe(channel(room))

    async def _reconnect(self) -> None:
        """A new pub/sub connection with every subscription; then rooms must resync, since
        whatever was published meanwhile never reached this node."""
        with contextlib.suppress(Exception):
            await self._pubsub.aclose()
        self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        delay = 0.1
        while True:
            try:
                await self._pubsub.subscribe(self._node_channel, *map(channel, self._watching))
                break
            except (RedisConnectionError, OSError):
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        log.info("room bus reconnected (%d rooms)", len(self._watching))
        await self._resubscribed(sorted(self._watching))

    async def publish(self, room: str, event: str, data: dict[str, Any], target: str) -> None:
        envelope = {"n": self._node_id, "e": event, "d": data, "t": target}
        await self._redis.publish(channel(room), msgpack.packb(envelope))

    async def _read(self) -> None:
        while True:
            try:
                message = await self._pubsub.get_message(timeout=1.0)
            except (RedisConnectionError, OSError) as exc:
                log.warning("room bus lost its connection, reconnecting: %s", exc)
                await self._reconnect()
                continue
            if message is None or message["type"] != "message":
                continue
            try:
                envelope = msgpack.unpackb(message["data"])
                if envelope.get("n") == self._node_id:
                    continue  # delivered locally when published
                room = message["channel"].decode().removeprefix(CHANNEL_PREFIX)
                await self._deliver(room, envelope)
            except Exception:
                log.exception("could not deliver a bus message")
