"""What chat holds about a user, exported and erased (`core.privacy.PersonalData`), and its
retention: history and moderation records older than N days dropped (docs/privacy.md).

Every chat key of a room carries its hash tag, so each room is walked on its own: the room index
`live:rooms`, then per room its history, held messages, pinned message, bans, mutes, names,
staff, audit and the user's rate windows. The history is a capped stream
(`LIVE_CHAT_HISTORY_LEN`), so finding a user's messages costs one read of every room's retained
history: no per-user index is kept (it would add a write of another slot to every message).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis

from core.privacy import StreamRewriter, names_user, pseudonymise, stream_entries
from core.rooms import ROOMS_INDEX
from core.store import room_key

# Called with a room and the ids of the messages erased from its history (the node tells the
# room's clients, as for a moderator's delete).
OnErased = Callable[[str, list[str]], Awaitable[None]]
DAY_MS = 86_400_000


def _user_of(message: dict[str, Any]) -> str | None:
    user = message.get("user")
    return user.get("id") if isinstance(user, dict) else None


class ChatPersonalData:
    name = "chat"

    def __init__(self, redis: aioredis.Redis, on_erased: OnErased | None = None) -> None:
        self._redis = redis
        self._rewriter = StreamRewriter(redis)
        self._on_erased = on_erased

    async def _rooms(self) -> list[str]:
        return sorted(r.decode() for r in await self._redis.smembers(ROOMS_INDEX))

    async def _messages(self, room: str, user: str) -> list[dict[str, Any]]:
        found = []
        async for entry_id, fields in stream_entries(self._redis, room_key(room, "chat"), user):
            message = json.loads(fields[b"m"])
            if _user_of(message) == user:
                found.append({**message, "id": entry_id})
        return found

    async def _audit(self, room: str, user: str) -> list[tuple[str, dict[str, Any]]]:
        found = []
        async for entry_id, fields in stream_entries(self._redis, room_key(room, "audit"), user):
            entry = json.loads(fields[b"a"])
            if names_user(entry, user):
                found.append((entry_id, entry))
        return found

    async def _held(self, room: str, user: str) -> dict[str, dict[str, Any]]:
        raw = await self._redis.hgetall(room_key(room, "held"))
        held = {k.decode(): json.loads(v) for k, v in raw.items()}
        return {k: m for k, m in held.items() if _user_of(m) == user}

    async def _pinned(self, room: str, user: str) -> dict[str, Any] | None:
        raw = await self._redis.get(room_key(room, "pinned_msg"))
        message = json.loads(raw) if raw else None
        return message if message and _user_of(message) == user else None

    async def export(self, user: str) -> dict[str, Any]:
        rooms: dict[str, Any] = {}
        for room in await self._rooms():
            r = self._redis
            async with r.pipeline(transaction=False) as pipe:  # one slot: the room's
                pipe.sismember(room_key(room, "bans"), user)
                pipe.zscore(room_key(room, "mutes"), user)
                pipe.hget(room_key(room, "names"), user)
                pipe.hget(room_key(room, "staff"), user)
                banned, muted, name, staff = await pipe.execute()
            record: dict[str, Any] = {
                "messages": await self._messages(room, user),
                "held": list((await self._held(room, user)).values()),
                "pinned": await self._pinned(room, user),
                "audit": [{"id": i, **e} for i, e in await self._audit(room, user)],
                "banned": bool(banned),
                "muted_until": int(muted) if muted is not None else None,
                "name": name.decode() if name else None,
                "staff": staff.decode() if staff else None,
            }
            if any(record.values()):
                rooms[room] = record
        return {"rooms": rooms} if rooms else {}

    async def erase(self, user: str, pseudonym: str) -> dict[str, int]:
        counts = dict.fromkeys(("messages", "held", "pinned", "audit", "records"), 0)
        for room in await self._rooms():
            messages = [m["id"] for m in await self._messages(room, user)]
            if messages:
                # XDEL: the ids go with the text. Recovery (`join {since}`) is XRANGE from an
                # exclusive bound, which needs no entry at that id, and a stream keeps its last
                # id, so other clients' resumption is unchanged (tests/live/test_privacy.py).
                counts["messages"] += await self._redis.xdel(room_key(room, "chat"), *messages)
                if self._on_erased is not None:
                    await self._on_erased(room, messages)
            held = await self._held(room, user)
            if held:
                counts["held"] += await self._redis.hdel(room_key(room, "held"), *held)
            if await self._pinned(room, user):
                counts["pinned"] += await self._redis.delete(room_key(room, "pinned_msg"))
            audit = await self._audit(room, user)
            counts["audit"] += await self._rewriter.rewrite(
                room_key(room, "audit"),
                {i: ["a", json.dumps(pseudonymise(e, user, pseudonym))] for i, e in audit},
            )
            async with self._redis.pipeline(transaction=False) as pipe:  # one slot: the room's
                pipe.srem(room_key(room, "bans"), user)
                pipe.zrem(room_key(room, "mutes"), user)
                pipe.hdel(room_key(room, "names"), user)
                pipe.hdel(room_key(room, "staff"), user)
                pipe.delete(room_key(room, "rate:" + user), room_key(room, "slowlast:" + user))
                counts["records"] += sum(int(n) for n in await pipe.execute())
        return counts


class ChatRetention:
    """Drops chat history and moderation records older than `days` (0: keeps them): stream ids
    are times, so history and audit lose what is below `now - days` (`XTRIM MINID`); held
    messages by their `ts`; mutes once over."""

    def __init__(self, redis: aioredis.Redis, days: int) -> None:
        self._redis = redis
        self._days = days

    async def sweep_once(self, now_ms: int) -> int:
        """One pass over every room; returns how many records went."""
        if self._days <= 0:
            return 0
        cutoff = now_ms - self._days * DAY_MS
        dropped = 0
        for raw in await self._redis.smembers(ROOMS_INDEX):
            room = raw.decode()
            async with self._redis.pipeline(transaction=False) as pipe:  # one slot: the room's
                pipe.xtrim(room_key(room, "chat"), minid=cutoff, approximate=False)
                pipe.xtrim(room_key(room, "audit"), minid=cutoff, approximate=False)
                pipe.zremrangebyscore(room_key(room, "mutes"), "-inf", now_ms)
                pipe.hgetall(room_key(room, "held"))
                *trimmed, held = await pipe.execute()
            dropped += sum(int(n) for n in trimmed)
            old = [k for k, v in held.items() if int(json.loads(v).get("ts", 0)) < cutoff]
            if old:
                dropped += await self._redis.hdel(room_key(room, "held"), *old)
        return dropped
