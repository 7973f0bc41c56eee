"""Two viewer pages (on two nodes) and a moderator console in headless Chromium."""

from __future__ import annotations

from playwright.async_api import Browser, ConsoleMessage, Page, expect

from core.auth import TokenAuthority
from tests.conftest import NodeFactory

XSS = "<img src=x onerror=alert(1)>"


async def open_page(browser: Browser, url: str, errors: list[str]) -> Page:
    page = await browser.new_page()
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    page.on("dialog", lambda dialog: errors.append(f"dialog: {dialog.message}"))

    def on_console(msg: ConsoleMessage) -> None:
        if msg.type == "error":
            errors.append(f"console: {msg.text}")

    page.on("console", on_console)
    await page.goto(url)
    await expect(page.locator("#status")).to_have_text("connected")
    return page


async def send(page: Page, text: str) -> None:
    await page.fill("#text", text)
    await page.click("#send button[type=submit]")
    await expect(page.locator("#text")).to_have_value("")


async def test_chat_moderation_and_escaping_across_pages(
    start_node: NodeFactory, browser: Browser, tokens: TokenAuthority
) -> None:
    a = await start_node()
    b = await start_node()
    await a.node.rooms.create(title="Browser room", owner="host", room_id="r1")

    def link(url: str, user: str, role: str, suffix: str = "") -> str:
        token = tokens.issue(user=user, role=role, name=user.title(), rooms=["r1"])
        return f"{url}/rooms/r1{suffix}#token={token}"

    errors: list[str] = []
    alice = await open_page(browser, link(a.url, "alice", "viewer"), errors)
    bob = await open_page(browser, link(b.url, "bob", "viewer"), errors)
    console = await open_page(browser, link(a.url, "mia", "moderator", "/moderate"), errors)
    await expect(alice.locator("#title")).to_have_text("Browser room")

    await send(alice, "hello from Alice")
    on_bob = bob.locator("#messages li", has_text="hello from Alice")
    await expect(on_bob).to_have_count(1)
    await expect(on_bob.locator(".who")).to_have_text("Alice")
    on_console = console.locator("#messages li", has_text="hello from Alice")
    await expect(on_console).to_have_count(1)

    await on_console.locator("button[data-action=delete]").click()
    await expect(alice.locator("#messages li", has_text="hello from Alice")).to_have_count(0)
    await expect(on_bob).to_have_count(0)
    await expect(on_console).to_have_count(0)
    await expect(console.locator("#audit li", has_text="delete")).to_have_count(1)

    await send(bob, XSS)
    literal = alice.locator("#messages li .text", has_text=XSS)
    await expect(literal).to_have_count(1)
    await expect(literal).to_have_text(XSS)
    for page in (alice, bob, console):
        assert await page.locator("#messages img").count() == 0
    assert errors == []


async def test_viewer_page_recovers_history_after_reconnect(
    start_node: NodeFactory, browser: Browser, tokens: TokenAuthority
) -> None:
    node = await start_node()
    await node.node.rooms.create(title="Reconnect room", owner="host", room_id="r1")
    errors: list[str] = []
    token = tokens.issue(user="alice", role="viewer", rooms=["r1"])
    page = await open_page(browser, f"{node.url}/rooms/r1#token={token}", errors)
    host = tokens.issue(user="host", role="host", rooms=["r1"])
    host_page = await open_page(browser, f"{node.url}/rooms/r1#token={host}", errors)
    await send(host_page, "first")
    await expect(page.locator("#messages li", has_text="first")).to_have_count(1)

    # Drop the viewer's connection; what is sent meanwhile must arrive once it is back.
    await page.evaluate("window.liveChat.socket.disconnect()")
    await expect(page.locator("#status")).to_have_text("reconnecting")
    for i in range(3):
        await send(host_page, f"while away {i}")
    await page.evaluate("window.liveChat.socket.connect()")
    await expect(page.locator("#status")).to_have_text("connected")
    for i in range(3):
        await expect(page.locator("#messages li", has_text=f"while away {i}")).to_have_count(1)
    await expect(page.locator("#messages li", has_text="first")).to_have_count(1)
    assert errors == []


async def test_viewer_page_takes_a_new_token_and_tells_when_its_token_ran_out(
    start_node: NodeFactory, browser: Browser, tokens: TokenAuthority
) -> None:
    node = await start_node()
    await node.node.rooms.create(title="Token room", owner="host", room_id="r1")
    errors: list[str] = []
    # One page gets a fresh token from the "shop" before its first one runs out; one does not.
    # Their lifetime leaves a busy machine time to open both pages first.
    kept = tokens.issue(user="alice", role="viewer", rooms=["r1"], ttl_s=10)
    lapsed = tokens.issue(user="bob", role="viewer", rooms=["r1"], ttl_s=10)
    page = await open_page(browser, f"{node.url}/rooms/r1#token={kept}", errors)
    other = await open_page(browser, f"{node.url}/rooms/r1#token={lapsed}", errors)
    fresh = tokens.issue(user="alice", role="viewer", rooms=["r1"], ttl_s=3600)
    await page.evaluate("(token) => window.liveSetToken(token)", fresh)
    # The page's video follows too (its reservations likewise).
    assert await page.evaluate("window.liveMedia.token") == fresh

    await expect(other.locator("#notice")).to_contain_text("session has expired", timeout=15_000)
    await expect(other.locator("#status")).to_have_text("error")
    await send(page, "still chatting")
    await expect(page.locator("#messages li", has_text="still chatting")).to_have_count(1)
    await expect(page.locator("#status")).to_have_text("connected")
    assert errors == []
