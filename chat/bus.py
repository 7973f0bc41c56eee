"""Cross-node fan-out: one sharded pub/sub channel per room (SPUBLISH / SSUBSCRIBE), msgpack
envelopes.

A node subscribes only to the rooms it has members in, so it never decodes the traffic of rooms
it does not serve (python-socketio's Redis manager decodes every broadcast on every node). The
channel `live:{room:ID}:bus` carries the room's hash tag: on a Valkey Cluster a room's traffic
goes only through the master of the room's slot (plain PUBLISH is broadcast to every node of a
cluster), and a node holds one pub/sub connection per master it has rooms on, each read by a task
of its own. A single Valkey (7+) takes the same commands.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgpack
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError

from core.store import STORE_ERRORS, room_key

log = logging.getLogger(__name__)

# An envelope: {"n": origin node, "e": event, "d": data, "t": target}. Targets: "room",
# "mods" (the room's moderators), "user:<id>" (that user's sockets), "kick:<id>" (ban).
Envelope = dict[str, Any]
Deliver = Callable[[str, Envelope], Awaitable[None]]
Resubscribed = Callable[[list[str]], Awaitable[None]]

_PREFIX, _SUFFIX = "live:{room:", "}:bus"
# A shard reader also stops on RuntimeError: redis-py's per-node pub/sub without a connection.
SHARD_ERRORS: tuple[type[Exception], ...] = (*STORE_ERRORS, RuntimeError)


def channel(room: str) -> str:
    """`live:{room:ID}:bus`: in the room's cluster slot, beside its keys."""
    return room_key(room, "bus")


def room_of(name: bytes | str) -> str:
    text = name.decode() if isinstance(name, bytes) else name
    return text.removeprefix(_PREFIX).removesuffix(_SUFFIX)


class RoomBus:
    def __init__(
        self, redis: aioredis.Redis, node_id: str, deliver: Deliver, resubscribed: Resubscribed
    ) -> None:
        self._redis = redis
        self._node_id = node_id
        self._deliver = deliver
        self._resubscribed = resubscribed
        self._cluster = isinstance(redis, RedisCluster)
        self._pubsub = redis.pubsub(ignore_subscribe_messages=True)
        self._watching: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        # Cluster mode: a reader per master with subscriptions; `_wake` wakes the supervisor to
        # start readers, and to subscribe everything again when `_broken`.
        self._readers: dict[str, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._broken = False

    async def start(self) -> None:
        if self._cluster:
            self._task = asyncio.create_task(self._supervise(), name="room-bus")
            return
        # A node channel keeps the pub/sub connection open before any room is watched.
        await self._pubsub.subscribe(self._node_channel)
        self._task = asyncio.create_task(self._read(), name="room-bus")

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._readers.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._readers.clear()
        with contextlib.suppress(*STORE_ERRORS):
            await self._pubsub.aclose()

    @property
    def _node_channel(self) -> str:
        return "live:node:" + self._node_id

    async def watch(self, room: str) -> None:
        if room not in self._watching:
            self._watching.add(room)
            try:
                await self._pubsub.ssubscribe(channel(room))
            except STORE_ERRORS:
                if self._cluster:
                    self._break()  # the supervisor subscribes again once the shard answers
                raise
            self._wake.set()

    async def unwatch(self, room: str) -> None:
        if room in self._watching:
            self._watching.discard(room)
            await self._pubsub.sunsubscribe(channel(room))

    async def publish(self, room: str, event: str, data: dict[str, Any], target: str) -> None:
        envelope = {"n": self._node_id, "e": event, "d": data, "t": target}
        await self._redis.spublish(channel(room), msgpack.packb(envelope))

    async def _handle(self, message: dict[str, Any] | None) -> None:
        if message is None or message["type"] != "smessage":
            return
        try:
            envelope = msgpack.unpackb(message["data"])
            if envelope.get("n") == self._node_id:
                return  # delivered locally when published
            await self._deliver(room_of(message["channel"]), envelope)
        except Exception:
            log.exception("could not deliver a bus message")

    # -- one Valkey: one connection ------------------------------------------------------------

    async def _read(self) -> None:
        while True:
            try:
                message = await self._pubsub.get_message(timeout=1.0)
            except (RedisConnectionError, OSError) as exc:
                log.warning("room bus lost its connection, reconnecting: %s", exc)
                await self._reconnect()
                continue
            await self._handle(message)

    async def _reconnect(self) -> None:
        """A new pub/sub connection with every subscription; then rooms must resync, since
        whatever was published meanwhile never reached this node."""
        with contextlib.suppress(Exception):
            await self._pubsub.aclose()
        self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        delay = 0.1
        while True:
            try:
                if self._cluster:
                    with contextlib.suppress(*STORE_ERRORS):
                        # Learn who owns the slots now (a replica promoted after a failover).
                        await self._redis.nodes_manager.initialize()
                else:
                    await self._pubsub.subscribe(self._node_channel)
                for room in sorted(self._watching):
                    await self._pubsub.ssubscribe(channel(room))
                break
            except STORE_ERRORS:
                with contextlib.suppress(Exception):
                    await self._pubsub.aclose()
                self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        log.info("room bus reconnected (%d rooms)", len(self._watching))
        await self._resubscribed(sorted(self._watching))

    # -- a cluster: a connection and a reader per master ---------------------------------------

    def _break(self) -> None:
        self._broken = True
        self._wake.set()

    async def _supervise(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 0.5)
            self._wake.clear()
            if self._broken:
                self._broken = False
                for task in self._readers.values():
                    task.cancel()
                for task in self._readers.values():
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                self._readers.clear()
                log.warning("room bus lost a shard connection, reconnecting")
                await self._reconnect()
            self._readers = {n: t for n, t in self._readers.items() if not t.done()}
            for name in self._pubsub.node_pubsub_mapping:
                if name not in self._readers:
                    self._readers[name] = asyncio.create_task(
                        self._read_shard(name), name=f"room-bus-{name}"
                    )

    async def _read_shard(self, name: str) -> None:
        pubsub = self._pubsub
        while name in pubsub.node_pubsub_mapping:
            node = self._redis.get_node(node_name=name)
            if node is None:
                break
            try:
                message = await pubsub.get_sharded_message(
                    ignore_subscribe_messages=True, target_node=node, timeout=1.0
                )
            except SHARD_ERRORS as exc:
                log.warning("room bus: shard %s: %s", name, exc)
                self._break()
                return
            await self._handle(message)
