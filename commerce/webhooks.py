"""Signed webhooks to the core order system: one POST per purchase event, retried with
exponential backoff, parked in a dead-letter stream after the last attempt.

Headers: `X-Live-Signature: sha256=<hex HMAC-SHA256 of the raw body>`, `X-Live-Event-Id`,
`X-Live-Event-Type`, `X-Live-Timestamp` (unix seconds of this attempt), `X-Live-Attempt`.
The body is the same on every attempt, so receivers dedupe by event id.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import random
import time

import aiohttp
import redis.asyncio as aioredis

from commerce.delivery import PurchaseEvent

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Live-Signature"
EVENT_ID_HEADER = "X-Live-Event-Id"
EVENT_TYPE_HEADER = "X-Live-Event-Type"
TIMESTAMP_HEADER = "X-Live-Timestamp"
ATTEMPT_HEADER = "X-Live-Attempt"


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, signature: str) -> bool:
    """Constant-time check of a received signature (for receivers and tests)."""
    return hmac.compare_digest(sign(secret, body), signature)


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
        body = body_of(event)
        error = ""
        for attempt in range(1, self._attempts + 1):
            error = await self._post(event, body, attempt)
            if not error:
                self.delivered += 1
                return True
            if attempt < self._attempts:
                delay = min(self._backoff_max, self._backoff * 2 ** (attempt - 1))
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
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

    async def _post(self, event: PurchaseEvent, body: bytes, attempt: int) -> str:
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self._secret, body),
            EVENT_ID_HEADER: event.event_id,
            EVENT_TYPE_HEADER: event.type,
            TIMESTAMP_HEADER: str(int(time.time())),
            ATTEMPT_HEADER: str(attempt),
        }
        try:
            async with self._session.post(
                self.url, data=body, headers=headers, timeout=self._timeout
            ) as response:
                await response.read()
                return "" if 200 <= response.status < 300 else f"HTTP {response.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            return f"{type(exc).__name__}: {exc}"
