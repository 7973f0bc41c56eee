from __future__ import annotations

from typing import Any

from tests.support.shop import ROOM


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


async def test_the_201_answer_is_the_reservation_with_stock_left_and_replayed(
    make_shop: Any,
) -> None:
    shop = await make_shop()
    sale = await shop.start_sale(quantity=3)
    path = f"/api/rooms/{ROOM}/sales/{sale['sale_id']}/reservations"
    headers = {**shop.auth("viewer", "u1"), "Idempotency-Key": "press-0001"}
    answers = []
    for _ in range(2):
        async with shop.http.post(shop.url + path, json={"quantity": 2}, headers=headers) as resp:
            answers.append((resp.status, resp.headers.copy(), await resp.json()))
    (s1, h1, first), (s2, h2, again) = answers
    assert s1 == s2 == 201
    assert h1["Content-Type"] == h2["Content-Type"] == "application/json; charset=utf-8"
    assert "Idempotent-Replayed" not in h1 and h2["Idempotent-Replayed"] == "true"
    status, stored = await shop.call(
        "GET", f"/api/reservations/{first['reservation_id']}", role="viewer", user="u1"
    )
    assert status == 200
    assert first == {**stored, "stock_left": 1, "replayed": False}
    assert again == {**stored, "stock_left": 1, "replayed": True}
    assert first["quantity"] == 2 and first["state"] == "held"


def test_reserved_body_falls_back_to_encoding_the_reservation() -> None:
    import json

    from commerce.sales import Reserved

    r = {"reservation_id": "a-b", "quantity": 1}
    spliced = Reserved(r, 4, False, json.dumps(r).encode()).body()
    assert json.loads(spliced) == {**r, "stock_left": 4, "replayed": False}
    assert json.loads(Reserved(r, 0, True).body()) == {**r, "stock_left": 0, "replayed": True}
