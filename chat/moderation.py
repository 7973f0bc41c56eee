"""Moderation state in Redis, so every node enforces it: bans, timed mutes, slow mode, rate limit,
blocked terms, the held-for-review queue, the pinned message, the audit stream and the room's
staff (who may not be muted or banned by whom)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis

from chat.errors import ChatError
from core.auth import MODERATING_ROLES
from core.rooms import Room, RoomStore
from core.store import room_key

# One round trip decides whether a user may post now. Moderators skip slow mode and the rate
# limit, never a ban or a mute. The rate limit is a sliding log: members are `ms:count`, unique
# because nothing newer than the window is removed within one millisecond.
ADMIT_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return {'banned', '0'} end
local muted = tonumber(redis.call('ZSCORE', KEYS[2], ARGV[1]) or '0')
if muted > now then return {'muted', tostring(muted)} end
if ARGV[2] == '1' then return {'ok', '0'} end
local slow = tonumber(redis.call('GET', KEYS[3]) or '0')
if slow > 0 then
  local last = tonumber(redis.call('GET', KEYS[4]) or '0')
  if now - last < slow * 1000 then return {'slow', tostring(last + slow * 1000)} end
end
local limit, window = tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now - window)
local used = redis.call('ZCARD', KEYS[5])
if used >= limit then
  local oldest = redis.call('ZRANGE', KEYS[5], 0, 0, 'WITHSCORES')
  return {'rate_limited', tostring(tonumber(oldest[2]) + window)}
end
redis.call('ZADD', KEYS[5], now, now .. ':' .. used)
redis.call('PEXPIRE', KEYS[5], window)
if slow > 0 then redis.call('SET', KEYS[4], now, 'PX', slow * 1000) end
return {'ok', '0'}
"""

# Take a held message out of the queue exactly once, even with two moderators clicking at once.
TAKE_HELD_LUA = """
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v then redis.call('HDEL', KEYS[1], ARGV[1]) end
return v
"""

AUDIT_LEN = 1000


def now_ms() -> int:
    return int(time.time() * 1000)


