"""The pages in the viewer's language (issue 14): a viewer page opened with Accept-Language ja
shows its controls in Japanese with the price and the chat's times in the ja locale; one opened
with ?lang=th shows Thai; switching language in the page re-renders it without a reload and
keeps the Socket.IO connection (same socket id, a message sent afterwards is delivered); the
choice is remembered. The studio, the moderator console and the index page follow ?lang= too."""

from __future__ import annotations

import aiohttp
from playwright.async_api import Browser, Page, expect

from core.auth import TokenAuthority
from tests.conftest import NodeFactory

# The page's price and the Intl formats of the same amount in ja and en-US (in this browser).
PRICES = """() => ({
  shown: document.getElementById("product-price").textContent,
  ja: new Intl.NumberFormat("ja", { style: "currency", currency: "JPY" }).format(1200),
  de: new Intl.NumberFormat("de", { style: "currency", currency: "JPY" }).format(1200),
  en: new Intl.NumberFormat("en-US", { style: "currency", currency: "JPY" }).format(1200),
})"""
# A chat message's time as shown, and as Intl formats its timestamp in `locale`.
TIME = """(locale) => {
  const span = document.querySelector("#messages li .ts");
  const ts = new Date(Number(span.dataset.ts));
  const options = { hour: "2-digit", minute: "2-digit" };
  return { shown: span.textContent, want: new Intl.DateTimeFormat(locale, options).format(ts),
           en: new Intl.DateTimeFormat("en-US", { ...options, hour12: true }).format(ts) };
}"""


