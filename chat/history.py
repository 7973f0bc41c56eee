"""Per-room chat history in a Redis Stream; the stream id is the message id clients resume from."""

from __future__ import annotations

import json
import re
from typing import Any

import redis.asyncio as aioredis

from core.errors import DomainError
from core.store import room_key

RECENT_ON_JOIN = 50
_U64 = (1 << 64) - 1
_STREAM_ID = re.compile(r"(\d{1,20})-(\d{1,20})")


def valid_stream_id(text: str) -> bool:
    """Whether `text` is a full stream id `ms-seq` Redis accepts (both parts unsigned 64-bit)."""
    match = _STREAM_ID.fullmatch(text)
    return match is not None and all(int(part) <= _U64 for part in match.groups())


def _message(entry_id: bytes, fields: dict[bytes, bytes]) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(fields[b"m"])
    message["id"] = entry_id.decode()
    return message


class History:
    def __init__(self, redis: aioredis.Redis, max_len: int) -> None:
        self._redis = redis
        self._max_len = max_len

    @staticmethod
    def key(room: str) -> str:
        return room_key(room, "chat")

    async def append(self, room: str, message: dict[str, Any]) -> str:
        """Store `message` (without id) and return its id."""
        entry_id = await self._redis.xadd(
            self.key(room),
            {"m": json.dumps(message, separators=(",", ":"))},
            maxlen=self._max_len,
            approximate=True,
        )
        return str(entry_id.decode())

    async def since(self, room: str, last_seen: str | None) -> list[dict[str, Any]]:
        """Messages after `last_seen` (exclusive), oldest first; the recent ones when it is None."""
        key = self.key(room)
        if last_seen is not None and not valid_stream_id(last_seen):
            # Checked here: Redis refuses such an id with an error, which would read as an outage.
            raise DomainError(
                "invalid_since", "since must be a message id 'ms-seq' (unsigned 64-bit parts)"
            )
        if last_seen is None:
            entries = await self._redis.xrevrange(key, count=RECENT_ON_JOIN)
            return [_message(i, f) for i, f in reversed(entries)]
        if last_seen.split("-") == [str(_U64), str(_U64)]:
            return []  # nothing can follow it (and Redis refuses it as an exclusive start)
        entries = await self._redis.xrange(key, min=f"({last_seen}", count=self._max_len)
        return [_message(i, f) for i, f in entries]

    async def get(self, room: str, message_id: str) -> dict[str, Any] | None:
        entries = await self._redis.xrange(self.key(room), min=message_id, max=message_id)
        return _message(*entries[0]) if entries else None

    async def delete(self, room: str, message_id: str) -> bool:
        return bool(await self._redis.xdel(self.key(room), message_id))

    async def clear(self, room: str) -> None:
        # XTRIM keeps the stream's last id, so new ids stay greater than any a client has seen.
        await self._redis.xtrim(self.key(room), maxlen=0)
