"""Privacy rights, composed: every part's `PersonalData` (chat, commerce, the rooms a user owns)
behind one export and one erase, the privacy audit stream, the metrics, and the chat retention
sweep. Domains never see each other: the node hands each its own parts (docs/privacy.md)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from typing import Any

import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry, Counter

from chat.privacy import ChatPersonalData, ChatRetention, OnErased
from commerce.config import CommerceSettings
from commerce.privacy import CommercePersonalData
from core.auth import Claims, user_seller
from core.config import PrivacySettings
from core.errors import DomainError
from core.privacy import IpKeys, PersonalData, pseudonym
from core.rooms import ROOMS_INDEX
from core.store import STORE_ERRORS, room_key

log = logging.getLogger(__name__)
# Who asked for what, when, about which pseudonym, with what result: never the user id.
AUDIT = "live:privacy:audit"
AUDIT_LEN = 100_000
# One erasure at a time on the whole platform: two would rebuild the same streams at once.
LOCK = "live:privacy:lock"
LOCK_MS = 600_000  # an erasure that died leaves the lock this long at most
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RoomsPersonalData:
    """Rooms whose owner is the user (their meta's `owner`, and `seller` `user:ID` for a host
    without a shop): exported; erased to the pseudonym."""

    name = "rooms"

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def _owned(self, user: str) -> dict[str, dict[str, str]]:
        owned = {}
        for raw in await self._redis.smembers(ROOMS_INDEX):
            room = raw.decode()
            meta = {
                k.decode(): v.decode()
                for k, v in (await self._redis.hgetall(room_key(room, "meta"))).items()
            }
            if meta.get("owner") == user or meta.get("seller") == user_seller(user):
                owned[room] = meta
        return owned

    async def export(self, user: str) -> dict[str, Any]:
        owned = await self._owned(user)
        return {"owned": [{"room_id": r, **m} for r, m in sorted(owned.items())]} if owned else {}

    async def erase(self, user: str, pseudo: str) -> dict[str, int]:
        owned = await self._owned(user)
        for room, meta in owned.items():
            update = {}
            if meta.get("owner") == user:
                update["owner"] = pseudo
            if meta.get("seller") == user_seller(user):
                update["seller"] = user_seller(pseudo)
            await self._redis.hset(room_key(room, "meta"), mapping=update)
        return {"owned": len(owned)}


class Privacy:
    def __init__(
        self,
        redis: aioredis.Redis,
        settings: PrivacySettings,
        secret: str,
        commerce: CommerceSettings,
        registry: CollectorRegistry,
        on_erased: OnErased,
    ) -> None:
        self._redis = redis
        self._secret = settings.secret.get_secret_value() if settings.secret else secret
        self._interval = settings.retention_interval_s
        self.ip_key = IpKeys(self._secret)
        self.parts: list[PersonalData] = [
            ChatPersonalData(redis, on_erased),
            CommercePersonalData(redis, commerce),
            RoomsPersonalData(redis),
        ]
        self.retention = ChatRetention(redis, settings.chat_retention_days)
        self._requests = Counter(
            "live_privacy_requests_total",
            "Privacy requests answered (export, erase)",
            ["kind"],
            registry=registry,
        )
        self._retention_dropped = Counter(
            "live_privacy_retention_dropped_total",
            "Chat history entries and moderation records dropped by the retention sweep",
            registry=registry,
        )
        self._task: asyncio.Task[None] | None = None
        self._release = redis.register_script(RELEASE)

    def pseudonym(self, user: str) -> str:
        return pseudonym(self._secret, user)

    async def _record(self, kind: str, by: Claims, user: str, counts: dict[str, Any]) -> str:
        entry = {
            "kind": kind, "pseudonym": self.pseudonym(user), "by": by.sub, "role": by.role,
            "ts": int(time.time() * 1000), "counts": counts,
        }  # fmt: skip
        entry_id = await self._redis.xadd(
            AUDIT, {"a": json.dumps(entry)}, maxlen=AUDIT_LEN, approximate=True
        )
        self._requests.labels(kind).inc()
        return str(entry_id.decode())

    async def export(self, user: str, by: Claims) -> dict[str, Any]:
        data = {}
        for part in self.parts:
            found = await part.export(user)
            if found:
                data[part.name] = found
        request = await self._record("export", by, user, {p: len(v) for p, v in data.items()})
        return {"user_id": user, "request_id": request, "data": data}

    async def erase(self, user: str, by: Claims) -> dict[str, Any]:
        pseudo = self.pseudonym(user)
        token = secrets.token_hex(8)
        if not await self._redis.set(LOCK, token, nx=True, px=LOCK_MS):
            raise DomainError(
                "erasure_in_progress", "another erasure is running; retry", retry_after=5
            )
        try:
            counts = {part.name: await part.erase(user, pseudo) for part in self.parts}
            request = await self._record("erase", by, user, counts)
        finally:
            await self._release(keys=[LOCK], args=[token])
        return {"pseudonym": pseudo, "request_id": request, "erased": counts}

    async def start(self) -> None:
        self._task = asyncio.create_task(self._sweep_loop(), name="privacy-retention")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def sweep_once(self) -> int:
        dropped = await self.retention.sweep_once(int(time.time() * 1000))
        self._retention_dropped.inc(dropped)
        return dropped

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.sweep_once()
            except STORE_ERRORS as exc:
                log.warning("privacy retention sweep failed: %s", exc)
