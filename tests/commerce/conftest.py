"""Commerce fixtures on top of tests/conftest.py: nodes with a room and a product."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from core.auth import TokenAuthority
from tests.conftest import NodeFactory
from tests.support.shop import PRODUCT, ROOM, Shop


@pytest.fixture
async def make_shop(start_node: NodeFactory, tokens: TokenAuthority) -> AsyncIterator[Any]:
    sessions: list[aiohttp.ClientSession] = []

    async def make(nodes: int = 1, **overrides: Any) -> Shop:
        settings = {"commerce_sweep_interval_s": 0.05, "commerce_notice_interval_s": 0.05,
                    "commerce_stock_event_interval_s": 0.05, **overrides}  # fmt: skip
        running = [await start_node(**settings) for _ in range(nodes)]
        await running[0].node.rooms.create(title="Shop", owner="host", room_id=ROOM)
        http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200))
        sessions.append(http)
        shop = Shop(running, http, tokens)
        status, _ = await shop.call("POST", "/api/products", body=PRODUCT)
        assert status == 201
        return shop

    yield make
    for session in sessions:
        await session.close()
