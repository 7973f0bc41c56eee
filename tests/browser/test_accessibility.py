"""Accessibility (issue 14 item 4): axe-core (node_modules/axe-core, injected into the page) finds
no serious or critical violation on the viewer page (playing the studio's stream, with a pinned
product, a sale, a coupon, chat, the gift drawer open), the host studio (live), the moderator
console and the index page; the viewer page's live region announces the pinned message, product,
sale, coupon and sell-out; the keyboard reaches the chat input, Buy and the gift drawer (focus
ring on each), Escape closes the drawer, and Buy works from the keyboard."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
from playwright.async_api import Browser, BrowserContext, Page, expect

from core.auth import TokenAuthority
from tests.browser.test_chat_pages import send
from tests.conftest import NodeFactory

AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"

# axe on the whole document; the serious and critical violations with their targets.
RUN_AXE = """async () => {
  const result = await axe.run(document, { resultTypes: ["violations"] });
  return result.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => ({ id: v.id, impact: v.impact, help: v.help,
                   targets: v.nodes.map((n) => n.target.join(" ")).slice(0, 8) }));
}"""

# Tab through the page and collect the ids (or tag names) that take focus, in order, with the
# focused element's outline style (the visible focus ring).
TAB_IDS = 30
FOCUSED = """() => { const e = document.activeElement;
  return [e.id || e.tagName, e === document.body ? "body" : getComputedStyle(e).outlineStyle]; }"""
# Positive tabindex (a tab order of its own) is not used on any page.
POSITIVE_TABINDEX = "[tabindex]:not([tabindex='0']):not([tabindex='-1'])"


async def open_page(pages: BrowserContext, url: str, errors: list[str]) -> Page:
    page = await pages.new_page()
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    await page.goto(url)
    await expect(page.locator("#status")).to_have_text("connected")
    return page


async def violations(page: Page, name: str) -> list[dict[str, Any]]:
    await page.add_script_tag(path=str(AXE))
    found: list[dict[str, Any]] = await page.evaluate(RUN_AXE)
    for v in found:
        print(f"{name}: {v['impact']} {v['id']}: {v['help']} -> {v['targets']}")
    return found


async def tab_order(page: Page) -> list[str]:
    await page.evaluate("() => document.activeElement && document.activeElement.blur()")
    seen: list[str] = []
    for _ in range(TAB_IDS):
        await page.keyboard.press("Tab")
        focused, outline = await page.evaluate(FOCUSED)
        assert outline in ("solid", "body"), (focused, outline)
        seen.append(focused)
    return seen


async def test_pages_pass_axe_announce_changes_and_work_by_keyboard(
    start_node: NodeFactory, browser: Browser, tokens: TokenAuthority
) -> None:
    node = await start_node()
    # The node's CSP allows no inline script: axe is injected as one, so this context bypasses it.
    pages = await browser.new_context(bypass_csp=True)
    await node.node.rooms.create(title="Accessible room", owner="host", room_id="r1")
    host = tokens.issue(user="host", role="host", name="Host", rooms=["r1"])
    async with aiohttp.ClientSession(node.url) as http:

        async def post(path: str, body: object) -> Any:
            headers = {"Authorization": f"Bearer {host}"}
            async with http.post(path, json=body, headers=headers) as r:
                assert r.status in (200, 201), await r.text()
                return await r.json()

        for pid, title in (("mug", "Mug"), ("boots", "Boots")):
            product = {"product_id": pid, "title": title, "price_minor": 900, "currency": "EUR"}
            await post("/api/products", product)

        def link(user: str, role: str, suffix: str = "") -> str:
            token = tokens.issue(user=user, role=role, name=user.title(), rooms=["r1"])
            return f"{node.url}/rooms/r1{suffix}#token={token}"

        # Live: the studio publishes Chromium's fake camera over WHIP, the viewer plays it.
        errors: list[str] = []
        studio = await pages.new_page()
        await studio.goto(f"{node.url}/rooms/r1/studio#token={host}")
        await expect(studio.locator("#status")).to_have_text("chat connected")
        await expect(studio.locator("#go-live")).to_be_enabled()
        await studio.click("#go-live")
        await expect(studio.locator("#media-state")).to_have_text("LIVE")
        viewer = await open_page(pages, link("alice", "viewer"), errors)
        await expect(viewer.locator("#stage")).to_have_attribute("data-state", "playing")
        console = await open_page(pages, link("mia", "moderator", "/moderate"), errors)
        captions = viewer.locator("#captions")
        await expect(captions).to_have_attribute("aria-live", "polite")

        # The live region: the pinned message, the pinned product, a sale opened, a coupon (and
        # below, the sale sold out).
        await send(viewer, "hello everyone")
        await send(viewer, "what size are the boots?")
        on_console = console.locator("#messages li", has_text="what size")
        await on_console.locator("button[data-action=pin]").click()
        await expect(captions).to_have_text("Pinned message from Alice: what size are the boots?")
        await post("/api/rooms/r1/pin", {"product_id": "boots"})
        await expect(captions).to_have_text("Now showing: Boots, €9.00")
        sale = {"product_id": "boots", "quantity": 1, "price_minor": 700, "duration_s": 600}
        await post("/api/rooms/r1/sales", sale)
        await expect(captions).to_have_text("Flash sale: Boots at €7.00, 1 left")
        coupon = await post("/api/rooms/r1/coupons", {"percent_off": 10, "quota": 50})
        await post("/api/rooms/r1/coupon-pin", {"coupon_id": coupon["coupon_id"]})
        await expect(captions).to_have_text("Coupon: 10% off")
        await expect(viewer.locator("#buy")).to_be_enabled()

    # The keyboard reaches the chat input, Buy and the gift drawer's button, each with a focus ring.
    order = await tab_order(viewer)
    for wanted in ("text", "buy", "gift-open"):
        assert wanted in order, order
    # The drawer opens from the keyboard, takes focus, and Escape closes it back to its button.
    await viewer.focus("#gift-open")
    await viewer.keyboard.press("Enter")
    await expect(viewer.locator(".gift-choice")).to_have_count(6)
    await expect(viewer.locator(".gift-choice").first).to_be_focused()
    viewer_found = await violations(viewer, "viewer")
    await viewer.keyboard.press("Escape")
    await expect(viewer.locator("#gift-drawer")).to_be_hidden()
    await expect(viewer.locator("#gift-open")).to_be_focused()
    # Buy from the keyboard takes the last one: the region says so.
    await viewer.focus("#buy")
    await viewer.keyboard.press("Enter")
    await expect(viewer.locator("#buy-result")).to_contain_text("Reserved 1")
    await expect(captions).to_have_text("Boots is sold out.")

    index = await pages.new_page()
    await index.goto(node.url + "/")
    found = {
        "viewer": viewer_found,
        "studio": await violations(studio, "studio"),
        "moderator": await violations(console, "moderator"),
        "index": await violations(index, "index"),
    }
    assert found == {"viewer": [], "studio": [], "moderator": [], "index": []}, found
    for page in (viewer, studio, console, index):
        assert await page.locator(POSITIVE_TABINDEX).count() == 0, page.url
    assert errors == []
