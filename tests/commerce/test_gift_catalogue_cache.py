"""The gift catalogue is kept in memory per node for LIVE_GIFTS_CATALOGUE_TTL_S: a replacement
is seen at once on the node that took it, on the others once their copy expires."""

from __future__ import annotations

import aiohttp

from core.auth import TokenAuthority
from tests.conftest import NodeFactory
from tests.support.waiting import eventually


async def test_replaced_catalogue_is_seen_at_once_here_and_within_the_ttl_elsewhere(
    start_node: NodeFactory, tokens: TokenAuthority
) -> None:
    a = await start_node()
    b = await start_node(gifts_catalogue_ttl_s=2.0)
    token = tokens.issue(user="owner", role="host", rooms=["*"], shop="s1")
    spec = {"gifts": [{"gift_id": "mug", "name": "Mug", "price": 7, "tier": 2,
                       "animation": "burst"}]}  # fmt: skip
    async with aiohttp.ClientSession() as http:

        async def ids(url: str) -> list[str]:
            async with http.get(f"{url}/api/gifts?shop=s1") as response:
                assert response.status == 200
                return [g["gift_id"] for g in (await response.json())["gifts"]]

        assert "rose" in await ids(b.url)  # the default set, now in b's memory
        async with http.put(
            f"{a.url}/api/shops/s1/gifts", json=spec, headers={"Authorization": f"Bearer {token}"}
        ) as response:
            assert response.status == 200
        assert await ids(a.url) == ["mug"]  # the node that took it: at once
        assert "rose" in await ids(b.url)  # another node: its copy, until it expires
        await eventually(lambda: ids(b.url), lambda got: got == ["mug"], within=10.0)
