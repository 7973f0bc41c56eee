"""Chromium: the studio creates and pins a coupon; viewers see it with a countdown and claims
left, claim it, and Buy takes it off the price."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.async_api import Browser, expect

from tests.support.browser import browser  # noqa: F401  (fixture)
from tests.support.shop import ROOM

pytestmark = pytest.mark.browser
COUNTDOWN = re.compile(r"ends in (10:00|9:[0-5][0-9])")  # a 600 s coupon, just pinned


async def test_studio_pins_a_coupon_viewers_claim_and_buy_with_it(
    make_shop: Any,
    browser: Browser,  # noqa: F811
) -> None:
    shop = await make_shop()
    assert (await shop.call("POST", f"/api/rooms/{ROOM}/pin", body={"product_id": "mug"}))[0] == 200
    host = shop.tokens.issue(user="host", role="host", name="Host", rooms=[ROOM])
    studio = await browser.new_page()
    await studio.goto(f"{shop.url}/rooms/{ROOM}/studio#token={host}")
    pages = []
    for user in ("alice", "bob"):
        token = shop.tokens.issue(user=user, role="viewer", name=user.title(), rooms=[ROOM])
        page = await browser.new_page()
        await page.goto(f"{shop.url}/rooms/{ROOM}#token={token}")
        await expect(page.locator("#product-title")).to_have_text("Studio mug")
        pages.append(page)
    alice, bob = pages

    form = studio.locator("#coupon-form")
    await form.locator("[name=value]").fill("20")
    await form.locator("[name=quota]").fill("2")
    await form.locator("button[type=submit]").click()
    await expect(studio.locator("#commerce-notice")).to_have_text("Coupon created.")
    await studio.locator("#coupons [data-pin]").click()
    await expect(studio.locator("#commerce-notice")).to_have_text("Coupon pinned.")
    for page in pages:
        await expect(page.locator("#coupon-label")).to_have_text("Coupon: 20% off")
        await expect(page.locator("#coupon-countdown")).to_have_text(COUNTDOWN)
        await expect(page.locator("#coupon-left")).to_have_text("2 left")

    await alice.click("#coupon-claim")
    await expect(alice.locator("#coupon-result")).to_contain_text("Claimed")
    await expect(alice.locator("#coupon-claim")).to_be_disabled()
    await expect(bob.locator("#coupon-left")).to_have_text("1 left")
    await expect(studio.locator("#coupons li")).to_contain_text("1/2 left")

    await shop.start_sale(quantity=5, per_user_limit=2, price_minor=990)
    await expect(alice.locator("#buy")).to_be_enabled()
    await alice.click("#buy")
    await expect(alice.locator("#buy-result")).to_contain_text(
        "Reserved 1 at €7.92 (coupon \u2212€1.98)"  # a minus sign
    )
    # The claim went with that hold: the next Buy is at the sale price.
    await alice.click("#buy")
    await expect(alice.locator("#buy-result")).to_have_text(
        re.compile(r"^Reserved 1 — complete your order within")
    )
