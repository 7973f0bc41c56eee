"""The host studio goes live over WHIP from Chromium's fake camera; viewer pages play it over WHEP.

Set LIVE_SCREENSHOTS=DIR to keep screenshots of the pages while live.
"""

from __future__ import annotations

import os
from pathlib import Path

from playwright.async_api import Browser, ConsoleMessage, Page, Route, expect

from core.auth import TokenAuthority
from tests.conftest import NodeFactory

VIDEO = "document.querySelector('#stage video')"


async def open_page(browser: Browser, url: str, errors: list[str]) -> Page:
    page = await browser.new_page(viewport={"width": 1280, "height": 720})
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))

    def on_console(msg: ConsoleMessage) -> None:
        if msg.type == "error":
            errors.append(f"console: {msg.text}")

    page.on("console", on_console)
    await page.goto(url)
    return page


async def assert_playing(page: Page) -> None:
    """The video element advances and the page's WHEP connection keeps decoding frames."""
    stage = page.locator("#stage")
    await expect(stage).to_have_attribute("data-state", "playing")
    start = await page.evaluate(f"{VIDEO}.currentTime")
    await page.wait_for_function(f"t => {VIDEO}.currentTime > t + 1", arg=start)
    assert await page.evaluate(f"{VIDEO}.videoWidth") > 0
    frames = await page.evaluate("window.liveMedia.framesDecoded()")
    await page.wait_for_function(
        "async n => (await window.liveMedia.framesDecoded()) > n + 30", arg=frames, polling=200
    )


async def screenshot(page: Page, name: str) -> None:
    folder = os.environ.get("LIVE_SCREENSHOTS")
    if folder:  # Playwright creates the folder
        await page.screenshot(path=str(Path(folder) / f"{name}.png"))


async def test_studio_goes_live_and_viewers_play_it(
    start_node: NodeFactory, browser: Browser, tokens: TokenAuthority
) -> None:
    running = await start_node()
    await running.node.rooms.create(title="Spring collection", owner="host", room_id="r1")

    def link(user: str, role: str, suffix: str = "") -> str:
        token = tokens.issue(user=user, role=role, name=user.title(), rooms=["r1"])
        return f"{running.url}/rooms/r1{suffix}#token={token}"

    errors: list[str] = []
    early = await open_page(browser, link("alice", "viewer"), errors)
    await expect(early.locator("#status")).to_have_text("connected")
    await expect(early.locator("#stage")).to_have_attribute("data-state", "offline")
    await expect(early.locator("#stage .placeholder")).to_have_text(
        "The stream is not live yet.", use_inner_text=True
    )

    studio = await open_page(browser, link("host", "host", "/studio"), errors)
    await expect(studio.locator("#status")).to_have_text("chat connected")
    await expect(studio.locator("#go-live")).to_be_enabled()
    await expect(studio.locator("#stop")).to_be_disabled()
    await studio.click("#go-live")
    await expect(studio.locator("#media-state")).to_have_text("LIVE")
    await expect(studio.locator("#stop")).to_be_enabled()

    # The early viewer starts on the `stream` event, the late one from the room state on join.
    await assert_playing(early)
    late = await open_page(browser, link("bob", "viewer"), errors)
    await assert_playing(late)
    await expect(studio.locator("#elapsed")).not_to_have_text("")
    await screenshot(studio, "studio-live")
    await screenshot(late, "viewer-live")
    assert await late.evaluate(f"{VIDEO}.muted")
    await late.click("#stage .unmute")
    await expect(late.locator("#stage .unmute")).to_have_text("Mute")
    assert not await late.evaluate(f"{VIDEO}.muted")

    await studio.click("#stop")
    await expect(studio.locator("#media-state")).to_have_text("offline")
    await expect(studio.locator("#go-live")).to_be_enabled()
    await screenshot(studio, "studio-offline")
    for page in (early, late):
        await expect(page.locator("#stage")).to_have_attribute("data-state", "ended")
        await expect(page.locator("#stage .placeholder")).to_contain_text("The stream has ended.")
    await screenshot(late, "viewer-ended")
    assert errors == []


