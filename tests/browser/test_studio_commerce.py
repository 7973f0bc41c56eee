"""The host studio saves a product, pins it and starts a flash sale; a viewer page sees it live."""

from __future__ import annotations

from playwright.async_api import Browser, expect

from core.auth import TokenAuthority
from tests.conftest import NodeFactory


async def test_studio_pins_a_product_and_runs_a_sale_viewers_see(
    start_node: NodeFactory, browser: Browser, tokens: TokenAuthority
) -> None:
    node = await start_node()
    await node.node.rooms.create(title="Studio room", owner="host", room_id="r1")
    host = tokens.issue(user="host", role="host", name="Host", rooms=["r1"])
    viewer = tokens.issue(user="vera", role="viewer", name="Vera", rooms=["r1"])
    studio = await browser.new_page()
    await studio.goto(f"{node.url}/rooms/r1/studio#token={host}")
    page = await browser.new_page()
    await page.goto(f"{node.url}/rooms/r1#token={viewer}")
    await expect(studio.locator("#status")).to_have_text("chat connected")

    product = studio.locator("#product-form")
    await product.locator("[name=product_id]").fill("boots")
    await product.locator("[name=title]").fill("<b>Chelsea</b> boots")
    await product.locator("[name=price_minor]").fill("12900")
    await product.locator("button[type=submit]").click()
    await expect(studio.locator("#commerce-notice")).to_have_text("Saved <b>Chelsea</b> boots.")
    await studio.click("#pin")
    await expect(page.locator("#product-title")).to_have_text("<b>Chelsea</b> boots")

    sale = studio.locator("#sale-form")
    await sale.locator("[name=product_id]").fill("boots")
    await sale.locator("[name=quantity]").fill("3")
    await sale.locator("[name=price_minor]").fill("9900")
    await sale.locator("button[type=submit]").click()
    await expect(studio.locator("#commerce-notice")).to_have_text("Sale started.")
    await expect(page.locator("#sale-stock")).to_have_text("3 left")
    await page.click("#buy")
    await expect(page.locator("#buy-result")).to_contain_text("Reserved 1")
    await expect(studio.locator("#sales li .stock")).to_have_text("2/3 left")
