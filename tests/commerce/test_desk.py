"""The shop desk: per-room figures aggregated from the purchase stream (each event once, money
per currency, conversion), pushed to the room's staff only; the desk and catalogue routes are
for the room's seller's hosts and `orders`."""

from __future__ import annotations

import uuid
from typing import Any

from commerce.delivery import PurchaseEvent
from tests.conftest import ClientFactory
from tests.support.shop import ROOM

TEA = {"product_id": "tea", "title": "Sencha", "price_minor": 500, "currency": "JPY"}


async def test_the_desk_counts_each_event_once_per_currency_and_reaches_staff_only(
    make_shop: Any, connect: ClientFactory
) -> None:
    shop = await make_shop(commerce_desk_interval_s=0.05, viewer_count_interval_s=0.05)
    node = shop.nodes[0]
    host = await connect(node.url, "host", role="host", rooms=[ROOM])
    await host.join(ROOM)
    viewers = [await connect(node.url, f"v{i}", rooms=[ROOM]) for i in range(3)]
    for viewer in viewers:
        await viewer.join(ROOM)
    assert (await shop.call("POST", "/api/products", body=TEA))[0] == 201

    # The catalogue of the room's seller, for its host.
    status, catalogue = await shop.call("GET", f"/api/rooms/{ROOM}/products")
    assert status == 200
    assert [p["product_id"] for p in catalogue["products"]] == ["tea", "mug"]  # by title

    mug = await shop.start_sale(price_minor=990)
    tea = await shop.start_sale(product_id="tea", price_minor=400)
    spec = {"percent_off": 10, "quota": 5, "duration_s": 60}
    status, coupon = await shop.call("POST", f"/api/rooms/{ROOM}/coupons", body=spec)
    assert status == 201
    cid = coupon["coupon_id"]
    status, _ = await shop.call(
        "POST", f"/api/rooms/{ROOM}/coupons/{cid}/claims", role="viewer", user="v1",
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )  # fmt: skip
    assert status == 201

    status, r0 = await shop.reserve(mug["sale_id"], "v0", quantity=2)
    assert status == 201
    status, r1 = await shop.call(
        "POST", f"/api/rooms/{ROOM}/sales/{mug['sale_id']}/reservations", role="viewer",
        user="v1", body={"quantity": 1, "coupon_id": cid},
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )  # fmt: skip
    assert status == 201 and r1["total_minor"] == 891
    status, r2 = await shop.reserve(tea["sale_id"], "v1")
    assert status == 201
    for r, action in ((r0, "confirm"), (r2, "cancel")):
        path = f"/api/reservations/{r['reservation_id']}/{action}"
        assert (await shop.call("POST", path, role="orders"))[0] == 200

    expected = {
        "viewers": 4, "peak_viewers": 4, "buyers": 2, "conversion": 0.5, "holds": 3,
        "units_held": 1, "units_sold": 2, "revenue_minor": {"EUR": 1980},
        "held_minor": {"EUR": 891}, "coupons": [{"coupon_id": cid, "claims": 1, "uses": 1}],
        "top_products": [{"product_id": "mug", "units": 3}],
    }  # fmt: skip

    def settled(desk: dict[str, Any]) -> bool:
        return all(desk.get(k) == v for k, v in expected.items())

    pushed = await host.wait_for("desk", settled)
    assert pushed["room"] == ROOM

    # Every event again (a relay's duplicate, a re-claimed pending entry): nothing moves.
    desk = node.node.commerce.desk
    entries = await node.node.redis.xrange(node.node.settings.commerce.purchase_stream)
    assert len(entries) >= 6
    for entry in entries:
        await desk.handle(PurchaseEvent.from_entry(*entry))
    status, figures = await shop.call("GET", f"/api/rooms/{ROOM}/desk")
    assert status == 200 and settled(figures), figures
    assert desk.events.labels("duplicate")._value.get() >= 5

    # Staff only: viewers never get `desk`.
    assert all(not v.events["desk"] for v in viewers)

    # Authorisation: a viewer, a host of another seller, a host without the room: refused;
    # `orders` may read.
    for role, user, shop_claim, code in (("viewer", "v0", None, "forbidden"),
                                         ("host", "h2", "other", "not_owner")):  # fmt: skip
        token = shop.tokens.issue(user=user, role=role, rooms=[ROOM], shop=shop_claim)
        for route in ("desk", "products"):
            bearer = {"Authorization": f"Bearer {token}"}
            async with shop.http.get(f"{shop.url}/api/rooms/{ROOM}/{route}", headers=bearer) as res:
                assert res.status == 403 and (await res.json())["error"] == code, (role, route)
    token = shop.tokens.issue(user="h3", role="host", rooms=["elsewhere"])
    async with shop.http.get(f"{shop.url}/api/rooms/{ROOM}/desk",
                             headers={"Authorization": f"Bearer {token}"}) as res:  # fmt: skip
        assert res.status == 403
    status, figures = await shop.call("GET", f"/api/rooms/{ROOM}/desk", role="orders")
    assert status == 200 and figures["units_sold"] == 2

    # A settlement consumed before its reservation (two nodes reading): both count, once.
    late = {"reservation_id": "x-1", "room_id": ROOM, "user_id": "v9", "product_id": "tea",
            "quantity": 1, "price_minor": 400, "currency": "JPY"}  # fmt: skip
    for kind in ("confirmed", "reserved", "confirmed"):
        await desk.handle(PurchaseEvent("0-1", "purchase." + kind, late))
    # A malformed entry is acknowledged and left out (never retried forever).
    assert await desk.handle(PurchaseEvent("0-2", "purchase.reserved", {"room_id": ROOM}))
    figures = await desk.figures(ROOM)
    assert figures["revenue_minor"] == {"EUR": 1980, "JPY": 400}
    assert (figures["holds"], figures["buyers"], figures["units_held"]) == (4, 3, 1)
