"""WHIP hosts and WHEP viewers over HTTP, built on the media tests' synthetic peers."""

from __future__ import annotations

from urllib.parse import urljoin

import aiohttp

from tests.support.peers import Host, Viewer, accept, offer

SDP = "application/sdp"


class HttpError(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body


async def _post_offer(
    http: aiohttp.ClientSession, url: str, sdp: str, token: str
) -> tuple[str, str]:
    headers = {"Content-Type": SDP, "Authorization": f"Bearer {token}"}
    async with http.post(url, data=sdp.encode(), headers=headers) as r:
        body = await r.text()
        if r.status != 201:
            raise HttpError(r.status, body)
        return body, urljoin(url, r.headers["Location"])


async def whip(
    http: aiohttp.ClientSession, node_url: str, room: str, token: str, host: Host
) -> str:
    """Publish `host` to `node_url`; returns the session URL."""
    answer, location = await _post_offer(
        http, f"{node_url}/whip/{room}", await offer(host.pc), token
    )
    await accept(host.pc, answer)
    return location


async def whep(
    http: aiohttp.ClientSession, node_url: str, room: str, token: str, viewer: Viewer
) -> str:
    """Play `room` from `node_url` into `viewer`; returns the session URL."""
    answer, location = await _post_offer(
        http, f"{node_url}/whep/{room}", await offer(viewer.pc), token
    )
    await accept(viewer.pc, answer)
    return location


async def delete(http: aiohttp.ClientSession, location: str, token: str) -> int:
    async with http.delete(location, headers={"Authorization": f"Bearer {token}"}) as r:
        return r.status
