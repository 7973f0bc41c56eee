"""The web pages a node serves: plain HTML/JS/CSS plus the official socket.io client from npm."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from core.errors import DomainError

WEB = Path(__file__).resolve().parents[1] / "web"
# `npm ci` puts the client here; the node serves it so pages need no CDN.
NODE_MODULES = Path(__file__).resolve().parents[2] / "node_modules"
VENDOR = {
    "socket.io.min.js": NODE_MODULES / "socket.io-client" / "dist" / "socket.io.min.js",
    "socket.io.min.js.map": NODE_MODULES / "socket.io-client" / "dist" / "socket.io.min.js.map",
}


def _page(name: str) -> web.FileResponse:
    return web.FileResponse(WEB / name, headers={"Cache-Control": "no-cache"})


async def index(request: web.Request) -> web.StreamResponse:
    return _page("index.html")


async def viewer(request: web.Request) -> web.StreamResponse:
    return _page("viewer.html")


async def moderator(request: web.Request) -> web.StreamResponse:
    return _page("moderator.html")


async def studio(request: web.Request) -> web.StreamResponse:
    return _page("studio.html")


async def vendor(request: web.Request) -> web.StreamResponse:
    path = VENDOR.get(request.match_info["name"])
    if path is None or not path.exists():
        raise DomainError("not_found", "unknown vendor file (did `npm ci` run?)")
    return web.FileResponse(path)


def setup(app: web.Application) -> None:
    app.router.add_get("/", index)
    app.router.add_get("/rooms/{room}", viewer)
    app.router.add_get("/rooms/{room}/moderate", moderator)
    app.router.add_get("/rooms/{room}/studio", studio)
    app.router.add_get("/vendor/{name}", vendor)
    app.router.add_static("/static/", WEB, show_index=False)
