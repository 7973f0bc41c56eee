"""Signed webhooks to the core order system: one POST per purchase event, retried with
exponential backoff, parked in a dead-letter stream after the last attempt (`replay` re-sends).

Headers: `X-Live-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>." + raw body>`,
`X-Live-Event-Id`, `X-Live-Event-Type`, `X-Live-Timestamp` (the same t), `X-Live-Attempt`.
The timestamp is signed so a captured request cannot be replayed later than the receiver's
tolerance; the body is the same on every attempt, so receivers dedupe by event id. Redirects are
not followed: a 3xx is a failed attempt (the signed body goes only where it was configured).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import random
import time
from dataclasses import dataclass

import aiohttp
import redis.asyncio as aioredis

from commerce.delivery import PurchaseEvent

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Live-Signature"
EVENT_ID_HEADER = "X-Live-Event-Id"
EVENT_TYPE_HEADER = "X-Live-Event-Type"
TIMESTAMP_HEADER = "X-Live-Timestamp"
ATTEMPT_HEADER = "X-Live-Attempt"


# How far a signature's timestamp may be from the receiver's clock (either way) by default.
TOLERANCE_S = 300


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The `X-Live-Signature` value for `body` sent at `timestamp` (unix seconds)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(
    secret: str,
    body: bytes,
    signature: str,
    *,
    tolerance_s: float = TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """Whether `signature` signs `body` with `secret` at a time within `tolerance_s` of `now`."""
    parts = dict(p.partition("=")[::2] for p in signature.split(","))
    try:
        timestamp = int(parts.get("t", ""))
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, body, timestamp), signature)


def body_of(event: PurchaseEvent) -> bytes:
    doc = {"event_id": event.event_id, "type": event.type, "data": event.data}
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


class WebhookSender:
    """A `StreamConsumer` handler: delivers or dead-letters, and then lets the entry be acked."""

    def __init__(
        self,
        redis: aioredis.Redis,
        session: aiohttp.ClientSession,
        *,
        url: str,
        secret: str,
        dead_letter_stream: str,
        max_attempts: int = 6,
        backoff_s: float = 0.5,
        backoff_max_s: float = 30.0,
        timeout_s: float = 5.0,
    ) -> None:
        self._redis = redis
        self._session = session
        self.url = url
        self._secret = secret
        self._dead = dead_letter_stream
        self._attempts = max_attempts
        self._backoff = backoff_s
        self._backoff_max = backoff_max_s
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.delivered = 0
        self.dead_lettered = 0

    async def __call__(self, event: PurchaseEvent) -> bool:
        error = await self.deliver(event)
        if not error:
            return True
        log.warning("webhook for %s dead-lettered after %d attempts: %s", event.event_id,
                    self._attempts, error)  # fmt: skip
        await self._redis.xadd(
            self._dead,
            {
                "type": event.type,
                "data": json.dumps(event.data),
                "event_id": event.event_id,
                "url": self.url,
                "attempts": str(self._attempts),
                "error": error,
            },
        )
        self.dead_lettered += 1
        return True

    async def deliver(self, event: PurchaseEvent) -> str:
        """Post `event` until it is accepted or the attempts run out: "" or the last error."""
        body = body_of(event)
        error = ""
        for attempt in range(1, self._attempts + 1):
            error = await self._post(event, body, attempt)
            if not error:
                self.delivered += 1
                return ""
            if attempt < self._attempts:
                delay = min(self._backoff_max, self._backoff * 2 ** (attempt - 1))
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
        return error

    async def _post(self, event: PurchaseEvent, body: bytes, attempt: int) -> str:
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self._secret, body, timestamp),
            EVENT_ID_HEADER: event.event_id,
            EVENT_TYPE_HEADER: event.type,
            TIMESTAMP_HEADER: str(timestamp),
            ATTEMPT_HEADER: str(attempt),
        }
        try:
            async with self._session.post(
                self.url, data=body, headers=headers, timeout=self._timeout, allow_redirects=False
            ) as response:
                await response.read()
                return "" if 200 <= response.status < 300 else f"HTTP {response.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            return f"{type(exc).__name__}: {exc}"


@dataclass
class Replayed:
    """What `replay` did with the dead letters it read."""

    delivered: int = 0
    failed: int = 0
    duplicates: int = 0  # entries of an event already delivered in this pass (removed too)


async def replay(redis: aioredis.Redis, sender: WebhookSender, stream: str) -> Replayed:
    """Re-send every dead letter of `stream` once (with the sender's attempts); remove each one
    delivered. Entries of one event id are sent once: receivers dedupe by it anyway, and a second
    replay finds only what failed again."""
    done = Replayed()
    delivered: set[str] = set()
    after = "-"
    while True:
        entries = await redis.xrange(stream, min=after, count=100)
        if not entries:
            return done
        for entry_id, fields in entries:
            event = PurchaseEvent.from_entry(entry_id, fields)
            # The event's id is in its data (the dead letter's own entry id is not the event's).
            event_id = fields.get(b"event_id", b"").decode() or event.event_id
            event.data.setdefault("event_id", event_id)
            if event_id in delivered:
                done.duplicates += 1
            elif await sender.deliver(event):
                done.failed += 1
                continue
            else:
                delivered.add(event_id)
                done.delivered += 1
            await redis.xdel(stream, entry_id)
        last = entries[-1][0]
        after = "(" + (last.decode() if isinstance(last, bytes) else str(last))
