from __future__ import annotations

from typing import Any

from tests.commerce.conftest import ROOM


async def test_reserve_confirm_cancel(make_shop: Any) -> None:
    shop = await make_shop()
    sale = await shop.start_sale(quantity=3)
    assert sale["status"] == "active" and sale["stock_left"] == 3
    status, r = await shop.reserve(sale["sale_id"], "u1")
    assert status == 201, r
    assert r["stock_left"] == 2 and r["state"] == "held"
    status, c = await shop.call("POST", f"/api/reservations/{r['reservation_id']}/confirm",
                                role="orders", user="orders")  # fmt: skip
    assert status == 200 and c["state"] == "confirmed", c
    status, r2 = await shop.reserve(sale["sale_id"], "u2")
    status, c2 = await shop.call("POST", f"/api/reservations/{r2['reservation_id']}/cancel",
                                 role="orders", user="orders")  # fmt: skip
    assert status == 200 and c2["state"] == "cancelled"
    status, got = await shop.call("GET", f"/api/rooms/{ROOM}/sales/{sale['sale_id']}")
    assert got["stock_left"] == 2 and got["sold"] == 1 and got["reserved"] == 0
    status, room = await shop.call("GET", f"/api/rooms/{ROOM}")
    assert room["sales"][0]["sale_id"] == sale["sale_id"]
    types = [f[b"type"] for _, f in await shop.nodes[0].node.redis.xrange("live:purchases")]
    assert types == [b"purchase.reserved", b"purchase.confirmed", b"purchase.reserved",
                     b"purchase.cancelled"]  # fmt: skip
