"""The embedded Valkey under faults: killed with SIGKILL in the middle of a sale it comes back by
itself on the same URL, nothing is oversold or lost, the node answers 503 meanwhile (never 500);
it wants a password and keeps its files private."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import time
import uuid
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, ResponseError

from core.auth import TokenAuthority
from core.config import DEFAULT_FSYNC
from core.store import connect, embedded_valkey
from live.app import serve, shared_store
from tests.conftest import make_settings
from tests.support.shop import PRODUCT, ROOM, Shop
from tests.support.waiting import eventually

QUANTITY = 60
BUYERS = 150


async def _valkey_pid(redis: aioredis.Redis) -> int:
    return int((await redis.info("server"))["process_id"])


async def test_kill_9_mid_sale_restarts_the_store_and_oversells_nothing(
    tmp_path: Path, tokens: TokenAuthority
) -> None:
    # The production composition: no REDIS_URL, so `shared_store` runs the embedded Valkey.
    settings = make_settings(
        "", redis_url=None, data_dir=tmp_path, commerce_user_rate=1000, commerce_ip_rate=100_000
    )
    assert settings.store.valkey_appendfsync == DEFAULT_FSYNC
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100))
    async with shared_store(settings) as redis, serve(settings, redis) as running:
        await running.node.rooms.create(title="Shop", owner="host", room_id=ROOM)
        shop = Shop([running], http, tokens)
        assert (await shop.call("POST", "/api/products", body=PRODUCT))[0] == 201
        sale = await shop.start_sale(quantity=QUANTITY, per_user_limit=1, hold_s=120)
        statuses: Counter[tuple[int, str]] = Counter()
        held: dict[str, str] = {}  # user -> reservation id
        some_held = asyncio.Event()

        async def buyer(user: str) -> None:
            key = uuid.uuid4().hex  # the same key on every retry: a retry is a replay
            while True:
                status, body = await shop.reserve(sale["sale_id"], user, key=key)
                statuses[(status, body.get("error", ""))] += 1
                if status == 201:
                    held[user] = body["reservation_id"]
                    if len(held) >= QUANTITY // 3:
                        some_held.set()
                    return
                if status == 409:
                    return
                assert (status, body["error"]) == (503, "store_unavailable"), body
                await asyncio.sleep(0.02)

        buyers = [asyncio.create_task(buyer(f"u{i}")) for i in range(BUYERS)]
        async with asyncio.timeout(10):
            await some_held.wait()
        pid = await _valkey_pid(redis)
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()

        async def healthy() -> bool:
            async with http.get(running.url + "/healthz") as response:
                return response.status == 200

        await eventually(healthy, within=5)
        assert time.monotonic() - killed < 5
        assert await _valkey_pid(redis) != pid  # a new server, same URL
        async with asyncio.timeout(20):
            await asyncio.gather(*buyers)

        assert not [s for s in statuses if s[0] >= 500 and s != (503, "store_unavailable")]
        assert len(held) <= QUANTITY and len(set(held.values())) == len(held)
        status, after = await shop.call("GET", f"/api/rooms/{ROOM}/sales/{sale['sale_id']}")
        assert after["stock_left"] + after["reserved"] == QUANTITY, after
        assert after["stock_left"] >= 0 and after["reserved"] == len(held), (after, len(held))
        for rid in held.values():  # every 201 is still a hold
            status, r = await shop.call("GET", f"/api/reservations/{rid}", role="orders")
            assert (status, r["state"]) == (200, "held"), r
    await http.close()


async def test_the_store_wants_a_password_and_keeps_its_files_private(tmp_path: Path) -> None:
    with embedded_valkey(tmp_path) as url:
        parts = urlsplit(url)
        assert parts.password and len(parts.password) >= 24
        client = connect(url)
        await client.set("k", "v")  # writes the AOF
        await client.aclose()
        anonymous = aioredis.Redis(
            host=parts.hostname or "", port=parts.port or 0, retry=Retry(NoBackoff(), 0)
        )
        with pytest.raises((AuthenticationError, ResponseError)):
            await anonymous.get("k")
        await anonymous.aclose()

        data_dir = tmp_path / "valkey"
        assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
        files = list(data_dir.rglob("*"))
        assert any(p.name == "valkey.conf" for p in files)
        assert any(p.parent.name == "appendonlydir" for p in files)
        for path in files:
            mode = stat.S_IMODE(path.stat().st_mode)
            assert mode & 0o077 == 0, f"{path} is {oct(mode)}"
