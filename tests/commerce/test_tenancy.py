"""Tenancy: products and rooms belong to a seller; other sellers can neither overwrite, pin nor
sell them, and a room only pins and sells its own seller's products."""

from __future__ import annotations

from typing import Any

from loadtest.report.scrape import parse
from tests.support.shop import PRODUCT, ROOM, Shop

OTHER = "other"


async def call_as(
    shop: Shop, method: str, path: str, token: str, body: Any = None
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    async with shop.http.request(method, shop.url + path, json=body, headers=headers) as resp:
        return resp.status, await resp.json()


async def refusals(shop: Shop) -> dict[str, float]:
    """`live_commerce_refusals_total` by rule, from the node's /metrics."""
    async with shop.http.get(shop.url + "/metrics") as resp:
        samples = parse(await resp.text())
    prefix = 'live_commerce_refusals_total{rule="'
    return {k[len(prefix) : -2]: v for k, (_, v) in samples.items() if k.startswith(prefix)}


async def other_seller(shop: Shop, rooms: list[str] | None = None) -> str:
    """A host `olga` with her own room `other` and product `vase`; her token."""
    token = shop.tokens.issue(user="olga", role="host", rooms=rooms or [OTHER])
    body = {"room_id": OTHER, "title": "Other room"}
    status, room = await call_as(shop, "POST", "/api/rooms", token, body)
    assert status == 201, room
    vase = {"product_id": "vase", "title": "Vase", "price_minor": 2500, "currency": "EUR"}
    assert (await call_as(shop, "POST", "/api/products", token, vase))[0] == 201
    return token


async def test_another_seller_cannot_replace_a_pinned_product(make_shop: Any) -> None:
    shop = await make_shop()
    assert (await shop.call("POST", f"/api/rooms/{ROOM}/pin", body={"product_id": "mug"}))[0] == 200
    olga = await other_seller(shop)
    fake = {**PRODUCT, "title": "FREE mug, pay at evil.example", "price_minor": 1}
    status, body = await call_as(shop, "POST", "/api/products", olga, fake)
    assert (status, body["error"]) == (403, "not_owner"), body
    # Nothing changed: the product, the room's pinned card, and what a sale copies.
    assert (await shop.call("GET", "/api/products/mug"))[1] == PRODUCT | {"image_url": None}
    _, state = await shop.call("GET", f"/api/rooms/{ROOM}")
    assert state["pinned_product"]["title"] == PRODUCT["title"]
    sale = await shop.start_sale()
    assert sale["title"] == PRODUCT["title"]
    assert await refusals(shop) == {"product_owner": 1}
    # Its seller may still replace it.
    status, mine = await shop.call("POST", "/api/products", body={**PRODUCT, "price_minor": 1600})
    assert status == 201 and mine["price_minor"] == 1600


async def test_a_room_pins_and_sells_only_its_sellers_products(make_shop: Any) -> None:
    shop = await make_shop()
    olga = await other_seller(shop)
    sale = {"product_id": "mug", "quantity": 5, "price_minor": 100, "duration_s": 60}
    # Olga in her own room, with the shop's product.
    for method, path, body in (
        ("POST", f"/api/rooms/{OTHER}/pin", {"product_id": "mug"}),
        ("POST", f"/api/rooms/{OTHER}/sales", sale),
    ):
        status, refused = await call_as(shop, method, path, olga, body)
        assert (status, refused["error"]) == (403, "not_owner"), (path, refused)
    # The shop's host in its own room, with Olga's product.
    for method, path, body in (
        ("POST", f"/api/rooms/{ROOM}/pin", {"product_id": "vase"}),
        ("POST", f"/api/rooms/{ROOM}/sales", {**sale, "product_id": "vase"}),
    ):
        status, refused = await shop.call(method, path, body=body)
        assert (status, refused["error"]) == (403, "not_owner"), (path, refused)
    # Olga with a token for every room is still not the shop's seller.
    everywhere = shop.tokens.issue(user="olga", role="host")
    running = await shop.start_sale()
    for method, path, body in (
        ("POST", f"/api/rooms/{ROOM}/pin", {"product_id": "vase"}),
        ("DELETE", f"/api/rooms/{ROOM}/pin", None),
        ("POST", f"/api/rooms/{ROOM}/sales", sale),
        ("POST", f"/api/rooms/{ROOM}/sales/{running['sale_id']}/end", None),
    ):
        status, refused = await call_as(shop, method, path, everywhere, body)
        assert (status, refused["error"]) == (403, "not_owner"), (path, refused)
    # The room's moderator pins the room's own products only.
    assert (await shop.call("POST", f"/api/rooms/{ROOM}/pin", role="moderator", user="mia",
                            body={"product_id": "mug"}))[0] == 200  # fmt: skip
    status, refused = await shop.call(
        "POST", f"/api/rooms/{ROOM}/pin", role="moderator", user="mia", body={"product_id": "vase"}
    )
    assert (status, refused["error"]) == (403, "not_owner")
    assert await refusals(shop) == {"room_seller": 5, "host_seller": 4}
    status, _ = await call_as(shop, "POST", f"/api/rooms/{OTHER}/pin", olga, {"product_id": "vase"})
    assert status == 200


async def test_hosts_of_one_shop_share_its_rooms_and_products(make_shop: Any) -> None:
    shop = await make_shop()
    ann = shop.tokens.issue(user="ann", role="host", shop="acme")
    ben = shop.tokens.issue(user="ben", role="host", shop="acme")
    body = {"room_id": "acme1", "title": "Acme"}
    status, room = await call_as(shop, "POST", "/api/rooms", ann, body)
    assert status == 201 and (room["owner"], room["seller"]) == ("ann", "acme")
    cup = {"product_id": "cup", "title": "Cup", "price_minor": 700, "currency": "EUR"}
    assert (await call_as(shop, "POST", "/api/products", ann, cup))[0] == 201
    status, _ = await call_as(shop, "POST", "/api/products", ben, {**cup, "price_minor": 650})
    assert status == 201
    sale = {"product_id": "cup", "quantity": 5, "price_minor": 500, "duration_s": 60}
    status, started = await call_as(shop, "POST", "/api/rooms/acme1/sales", ben, sale)
    assert status == 201 and started["title"] == "Cup", started
    # Ann's own account is another seller than her shop.
    solo = shop.tokens.issue(user="ann", role="host")
    status, refused = await call_as(shop, "POST", "/api/products", solo, cup)
    assert (status, refused["error"]) == (403, "not_owner")