async def test_viewer_retries_failed_connections_and_reports_stalls(
    start_node: NodeFactory, browser: Browser, tokens: TokenAuthority
) -> None:
    running = await start_node()
    await running.node.rooms.create(title="Retry room", owner="host", room_id="r1")
    errors: list[str] = []
    host = tokens.issue(user="host", role="host", rooms=["r1"])
    studio = await open_page(browser, f"{running.url}/rooms/r1/studio#token={host}", errors)
    await studio.click("#go-live")
    await expect(studio.locator("#media-state")).to_have_text("LIVE")

    # Not open_page: the refused requests log console errors on purpose.
    page = await browser.new_page(viewport={"width": 1280, "height": 720})
    refused = 0

    async def refuse_twice(route: Route) -> None:
        nonlocal refused
        if refused < 2:
            refused += 1
            await route.fulfill(
                status=503,
                json={"error": "store_unavailable", "detail": "the store is unavailable"},
            )
        else:
            await route.continue_()

    await page.route("**/whep/r1", refuse_twice)
    viewer = tokens.issue(user="carol", role="viewer", rooms=["r1"])
    await page.goto(f"{running.url}/rooms/r1#token={viewer}")
    await expect(page.locator("#stage")).to_have_attribute("data-state", "retrying")
    await expect(page.locator("#stage .placeholder")).to_contain_text("the store is unavailable")
    await screenshot(page, "viewer-retrying")
    await assert_playing(page)
    assert refused == 2

    # The host's media stops while its connection stays up: the viewer says so, then recovers.
    await studio.evaluate(
        "Promise.all(window.liveStudio.session.pc.getSenders().map((s) => s.replaceTrack(null)))"
    )
    await expect(page.locator("#stage")).to_have_attribute("data-state", "stalled")
    await screenshot(page, "viewer-stalled")
    await studio.evaluate(
        """() => {
          const { session, stream } = window.liveStudio;
          return Promise.all(session.pc.getTransceivers().map((t) => t.sender.replaceTrack(
            stream.getTracks().find((track) => track.kind === t.receiver.track.kind))));
        }"""
    )
    await assert_playing(page)
    await page.close()
    assert errors == []


async def test_studio_explains_what_stops_it_going_live(
    start_node: NodeFactory, browser: Browser, tokens: TokenAuthority
) -> None:
    running = await start_node()
    await running.node.rooms.create(title="Busy room", owner="host", room_id="r1")
    host = tokens.issue(user="host", role="host", rooms=["r1"])
    url = f"{running.url}/rooms/r1/studio#token={host}"
    errors: list[str] = []
    first = await open_page(browser, url, errors)
    await first.click("#go-live")
    await expect(first.locator("#media-state")).to_have_text("LIVE")

    # A second studio for a live room gets 409 (its console error is expected: no open_page).
    second = await browser.new_page()
    await second.goto(url)
    await second.click("#go-live")
    await expect(second.locator("#media-detail")).to_have_text(
        "This room is already live from another studio."
    )
    await expect(second.locator("#media-state")).to_have_text("not live")
    await expect(second.locator("#go-live")).to_be_enabled()
    await expect(first.locator("#media-state")).to_have_text("LIVE")
    await second.close()

    refused = await browser.new_page()
    await refused.add_init_script(
        "navigator.mediaDevices.getUserMedia = () =>"
        " Promise.reject(new DOMException('denied', 'NotAllowedError'))"
    )
    await refused.goto(url)
    await expect(refused.locator("#preview-note")).to_have_text(
        "Camera or microphone unavailable: access was refused."
    )
    await expect(refused.locator("#camera-retry")).to_be_visible()
    await expect(refused.locator("#go-live")).to_be_disabled()
    await refused.close()
    assert errors == []
