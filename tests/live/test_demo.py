"""The demo's first screen: a pinned product and a flash sale counting down, announced live."""

from __future__ import annotations

import aiohttp
import redis.asyncio as aioredis

from live import demo_data
from live.app import RunningNode
from tests.conftest import ClientFactory, NodeFactory

ROOM = "demo"


async def test_demo_opens_with_a_pinned_product_and_a_scheduled_sale(
    start_node: NodeFactory, redis: aioredis.Redis, connect: ClientFactory
) -> None:
    running: RunningNode = await start_node()
    await demo_data.seed(redis, ROOM, "Demo")
    viewer = await connect(running.url, user="alice", rooms=[ROOM])
    await viewer.join(ROOM)

    sale = await demo_data.open_show(running.node.commerce, ROOM)

    assert sale is not None and sale["status"] == "scheduled"
    assert sale["product_id"] == demo_data.SHOW_PRODUCT
    assert 55_000 <= sale["starts_at"] - sale["server_time"] <= 60_000
    product = await viewer.wait_for("product")
    assert product["product"]["product_id"] == demo_data.SHOW_PRODUCT
    # Viewers already watching hear of the scheduled sale at once, not when it opens.
    announced = await viewer.wait_for("sale")
    assert (announced["sale_id"], announced["status"]) == (sale["sale_id"], "scheduled")

    state = await running.node.base_room_state(ROOM)
    assert state["pinned_product"]["product_id"] == demo_data.SHOW_PRODUCT
    assert [s["sale_id"] for s in state["sales"]] == [sale["sale_id"]]
    coupon = state["pinned_coupon"]
    assert (coupon["percent_off"], coupon["remaining"]) == (10, 100)
    # A restarted demo keeps the sale and coupon it has rather than stacking others.
    assert await demo_data.open_show(running.node.commerce, ROOM) is None
    again = await running.node.base_room_state(ROOM)
    assert len(again["sales"]) == 1
    assert again["pinned_coupon"]["coupon_id"] == coupon["coupon_id"]
    assert len(await running.node.commerce.coupons.active(ROOM)) == 1
    # The viewers' credits for gifts, granted once however often the demo starts.
    wallet = await running.node.commerce.wallets.wallet("alice")
    assert (wallet["balance"], len(wallet["entries"])) == (demo_data.VIEWER_CREDITS["alice"], 1)


async def test_the_demo_hosts_studio_may_pin_and_sell_the_demo_products(
    start_node: NodeFactory, redis: aioredis.Redis
) -> None:
    running = await start_node()
    await demo_data.seed(redis, ROOM, "Demo")
    # The token `live demo` prints for the host studio.
    token = running.node.auth.issue(user=demo_data.HOST, role="host", rooms=[ROOM])
    headers = {"Authorization": f"Bearer {token}"}
    sale = {"product_id": "silk-scarf", "quantity": 5, "price_minor": 100, "duration_s": 60}
    async with aiohttp.ClientSession(base_url=running.url, headers=headers) as http:
        for path, body in (
            (f"/api/rooms/{ROOM}/pin", {"product_id": "silk-scarf"}),
            (f"/api/rooms/{ROOM}/sales", sale),
            ("/api/products", demo_data.PRODUCTS[0].model_dump()),
        ):
            async with http.post(path, json=body) as resp:
                assert resp.status in (200, 201), (path, await resp.text())
