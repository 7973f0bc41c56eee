"""The viewer page across languages: the declared message language, the filter, translations."""

from __future__ import annotations

from playwright.async_api import Browser, Page, expect

from core.auth import TokenAuthority
from tests.conftest import NodeFactory
from tests.support.translation import TranslationService


async def test_viewer_page_declares_filters_and_translates_messages(
    start_node: NodeFactory, browser: Browser, tokens: TokenAuthority, service: TranslationService
) -> None:
    node = await start_node(chat_translate_url=service.url)
    await node.node.rooms.create(title="Languages room", owner="host", room_id="r1")
    errors: list[str] = []

    async def open_page(user: str, locale: str) -> Page:
        context = await browser.new_context(locale=locale)
        page = await context.new_page()
        page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
        token = tokens.issue(user=user, role="viewer", name=user.title(), rooms=["r1"])
        await page.goto(f"{node.url}/rooms/r1#token={token}")
        await expect(page.locator("#status")).to_have_text("connected")
        return page

    ana = await open_page("ana", "es-ES")
    tom = await open_page("tom", "en-US")
    # The declared language defaults to the browser's.
    await expect(ana.locator("#lang")).to_have_value("es")
    await expect(tom.locator("#lang")).to_have_value("en")
    await ana.select_option("#translate-to", "es")

    async def send(page: Page, text: str, lang: str | None = None) -> None:
        if lang:
            await page.select_option("#lang", lang)
        await page.fill("#text", text)
        await page.click("#send button[type=submit]")
        await expect(page.locator("#text")).to_have_value("")

    await send(tom, "hello")
    hello = ana.locator("#messages li", has_text="hello")
    await expect(hello.locator(".translation")).to_have_text("hola")
    await expect(hello.locator(".lang")).to_have_text("en")
    await send(tom, "guten Tag", "de")  # not in the dictionary: no translation
    await send(ana, "buenas")
    guten = ana.locator("#messages li", has_text="guten Tag")
    await expect(guten.locator(".lang")).to_have_text("de")

    # "Mine" (Spanish): her own message and the one translated into Spanish, not the German.
    await ana.select_option("#chat-filter", "mine")
    await expect(guten).to_be_hidden()
    await expect(hello).to_be_visible()
    await expect(ana.locator("#messages li", has_text="buenas")).to_be_visible()
    await tom.select_option("#chat-filter", "de")
    await expect(tom.locator("#messages li:visible")).to_have_count(1)

    # Remembered across a reload; the history's message is translated again from the cache.
    await ana.reload()
    await expect(ana.locator("#status")).to_have_text("connected")
    await expect(ana.locator("#chat-filter")).to_have_value("mine")
    await expect(ana.locator("#translate-to")).to_have_value("es")
    await expect(hello.locator(".translation")).to_have_text("hola")
    await expect(guten).to_be_hidden()
    assert service.calls[("hello", "es")] == 1
    assert errors == []