class Moderation:
    def __init__(
        self,
        redis: aioredis.Redis,
        rate_count: int,
        rate_window_s: float,
        on_refused: Callable[[str], None] = lambda action: None,
    ) -> None:
        self._redis = redis
        self._on_refused = on_refused
        self._rooms = RoomStore(redis)
        self._rate = (rate_count, int(rate_window_s * 1000))
        self._admit = redis.register_script(ADMIT_LUA)
        self._take_held = redis.register_script(TAKE_HELD_LUA)

    async def admit(self, room: str, user: str, privileged: bool) -> tuple[str, int]:
        """('ok', 0) or (reason, until_ms) for banned, muted, slow and rate_limited."""
        keys = [
            room_key(room, "bans"),
            room_key(room, "mutes"),
            room_key(room, "slow"),
            room_key(room, "slowlast", user),
            room_key(room, "rate", user),
        ]
        args = [user, "1" if privileged else "0", self._rate[0], self._rate[1]]
        status, until = await self._admit(keys=keys, args=args)
        return status.decode(), int(until)

    # Bans and mutes
    async def ban(self, room: str, user: str) -> None:
        await self._redis.sadd(room_key(room, "bans"), user)

    async def unban(self, room: str, user: str) -> bool:
        return bool(await self._redis.srem(room_key(room, "bans"), user))

    async def is_banned(self, room: str, user: str) -> bool:
        return bool(await self._redis.sismember(room_key(room, "bans"), user))

    async def banned(self, room: str) -> list[str]:
        return sorted(m.decode() for m in await self._redis.smembers(room_key(room, "bans")))

    async def mute(self, room: str, user: str, seconds: int) -> int:
        until = now_ms() + seconds * 1000
        await self._redis.zadd(room_key(room, "mutes"), {user: until})
        return until

    async def unmute(self, room: str, user: str) -> bool:
        return bool(await self._redis.zrem(room_key(room, "mutes"), user))

    async def muted(self, room: str) -> list[dict[str, Any]]:
        key = room_key(room, "mutes")
        await self._redis.zremrangebyscore(key, "-inf", now_ms())
        rows = await self._redis.zrange(key, 0, -1, withscores=True)
        return [{"user_id": m.decode(), "until": int(s)} for m, s in rows]

    # Slow mode
    async def set_slow(self, room: str, seconds: int) -> None:
        if seconds:
            await self._redis.set(room_key(room, "slow"), seconds)
        else:
            await self._redis.delete(room_key(room, "slow"))

    async def slow(self, room: str) -> int:
        return int(await self._redis.get(room_key(room, "slow")) or 0)

    # Blocked terms
    async def add_term(self, room: str, term: str) -> None:
        await self._redis.sadd(room_key(room, "terms"), term)

    async def remove_term(self, room: str, term: str) -> bool:
        return bool(await self._redis.srem(room_key(room, "terms"), term))

    async def terms(self, room: str) -> list[str]:
        return sorted(t.decode() for t in await self._redis.smembers(room_key(room, "terms")))

    # Held for review
    async def hold(self, room: str, message: dict[str, Any]) -> None:
        await self._redis.hset(room_key(room, "held"), message["id"], json.dumps(message))

    async def take_held(self, room: str, held_id: str) -> dict[str, Any] | None:
        raw = await self._take_held(keys=[room_key(room, "held")], args=[held_id])
        return json.loads(raw) if raw else None

    async def held(self, room: str) -> list[dict[str, Any]]:
        raw = await self._redis.hvals(room_key(room, "held"))
        return sorted((json.loads(v) for v in raw), key=lambda m: m["ts"])

    # Pinned message
    async def pin(self, room: str, message: dict[str, Any] | None) -> None:
        if message is None:
            await self._redis.delete(room_key(room, "pinned_msg"))
        else:
            await self._redis.set(room_key(room, "pinned_msg"), json.dumps(message))

    async def pinned(self, room: str) -> dict[str, Any] | None:
        raw = await self._redis.get(room_key(room, "pinned_msg"))
        return json.loads(raw) if raw else None

    # Audit
    async def audit(self, room: str, entry: dict[str, Any]) -> dict[str, Any]:
        entry = {"ts": now_ms(), **entry}
        entry_id = await self._redis.xadd(
            room_key(room, "audit"),
            {"a": json.dumps(entry)},
            maxlen=AUDIT_LEN,
            approximate=True,
        )
        return {"id": entry_id.decode(), **entry}

    async def audit_log(self, room: str, count: int = 100) -> list[dict[str, Any]]:
        rows = await self._redis.xrevrange(room_key(room, "audit"), count=count)
        return [{"id": i.decode(), **json.loads(f[b"a"])} for i, f in rows]

    # Display names of users seen in the room, for the console's lists, and its staff: the
    # moderating role each user last joined with (kept: a moderator who left stays staff).
    async def remember_user(self, room: str, user: str, name: str, role: str) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hset(room_key(room, "names"), user, name)
            if role in MODERATING_ROLES:
                pipe.hset(room_key(room, "staff"), user, role)
            await pipe.execute()

    async def room(self, room: str) -> Room | None:
        return await self._rooms.get(room)

    async def staff_role(self, room: str, user: str) -> str | None:
        """`owner` for the room's owner, else the moderating role the user joined with."""
        room_record = await self._rooms.get(room)
        if room_record is not None and room_record.owner == user:
            return "owner"
        role = await self._redis.hget(room_key(room, "staff"), user)
        return role.decode() if role else None

    async def check_target(self, room: str, actor_role: str, action: str, user: str) -> None:
        """Refuse (`forbidden`) a mute or ban of the room's owner, of a host, or (unless the
        actor is a host) of a moderator: staff answer to the seller, not to each other."""
        target = await self.staff_role(room, user)
        if target is None or (actor_role == "host" and target == "moderator"):
            return
        self._on_refused(action)
        raise ChatError("forbidden", f"a {actor_role} may not {action} the room's {target}")

    async def names(self, room: str, users: list[str]) -> dict[str, str]:
        if not users:
            return {}
        values = await self._redis.hmget(room_key(room, "names"), users)
        return {u: (v.decode() if v else u) for u, v in zip(users, values, strict=True)}
