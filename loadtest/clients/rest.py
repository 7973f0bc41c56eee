"""The REST calls a run makes as a room's host: create the room, start a sale, read it back."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections import Counter
from typing import Any

import aiohttp

from core.auth import TokenAuthority
from loadtest.clients.rawhttp import HttpError, Pool
from loadtest.plan.workloads import SaleSpec

HOST_USER = "loadtest-host"  # the owner of the rooms a run creates: gifts credit this user


def host_token(secret: str, room: str) -> str:
    return TokenAuthority(secret).issue(user=HOST_USER, role="host", rooms=[room])


async def create_room(url: str, secret: str, room: str, *, required: bool) -> None:
    """Create `room` through the REST API as its host (409: it exists already)."""
    timeout = aiohttp.ClientTimeout(total=10)
    async with (
        aiohttp.ClientSession(timeout=timeout) as http,
        http.post(
            url.rstrip("/") + "/api/rooms",
            json={"room_id": room, "title": "Load test"},
            headers={"Authorization": f"Bearer {host_token(secret, room)}"},
        ) as resp,
    ):
        if resp.status not in (201, 409) and required:
            raise RuntimeError(f"could not create room {room} on {url}: {resp.status}")


async def start_sale(url: str, secret: str, room: str, spec: SaleSpec) -> dict[str, Any]:
    """Create the room (if needed), a product and a sale; the sale's JSON."""
    await create_room(url, secret, room, required=False)
    headers = {"Authorization": f"Bearer {host_token(secret, room)}"}
    product_id = "lt-" + secrets.token_hex(4)
    product = {"product_id": product_id, "title": "Load test", "price_minor": 1999,
               "currency": "EUR"}  # fmt: skip
    base = url.rstrip("/")
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout, headers=headers) as http:
        async with http.post(f"{base}/api/products", json=product) as resp:
            if resp.status != 201:
                raise RuntimeError(f"product: {resp.status} {await resp.text()}")
        async with http.post(f"{base}/api/rooms/{room}/sales", json=spec.body(product_id)) as resp:
            if resp.status != 201:
                raise RuntimeError(f"sale: {resp.status} {await resp.text()}")
            sale: dict[str, Any] = await resp.json()
    return sale


async def get_sale(url: str, room: str, sale_id: str) -> dict[str, Any]:
    timeout = aiohttp.ClientTimeout(total=10)
    async with (
        aiohttp.ClientSession(timeout=timeout) as http,
        http.get(f"{url.rstrip('/')}/api/rooms/{room}/sales/{sale_id}") as resp,
    ):
        resp.raise_for_status()
        sale: dict[str, Any] = await resp.json()
    return sale


async def grant_credits(
    targets: list[str], secret: str, users: list[tuple[str, int]], amount: int, tag: str,
    *, timeout_s: float = 5.0, attempts: int = 3,
) -> tuple[dict[str, int], Counter[str]]:  # fmt: skip
    """Top up each `(user, target index)` by `amount` credits as the order system does
    (`POST /api/wallets/{user}/credits`, an `orders` token, an Idempotency-Key per user and
    `tag`, so a retry never grants twice): the credits confirmed per user, and errors by kind."""
    orders = TokenAuthority(secret).issue(user="loadtest-orders", role="orders", ttl_s=3600)
    pools = [Pool(t, 8) for t in targets]
    body = json.dumps({"amount": amount, "reason": "loadtest grant"}).encode()
    gate = asyncio.Semaphore(16)
    granted: dict[str, int] = {}
    errors: Counter[str] = Counter()

    async def grant(user: str, target: int) -> None:
        pool = pools[target % len(pools)]
        headers = {"Authorization": f"Bearer {orders}", "Idempotency-Key": f"{tag}-grant-{user}"}
        request = pool.build_post(f"/api/wallets/{user}/credits", body, headers)
        async with gate:
            for _ in range(attempts):
                try:
                    async with asyncio.timeout(timeout_s):
                        status, raw = await pool.send(request)
                except (TimeoutError, HttpError, OSError) as exc:
                    errors["grant_" + type(exc).__name__] += 1
                    continue
                if status == 201:
                    granted[user] = int(json.loads(raw)["entry"]["amount"])
                else:
                    errors[f"grant_{status}"] += 1
                return

    try:
        await asyncio.gather(*(grant(u, t) for u, t in users))
    finally:
        for pool in pools:
            pool.close()
    return granted, errors
