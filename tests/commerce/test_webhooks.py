"""Webhook safety: a URL needs a real secret, the signature covers the timestamp, redirects are
not followed, and `live webhooks replay` re-sends dead letters once each."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from pydantic import ValidationError

from commerce.config import CommerceSettings
from commerce.delivery import PurchaseEvent
from commerce.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookSender, verify
from tests.support.loopback import serving

SECRET = "hook-secret-" + "h" * 32
DEAD = "test:webhooks:dead"


class Receiver:
    """A loopback order system: `/hooks` answers `status` (a 307 points at `/elsewhere`)."""

    def __init__(self) -> None:
        self.status = 204
        self.hits: Counter[str] = Counter()  # event id -> verified posts to /hooks
        self.headers: list[dict[str, str]] = []
        self.elsewhere = 0
        self.bad_signatures = 0
        self.url = ""

    async def hooks(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not verify(SECRET, body, request.headers.get(SIGNATURE_HEADER, "")):
            self.bad_signatures += 1
            return web.Response(status=401)
        self.headers.append(dict(request.headers))
        self.hits[json.loads(body)["event_id"]] += 1
        if self.status == 307:
            raise web.HTTPTemporaryRedirect("/elsewhere")
        return web.Response(status=self.status)

    async def other(self, request: web.Request) -> web.Response:
        self.elsewhere += 1
        return web.Response(status=204)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hooks", rec.hooks)
    app.router.add_post("/elsewhere", rec.other)
    async with serving(app) as url:
        rec.url = url + "/hooks"
        yield rec


def _event(n: int) -> PurchaseEvent:
    return PurchaseEvent(f"{n}-0", "purchase.reserved", {"event_id": f"r{n}.reserved", "n": n})


def test_a_webhook_url_needs_a_secret_of_32_bytes() -> None:
    for secret in (None, "short"):
        with pytest.raises(ValidationError, match="LIVE_WEBHOOK_SECRET of at least 32 bytes"):
            CommerceSettings(webhook_url="http://hooks", webhook_secret=secret)
    assert CommerceSettings(webhook_url="http://hooks", webhook_secret=SECRET).webhook_url


async def test_the_signature_covers_the_timestamp(
    redis: aioredis.Redis, receiver: Receiver
) -> None:
    async with aiohttp.ClientSession() as session:
        sender = WebhookSender(redis, session, url=receiver.url, secret=SECRET,
                               dead_letter_stream=DEAD, max_attempts=1)  # fmt: skip
        assert await sender.deliver(_event(1)) == ""
    (headers,) = receiver.headers
    signature, sent_at = headers[SIGNATURE_HEADER], int(headers[TIMESTAMP_HEADER])
    assert signature.startswith(f"t={sent_at},v1=") and abs(sent_at - time.time()) < 60
    body = json.dumps({"data": {"event_id": "r1.reserved", "n": 1}, "event_id": "r1.reserved",
                       "type": "purchase.reserved"}, separators=(",", ":")).encode()  # fmt: skip
    assert verify(SECRET, body, signature)
    # Another timestamp with the same MAC, a stale or future request, another key: refused.
    forged = signature.replace(f"t={sent_at}", f"t={sent_at + 1}")
    assert not verify(SECRET, body, forged)
    assert not verify(SECRET, body, signature, now=sent_at + 301)
    assert not verify(SECRET, body, signature, now=sent_at - 301)
    assert verify(SECRET, body, signature, now=sent_at + 299)
    assert verify(SECRET, body, signature, now=sent_at + 3000, tolerance_s=3600)
    assert not verify("", body, signature) and not verify(SECRET, body, "sha256=00")


async def test_redirects_are_not_followed(redis: aioredis.Redis, receiver: Receiver) -> None:
    receiver.status = 307
    await redis.delete(DEAD)
    async with aiohttp.ClientSession() as session:
        sender = WebhookSender(redis, session, url=receiver.url, secret=SECRET,
                               dead_letter_stream=DEAD, max_attempts=2, backoff_s=0.01)  # fmt: skip
        assert await sender(_event(2))
    assert receiver.hits["r2.reserved"] == 2 and receiver.elsewhere == 0
    ((_, fields),) = await redis.xrange(DEAD)
    assert fields[b"error"] == b"HTTP 307" and fields[b"event_id"] == b"r2.reserved"


async def _replay(valkey_url: str, url: str, tmp_path: Path) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVE_WEBHOOK")}
    env.update(REDIS_URL=valkey_url, LIVE_WEBHOOK_URL=url, LIVE_WEBHOOK_SECRET=SECRET,
               LIVE_DEAD_LETTER_STREAM=DEAD)  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "live.cli.main", "webhooks", "replay", env=env, cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode() + err.decode()


async def test_replay_resends_dead_letters_once_each(
    redis: aioredis.Redis, receiver: Receiver, valkey_url: str, tmp_path: Path
) -> None:
    receiver.status = 500
    async with aiohttp.ClientSession() as session:
        sender = WebhookSender(redis, session, url=receiver.url, secret=SECRET,
                               dead_letter_stream=DEAD, max_attempts=1)  # fmt: skip
        for event in (_event(3), _event(4), _event(3)):  # r3 dead-lettered twice
            assert await sender(event)
    assert await redis.xlen(DEAD) == 3
    receiver.hits.clear()
    code, out = await _replay(valkey_url, receiver.url, tmp_path)  # still failing: all kept
    assert code == 1 and "delivered 0, failed 3" in out, out
    assert await redis.xlen(DEAD) == 3
    receiver.status = 204
    receiver.hits.clear()
    code, out = await _replay(valkey_url, receiver.url, tmp_path)
    assert code == 0 and "delivered 2, failed 0 (kept), duplicates 1" in out, out
    assert receiver.hits == Counter({"r3.reserved": 1, "r4.reserved": 1})
    assert await redis.xlen(DEAD) == 0 and receiver.bad_signatures == 0
    code, out = await _replay(valkey_url, receiver.url, tmp_path)  # nothing left: nothing sent
    assert code == 0 and "delivered 0, failed 0" in out
    assert receiver.hits == Counter({"r3.reserved": 1, "r4.reserved": 1})
