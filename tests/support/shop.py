"""The commerce tests' shop: room `shop` with product `mug`, and REST calls as some role."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from core.auth import TokenAuthority
from live.app import RunningNode

ROOM = "shop"
PRODUCT = {"product_id": "mug", "title": "Studio mug", "price_minor": 1500, "currency": "EUR"}


@dataclass
class Shop:
    """A room `shop` with product `mug`, and helpers that call the REST API as some role."""

    nodes: list[RunningNode]
    http: aiohttp.ClientSession
    tokens: TokenAuthority
    _issued: dict[tuple[str, str, str | None, str], str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def auth(
        self, role: str, user: str, name: str | None = None, room: str = ROOM
    ) -> dict[str, str]:
        token = self._issued.get((role, user, name, room))
        if token is None:
            rooms = ["*"] if role == "orders" else [room]
            token = self.tokens.issue(user=user, role=role, name=name, rooms=rooms)
            self._issued[(role, user, name, room)] = token
        return {"Authorization": f"Bearer {token}"}

    async def call(
        self,
        method: str,
        path: str,
        *,
        role: str = "host",
        user: str = "host",
        body: Any = None,
        node: int = 0,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        h = {**self.auth(role, user), **(headers or {})}
        async with self.http.request(
            method, self.nodes[node].url + path, json=body, headers=h
        ) as response:
            return response.status, await response.json()

    async def start_sale(self, **spec: Any) -> dict[str, Any]:
        body = {"product_id": "mug", "quantity": 10, "price_minor": 990, "duration_s": 60,
                "per_user_limit": 2, "hold_s": 60, **spec}  # fmt: skip
        status, sale = await self.call("POST", f"/api/rooms/{ROOM}/sales", body=body)
        assert status == 201, sale
        return dict(sale)

    async def reserve(
        self, sale_id: str, user: str, quantity: int = 1, key: str | None = None, node: int = 0
    ) -> tuple[int, Any]:
        return await self.call(
            "POST", f"/api/rooms/{ROOM}/sales/{sale_id}/reservations", role="viewer", user=user,
            body={"quantity": quantity}, node=node,
            headers={"Idempotency-Key": key or uuid.uuid4().hex},
        )  # fmt: skip
