"""The web pages a node serves: plain HTML/JS/CSS plus the official socket.io client
and i18next from npm."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from core.errors import DomainError
from live.http.security import add_common_headers, page_headers
from live.node import NODE

WEB = Path(__file__).resolve().parents[1] / "web"
# `npm ci` puts the client here; the node serves it so pages need no CDN.
NODE_MODULES = Path(__file__).resolve().parents[2] / "node_modules"
VENDOR = {
    "socket.io.min.js": NODE_MODULES / "socket.io-client" / "dist" / "socket.io.min.js",
    "socket.io.min.js.map": NODE_MODULES / "socket.io-client" / "dist" / "socket.io.min.js.map",
    # i18next's ES module build (one file, no imports): live/web/i18n.js imports it.
    "i18next.js": NODE_MODULES / "i18next" / "dist" / "esm" / "i18next.js",
}


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _page(name: str, headers: dict[str, str]) -> Handler:
    async def page(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(WEB / name, headers=headers)

    return page


async def vendor(request: web.Request) -> web.StreamResponse:
    path = VENDOR.get(request.match_info["name"])
    if path is None or not path.exists():
        raise DomainError("not_found", "unknown vendor file (did `npm ci` run?)")
    return web.FileResponse(path)


def setup(app: web.Application) -> None:
    settings = app[NODE].settings
    images = settings.commerce.image_hosts
    # The shop may embed the viewer page (LIVE_FRAME_ANCESTORS); the consoles act with a host's
    # or moderator's token and are never framed.
    embeddable = page_headers(frame_ancestors=settings.server.frame_ancestors, image_hosts=images)
    unframed = page_headers(frame_ancestors="'none'", image_hosts=images)
    app.router.add_get("/", _page("index.html", unframed))
    app.router.add_get("/rooms/{room}", _page("viewer.html", embeddable))
    app.router.add_get("/rooms/{room}/moderate", _page("moderator.html", unframed))
    app.router.add_get("/rooms/{room}/studio", _page("studio.html", unframed))
    app.router.add_get("/vendor/{name}", vendor)
    app.router.add_static("/static/", WEB, show_index=False)
    app.on_response_prepare.append(add_common_headers)