async def test_pages_speak_the_viewers_language_and_switch_live(
    start_node: NodeFactory, browser: Browser, tokens: TokenAuthority
) -> None:
    node = await start_node()
    await node.node.rooms.create(title="Tokyo room", owner="host", room_id="r1")
    host = tokens.issue(user="host", role="host", name="Host", rooms=["r1"])
    async with aiohttp.ClientSession(node.url, headers={"Authorization": f"Bearer {host}"}) as h:
        for path, body in (
            ("/api/products", {"product_id": "tea", "title": "Tea", "price_minor": 1200,
                               "currency": "JPY"}),
            ("/api/rooms/r1/pin", {"product_id": "tea"}),
            ("/api/rooms/r1/sales", {"product_id": "tea", "quantity": 5, "price_minor": 1200,
                                     "duration_s": 600}),
        ):  # fmt: skip
            async with h.post(path, json=body) as r:
                assert r.status in (200, 201), await r.text()

    errors: list[str] = []

    async def open_page(user: str, locale: str, query: str = "") -> Page:
        context = await browser.new_context(locale=locale)
        page = await context.new_page()
        page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
        token = tokens.issue(user=user, role="viewer", name=user.title(), rooms=["r1"])
        await page.goto(f"{node.url}/rooms/r1{query}#token={token}")
        await expect(page.locator("#status.live")).to_be_visible()
        return page

    # Accept-Language ja (the context's locale): Japanese controls, yen and times as in ja.
    aki = await open_page("aki", "ja-JP")
    await expect(aki.locator("html")).to_have_attribute("lang", "ja")
    await expect(aki.locator("#status")).to_have_text("接続済み")
    await expect(aki.locator("#send button[type=submit]")).to_have_text("送信")
    await expect(aki.locator("#buy")).to_have_text("購入")
    await expect(aki.locator("#sale-stock")).to_have_text("残り 5 点")
    await expect(aki.locator("#viewers")).to_have_text("1 人が視聴中")
    await expect(aki.locator("#text")).to_have_attribute("placeholder", "メッセージを入力…")
    await expect(aki.locator("#lang")).to_have_value("ja")  # the declared chat language
    await expect(aki.locator("#stage .note-text")).to_have_text("配信はまだ始まっていません。")
    prices = await aki.evaluate(PRICES)
    assert prices["shown"] == prices["ja"] != prices["en"], prices  # ￥1,200, not ¥1,200

    # ?lang=th in an English browser: Thai.
    tam = await open_page("tam", "en-US", "?lang=th")
    await expect(tam.locator("html")).to_have_attribute("lang", "th")
    await expect(tam.locator("#status")).to_have_text("เชื่อมต่อแล้ว")
    await expect(tam.locator("#send button[type=submit]")).to_have_text("ส่ง")
    await expect(tam.locator("#buy")).to_have_text("ซื้อ")
    await expect(tam.locator("#viewers")).to_have_text("กำลังดู 2 คน")

    # Switching in the page: re-rendered in place, the same connection carries on.
    socket_id = await tam.evaluate("window.liveChat.socket.id")
    await tam.select_option("#ui-lang", "de")
    await expect(tam.locator("html")).to_have_attribute("lang", "de")
    await expect(tam.locator("#status")).to_have_text("verbunden")
    await expect(tam.locator("#send button[type=submit]")).to_have_text("Senden")
    await expect(tam.locator("#buy")).to_have_text("Kaufen")
    await expect(tam.locator("#sale-stock")).to_have_text("Noch 5 übrig")
    await expect(tam.locator("#viewers")).to_have_text("2 Zuschauer")
    await expect(tam.locator("#chat-filter option[value=all]")).to_have_text("Alle Sprachen")
    note = tam.locator("#stage .note-text")
    await expect(note).to_have_text("Der Stream hat noch nicht begonnen.")
    await expect(tam.locator("#title")).to_have_text("Tokyo room")  # people's text stays
    assert await tam.title() == "Tokyo room"
    prices = await tam.evaluate(PRICES)
    assert prices["shown"] == prices["de"] != prices["en"], prices  # 1.200 ¥
    await tam.fill("#text", "hallo aus Bangkok")
    await tam.click("#send button[type=submit]")
    await expect(aki.locator("#messages li", has_text="hallo aus Bangkok")).to_be_visible()
    await expect(tam.locator("#messages li", has_text="hallo aus Bangkok")).to_be_visible()
    assert await tam.evaluate("window.liveChat.socket.connected") is True
    assert await tam.evaluate("window.liveChat.socket.id") == socket_id
    assert await tam.evaluate("performance.getEntriesByType('navigation').length") == 1

    # The chat's times in each page's locale.
    ja_time = await aki.evaluate(TIME, "ja")
    assert ja_time["shown"] == ja_time["want"] != ja_time["en"], ja_time
    de_time = await tam.evaluate(TIME, "de")
    assert de_time["shown"] == de_time["want"], de_time

    # Remembered: the same page without ?lang= opens in German.
    await tam.goto(tam.url.replace("?lang=th", ""))
    await expect(tam.locator("#status.live")).to_be_visible()
    await expect(tam.locator("html")).to_have_attribute("lang", "de")
    await expect(tam.locator("#ui-lang")).to_have_value("de")

    # The other pages: the studio in Korean, the moderator console in French, the index in
    # Simplified Chinese.
    studio = await aki.context.new_page()
    studio.on("pageerror", lambda exc: errors.append(f"studio: {exc}"))
    await studio.goto(f"{node.url}/rooms/r1/studio?lang=ko#token={host}")
    await expect(studio.locator("html")).to_have_attribute("lang", "ko")
    await expect(studio.locator("#status")).to_have_text("채팅 연결됨")
    await expect(studio.locator("#catalogue [data-action=sale]")).to_have_text("세일 시작")
    await expect(studio.locator("#sales li .stock")).to_have_text("5/5 남음")
    mod = tokens.issue(user="mo", role="moderator", name="Mo", rooms=["r1"])
    console = await aki.context.new_page()
    console.on("pageerror", lambda exc: errors.append(f"moderator: {exc}"))
    await console.goto(f"{node.url}/rooms/r1/moderate?lang=fr#token={mod}")
    await expect(console.locator("#status")).to_have_text("connecté")
    await expect(console.locator("#clear")).to_have_text("Vider la discussion")
    delete = console.locator("#messages li [data-action=delete]").first
    await expect(delete).to_have_text("supprimer")
    await console.goto(f"{node.url}/?lang=zh")
    await expect(console.locator("html")).to_have_attribute("lang", "zh-Hans")
    await expect(console.locator("h1")).to_have_text("直播电商节点")
    assert errors == []
