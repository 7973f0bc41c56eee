"""Chromium: the viewer page shows the pinned product, countdown and stock; Buy reserves; a second
page sees the stock fall."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import Browser, expect

from tests.support.browser import browser  # noqa: F401  (fixture)
from tests.support.shop import ROOM

pytestmark = pytest.mark.browser


async def test_product_card_buy_and_live_stock(make_shop: Any, browser: Browser) -> None:  # noqa: F811
    shop = await make_shop(nodes=2)
    assert (await shop.call("POST", f"/api/rooms/{ROOM}/pin", body={"product_id": "mug"}))[0] == 200
    sale = await shop.start_sale(quantity=5, per_user_limit=1, price_minor=990)
    pages = []
    for i, user in enumerate(("alice", "bob")):
        token = shop.tokens.issue(user=user, role="viewer", name=user.title(), rooms=[ROOM])
        page = await browser.new_page()
        await page.goto(f"{shop.nodes[i].url}/rooms/{ROOM}#token={token}")
        pages.append(page)
    alice, bob = pages
    for page in pages:
        await expect(page.locator("#product-title")).to_have_text("Studio mug")
        await expect(page.locator("#product-price")).to_contain_text("9.90")
        await expect(page.locator("#sale-stock")).to_have_text("5 left")
        await expect(page.locator("#sale-countdown")).to_contain_text("ends in 0:")
    await alice.click("#buy")
    await expect(alice.locator("#buy-result")).to_contain_text("Reserved 1")
    rid = await alice.locator("#buy-result").get_attribute("data-reservation")
    assert rid and rid.startswith(sale["sale_id"] + "-")
    # Over the live connection while it is up.
    assert await alice.locator("#buy-result").get_attribute("data-via") == "socket"
    await expect(bob.locator("#sale-stock")).to_have_text("4 left")
    await expect(bob.locator("#purchase-notice")).to_contain_text("A***e just bought 1")
    await alice.click("#buy")
    await expect(alice.locator("#buy-result")).to_have_text("You reached the limit for this sale.")
    assert await alice.locator("#buy-result").get_attribute("data-via") == "socket"
    # Without it, over HTTP.
    await bob.evaluate(
        "window.liveChat.socket.io.reconnection(false); window.liveChat.socket.disconnect()"
    )
    await bob.click("#buy")
    await expect(bob.locator("#buy-result")).to_contain_text("Reserved 1")
    assert await bob.locator("#buy-result").get_attribute("data-via") == "http"


async def test_scheduled_sale_counts_down_then_opens_without_reload(
    make_shop: Any,
    browser: Browser,  # noqa: F811
) -> None:
    shop = await make_shop(
        commerce_sweep_interval_s=60
    )  # no sweeper tick announces the start in time
    assert (await shop.call("POST", f"/api/rooms/{ROOM}/pin", body={"product_id": "mug"}))[0] == 200
    token = shop.tokens.issue(user="alice", role="viewer", name="Alice", rooms=[ROOM])
    page = await browser.new_page()
    await page.goto(f"{shop.url}/rooms/{ROOM}#token={token}")
    await expect(page.locator("#product-title")).to_have_text("Studio mug")

    await shop.start_sale(quantity=3, starts_in_s=3)
    await expect(page.locator("#sale-countdown")).to_contain_text("starts in 0:0")
    await expect(page.locator("#buy")).to_be_disabled()
    await expect(page.locator("#sale-countdown")).to_contain_text("ends in 0:", timeout=10_000)
    await expect(page.locator("#buy")).to_be_enabled()
    await page.click("#buy")
    await expect(page.locator("#buy-result")).to_contain_text("Reserved 1")
