"""The REST calls a run makes as a room's host: create the room, start a sale, read it back."""

from __future__ import annotations

import secrets
from typing import Any

import aiohttp

from core.auth import TokenAuthority
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
