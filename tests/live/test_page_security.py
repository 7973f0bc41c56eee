"""Page security: CSP (own scripts only, framing from a setting, images from the allow-list),
nosniff and Referrer-Policy on every response, and product images only from allowed hosts."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

import aiohttp
import pytest
from pydantic import ValidationError

from core.auth import TokenAuthority
from core.config import ServerSettings
from live.http.pages import WEB
from loadtest.report.scrape import parse
from tests.conftest import NodeFactory

SHOP = "https://shop.example"


def directives(csp: str) -> dict[str, str]:
    return {name: value for name, _, value in (d.strip().partition(" ") for d in csp.split(";"))}


async def test_pages_send_csp_framing_nosniff_and_referrer_policy(
    start_node: NodeFactory,
) -> None:
    node = await start_node(frame_ancestors=f"'self' {SHOP}", image_hosts=("cdn.shop.example",))
    async with aiohttp.ClientSession() as http:
        pages: dict[str, Any] = {}
        for path in ("/", "/rooms/r1", "/rooms/r1/moderate", "/rooms/r1/studio"):
            async with http.get(node.url + path) as resp:
                assert resp.status == 200, path
                pages[path] = resp.headers
        for path, headers in pages.items():
            csp = directives(headers["Content-Security-Policy"])
            assert csp["script-src"] == "'self'" and csp["default-src"] == "'none'", path
            assert csp["img-src"] == "'self' data: https://cdn.shop.example", path
            assert headers["X-Content-Type-Options"] == "nosniff", path
            assert headers["Referrer-Policy"] == "no-referrer", path
        # The shop may frame the viewer page; nobody frames the consoles or the index.
        assert directives(pages["/rooms/r1"]["Content-Security-Policy"])["frame-ancestors"] == (
            f"'self' {SHOP}"
        )
        for path in ("/", "/rooms/r1/moderate", "/rooms/r1/studio"):
            assert directives(pages[path]["Content-Security-Policy"])["frame-ancestors"] == "'none'"
            assert pages[path]["X-Frame-Options"] == "DENY"
        # Static files and API answers are never sniffed either.
        for path in ("/static/viewer.js", "/static/app.css", "/healthz", "/api/products/none"):
            async with http.get(node.url + path) as resp:
                assert resp.headers["X-Content-Type-Options"] == "nosniff", path
                assert resp.headers["Referrer-Policy"] == "no-referrer", path


async def test_the_default_frames_the_viewer_page_only_from_its_own_origin(
    start_node: NodeFactory,
) -> None:
    node = await start_node()
    async with aiohttp.ClientSession() as http, http.get(node.url + "/rooms/r1") as resp:
        csp = directives(resp.headers["Content-Security-Policy"])
        assert (
            csp["frame-ancestors"] == "'self'" and resp.headers["X-Frame-Options"] == "SAMEORIGIN"
        )
        assert csp["img-src"] == "'self' data:"


class _Inline(HTMLParser):
    """Collects what `script-src 'self'` would block: inline scripts and event handlers."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        self.found += [f"<{tag} {n}>" for n in names if n.startswith("on")]
        self.found += [f"<{tag} style>" for n in names if n == "style"]
        self.found += [f"<{tag} {v}>" for v in names.values() if v and "javascript:" in v]
        self._in_script = tag == "script" and "src" not in names
        if tag == "style":
            self.found.append("<style>")

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.found.append("inline <script>")

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False


@pytest.mark.parametrize("page", sorted(p.name for p in WEB.glob("*.html")))
def test_pages_have_no_inline_scripts_handlers_or_styles(page: str) -> None:
    parser = _Inline()
    parser.feed((WEB / page).read_text())
    assert parser.found == []


def test_frame_ancestors_accepts_only_csp_sources() -> None:
    ok = ServerSettings(frame_ancestors=f"'self'  {SHOP} https://*.shop.example:8443")
    assert ok.frame_ancestors == f"'self' {SHOP} https://*.shop.example:8443"
    for bad in ("", "'self'; script-src *", "https://a.example,https://b.example", "'none' 'self'"):
        with pytest.raises(ValidationError):
            ServerSettings(frame_ancestors=bad)


async def test_product_images_come_from_the_node_or_an_allowed_host(
    start_node: NodeFactory, tokens: TokenAuthority
) -> None:
    node = await start_node(image_hosts=("cdn.shop.example",))
    headers = {"Authorization": f"Bearer {tokens.issue(user='host', role='host')}"}
    product = {"product_id": "mug", "title": "Mug", "price_minor": 100, "currency": "EUR"}

    async def put(url: str) -> tuple[int, Any]:
        body = {**product, "image_url": url}
        async with (
            aiohttp.ClientSession(headers=headers) as http,
            http.post(node.url + "/api/products", json=body) as resp,
        ):
            return resp.status, await resp.json()

    for refused in (
        "https://attacker.example/track.gif",
        "http://cdn.shop.example/mug.png",
        "//attacker.example/track.gif",
        "https://cdn.shop.example.attacker.example/mug.png",
        "https://user@attacker.example/mug.png",
        "https://cdn.shop.example:99999/mug.png",
    ):
        status, body = await put(refused)
        assert (status, body["error"]) == (400, "invalid_request"), (refused, body)
        assert "image_url" in body["detail"], body
    for accepted in (
        "/static/mug.png",
        "https://cdn.shop.example/mug.png",
        "https://CDN.shop.example/m.png",
    ):
        status, body = await put(accepted)
        assert status == 201 and body["image_url"] == accepted, body
    async with aiohttp.ClientSession() as http, http.get(node.url + "/metrics") as resp:
        samples = parse(await resp.text())
    assert samples['live_commerce_refusals_total{rule="image_url"}'][1] == 6
