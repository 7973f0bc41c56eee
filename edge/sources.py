"""Room sources: which node holds a room's WHIP session, so any other node can pull the room.

`live:{room:ID}:source` (a hash in the room's hash slot: `node_id`, `url`, `token`, `since`) is
written by the node whose host publishes, with a TTL its keeper refreshes every heartbeat while
the session lives, and deleted when it ends; a node that dies leaves it to expire. `token` is one
publishing attempt's: only that attempt refreshes or deletes the key, so a late release of an old
session never removes a newer one's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio as aioredis

from core.store import STORE_ERRORS

log = logging.getLogger(__name__)

# KEYS: source. ARGV: node id, url, token, ttl ms, now.
# Returns {} when the key is now ours (new, ours already, or a stale one of this node's), else
# {node id, url} of the node that holds it.
CLAIM_LUA = """
local cur = redis.call('HMGET', KEYS[1], 'node_id', 'url', 'token')
if cur[1] and cur[1] ~= ARGV[1] then return {cur[1], cur[2]} end
if cur[3] ~= ARGV[3] then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'node_id', ARGV[1], 'url', ARGV[2], 'token', ARGV[3],
             'since', ARGV[5])
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {}
"""

# KEYS: source. ARGV: token. Deletes the key only if that attempt still holds it.
RELEASE_LUA = """
if redis.call('HGET', KEYS[1], 'token') == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def source_key(room_id: str) -> str:
    return f"live:{{room:{room_id}}}:source"


@dataclass(frozen=True, slots=True)
class Source:
    """The node that holds a room's publisher."""

    node_id: str
    url: str


class RoomSources:
    """This node's claims on rooms it publishes, kept fresh; and everyone's, read by room."""

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        node_id: str,
        url: Callable[[], str | None],
        heartbeat_s: float = 1.0,
        ttl_s: float = 3.0,
    ) -> None:
        self._redis = redis
        self.node_id = node_id
        self._url = url
        self.heartbeat_s = heartbeat_s
        self.ttl_s = ttl_s
        self.held: dict[str, str] = {}  # room id -> token of this node's claim
        self._claim = redis.register_script(CLAIM_LUA)
        self._release = redis.register_script(RELEASE_LUA)
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return self._url() or ""

    async def get(self, room_id: str) -> Source | None:
        node_id, url = await self._redis.hmget(source_key(room_id), ["node_id", "url"])
        if node_id is None or url is None:
            return None
        return Source(node_id.decode(), url.decode())

    async def claim(self, room_id: str, token: str) -> Source | None:
        """Make this node the room's source for the attempt `token`; None when it now is, else
        the node that holds the room."""
        other = await self._write(room_id, token)
        if other is None:
            self.held[room_id] = token
        return other

    async def _write(self, room_id: str, token: str) -> Source | None:
        args = [self.node_id, self.url, token, int(self.ttl_s * 1000), repr(time.time())]
        held = await self._claim(keys=[source_key(room_id)], args=args)
        return Source(held[0].decode(), held[1].decode()) if held else None

    async def release(self, room_id: str, token: str) -> None:
        """Give the room up if the attempt `token` still holds it (here and in Redis)."""
        if self.held.get(room_id) == token:
            del self.held[room_id]
        await self._release(keys=[source_key(room_id)], args=[token])

    # -- the keeper -----------------------------------------------------------------------------

    async def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())
        self._task.set_name("room-sources")

    async def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.heartbeat_s)
            if self._stop.is_set():
                return
            for room_id, token in list(self.held.items()):
                try:
                    other = await self._write(room_id, token)
                    if self.held.get(room_id) != token:
                        # Released meanwhile: the write may have come after the delete.
                        await self._release(keys=[source_key(room_id)], args=[token])
                except STORE_ERRORS as exc:
                    log.warning("room source %s not refreshed: %s", room_id, exc)
                    continue
                if other is not None:
                    # Our key expired (a stall longer than its TTL) and another node claimed it.
                    log.warning("room %s: node %s took the source over", room_id, other.node_id)

    async def stop(self) -> None:
        """Stop refreshing and give every claim up (the sessions end with the node)."""
        self._stop.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        for room_id, token in list(self.held.items()):
            with contextlib.suppress(*STORE_ERRORS):
                await self.release(room_id, token)
