"""The host studio's shop desk: a product saved in major units is listed in the catalogue; one
click pins it, one click starts a flash sale prefilled from it; a viewer page sees both live,
and the desk's figures follow the viewer's purchase and its confirmation."""

from __future__ import annotations

import json

import aiohttp
from playwright.async_api import Browser, expect

from core.auth import TokenAuthority
from tests.conftest import NodeFactory


async def test_studio_pins_and_sells_from_the_catalogue_and_the_desk_follows(
    start_node: NodeFactory, browser: Browser, tokens: TokenAuthority
) -> None:
    node = await start_node(viewer_count_interval_s=0.2, commerce_desk_interval_s=0.2)
    await node.node.rooms.create(title="Studio room", owner="host", room_id="r1")
    host = tokens.issue(user="host", role="host", name="Host", rooms=["r1"])
    viewer = tokens.issue(user="vera", role="viewer", name="Vera", rooms=["r1"])
    studio = await browser.new_page()
    errors: list[str] = []
    studio.on("pageerror", lambda exc: errors.append(str(exc)))
    await studio.goto(f"{node.url}/rooms/r1/studio#token={host}")
    page = await browser.new_page()
    await page.goto(f"{node.url}/rooms/r1#token={viewer}")
    await expect(studio.locator("#status")).to_have_text("chat connected")

    # A product in major units: 129.00 EUR is 12900 minor units; the catalogue lists it.
    await studio.click(".add-product summary")
    product = studio.locator("#product-form")
    await product.locator("[name=product_id]").fill("boots")
    await product.locator("[name=title]").fill("<b>Chelsea</b> boots")
    await product.locator("[name=price]").fill("129")
    await product.locator("button[type=submit]").click()
    await expect(studio.locator("#commerce-notice")).to_have_text("Saved <b>Chelsea</b> boots.")
    row = studio.locator("#catalogue [data-product=boots]")
    await expect(row.locator(".catalogue-price")).to_have_text("€129.00")
    await expect(row.locator("[name=price]")).to_have_value("129.00")

    # The done criterion: two clicks, pin and sale (price, quantity and limit prefilled).
    await row.locator("[data-action=pin]").click()
    await expect(page.locator("#product-title")).to_have_text("<b>Chelsea</b> boots")
    await row.locator("[data-action=sale]").click()
    await expect(studio.locator("#commerce-notice")).to_have_text(
        "Sale of <b>Chelsea</b> boots started."
    )
    await expect(page.locator("#sale-stock")).to_have_text("100 left")
    await expect(studio.locator("#desk-viewers")).to_have_text("2")  # the host and Vera

    await page.click("#buy")
    await expect(page.locator("#buy-result")).to_contain_text("Reserved 1")
    await expect(studio.locator("#sales li .stock")).to_have_text("99/100 left")
    # The desk, from the `desk` event: one unit held worth 129 EUR, one buyer of two viewers.
    await expect(studio.locator("#desk-held")).to_have_text("1")
    await expect(studio.locator("#desk-held-value")).to_have_text("€129.00 in holds")
    await expect(studio.locator("#desk-buyers")).to_have_text("1")
    await expect(studio.locator("#desk-conversion")).to_have_text("50.0 % of viewers")
    await expect(studio.locator("#desk-top li")).to_have_text("<b>Chelsea</b> boots 1 unit")

    # The order system confirms (the hold's id from its `purchase.reserved`): sold, revenue.
    entries = await node.node.redis.xrange(node.node.settings.commerce.purchase_stream)
    (rid,) = [json.loads(f[b"data"])["reservation_id"] for _, f in entries
              if f[b"type"] == b"purchase.reserved"]  # fmt: skip
    orders = tokens.issue(user="orders", role="orders", rooms=["*"])
    bearer = {"Authorization": f"Bearer {orders}"}
    async with (
        aiohttp.ClientSession(headers=bearer) as http,
        http.post(f"{node.url}/api/reservations/{rid}/confirm") as res,
    ):
        assert res.status == 200
    await expect(studio.locator("#desk-sold")).to_have_text("1")
    await expect(studio.locator("#desk-revenue")).to_have_text("€129.00")
    await expect(studio.locator("#desk-held")).to_have_text("0")
    assert errors == []
