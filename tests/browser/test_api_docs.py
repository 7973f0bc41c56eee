"""The API docs page renders the node's OpenAPI document in Chromium under its own CSP
(`script-src 'self'`), with no request leaving the node."""

from __future__ import annotations

from playwright.async_api import Browser, ConsoleMessage, Request, expect

from live.app import RunningNode
from live.http.openapi import OPERATIONS


async def test_docs_page_renders_every_operation(node: RunningNode, browser: Browser) -> None:
    page = await browser.new_page()
    errors: list[str] = []
    elsewhere: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))

    def on_console(msg: ConsoleMessage) -> None:
        if msg.type == "error":  # a CSP violation is reported here
            errors.append(f"console: {msg.text}")

    def on_request(request: Request) -> None:
        if not request.url.startswith(node.url):
            elsewhere.append(request.url)

    page.on("console", on_console)
    page.on("request", on_request)
    await page.goto(node.url + "/api/docs")
    await expect(page.locator("section.op")).to_have_count(len(OPERATIONS))
    reserve = page.locator("#post_api_rooms_room_sales_sale_reservations")
    await expect(reserve).to_contain_text("roles: viewer, host, moderator")
    await expect(reserve).to_contain_text("sold_out")
    await expect(reserve).to_contain_text("Idempotency-Key")
    await expect(page.locator("#schema-SaleIn")).to_be_visible()
    assert errors == [] and elsewhere == []
