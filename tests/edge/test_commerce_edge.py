"""Commerce at the edge (issue 5, item 7): an origin in `na` and an edge in `eu` share Redis, so a
reservation through either draws on the same sale stock and either node sees the other's."""

from __future__ import annotations

import aiohttp

from core.auth import TokenAuthority
from tests.conftest import NodeFactory
from tests.support.shop import PRODUCT, ROOM, Shop

ORIGIN, EDGE = 0, 1


async def test_reservations_on_edge_and_origin_draw_on_one_stock(
    start_node: NodeFactory, tokens: TokenAuthority
) -> None:
    origin = await start_node(role="origin", region="na")
    edge = await start_node(role="edge", region="eu", origin_url=origin.url)
    await origin.node.rooms.create(title="Shop", owner="host", room_id=ROOM)
    async with aiohttp.ClientSession() as http:
        shop = Shop([origin, edge], http, tokens)
        status, _ = await shop.call("POST", "/api/products", body=PRODUCT, node=EDGE)
        assert status == 201
        sale = await shop.start_sale(quantity=3, per_user_limit=2)
        sale_id = sale["sale_id"]

        status, on_edge = await shop.reserve(sale_id, "eu-viewer", quantity=2, node=EDGE)
        assert status == 201 and on_edge["stock_left"] == 1, on_edge
        # The per-user limit holds across nodes too: the eu viewer has used up its two.
        status, again = await shop.reserve(sale_id, "eu-viewer", node=ORIGIN)
        assert status != 201 and again["error"] == "limit_reached", again
        status, on_origin = await shop.reserve(sale_id, "na-viewer", quantity=1, node=ORIGIN)
        assert status == 201 and on_origin["stock_left"] == 0, on_origin
        status, late = await shop.reserve(sale_id, "eu-late", node=EDGE)
        assert status != 201 and late["error"] == "sold_out", late

        for node in (ORIGIN, EDGE):
            status, got = await shop.call("GET", f"/api/rooms/{ROOM}/sales/{sale_id}", node=node)
            assert status == 200
            assert (got["stock_left"], got["reserved"]) == (0, 3), got
