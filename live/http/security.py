"""Security headers: what browsers may load into, run in and frame the node's pages.

The pages hold bearer tokens (in the URL fragment, read by their scripts), so no script but the
node's own files may run in them, a foreign site may not frame the consoles (clickjacking a ban
or a sale), and nothing leaks the page address to other sites.
"""

from __future__ import annotations

from aiohttp import web

# Every response: no MIME sniffing (a JSON body or an uploaded-looking file never runs as a
# script), and no Referer to other sites (the fragment is never sent, but room paths are).
COMMON = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


def page_csp(*, frame_ancestors: str, image_hosts: tuple[str, ...]) -> str:
    """The Content-Security-Policy of a page.

    Scripts and styles only from this node; images from it (and `data:` for the empty icon) and
    from the product image hosts (`LIVE_IMAGE_HOSTS`); connections anywhere over HTTP(S) and
    WebSocket, because a viewer is sent to another node for chat and video (edge selection).
    """
    images = " ".join(["'self'", "data:", *(f"https://{host}" for host in image_hosts)])
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            f"img-src {images}",
            "media-src 'self' blob:",
            "connect-src 'self' https: http: wss: ws:",
            "base-uri 'none'",
            "form-action 'self'",
            f"frame-ancestors {frame_ancestors}",
        ]
    )


def page_headers(*, frame_ancestors: str, image_hosts: tuple[str, ...]) -> dict[str, str]:
    """The headers of one page (besides COMMON)."""
    headers = {
        "Cache-Control": "no-cache",
        "Content-Security-Policy": page_csp(
            frame_ancestors=frame_ancestors, image_hosts=image_hosts
        ),
    }
    # For browsers without frame-ancestors; it cannot name other origins, so only when none.
    legacy = {"'none'": "DENY", "'self'": "SAMEORIGIN"}.get(frame_ancestors)
    if legacy:
        headers["X-Frame-Options"] = legacy
    return headers


async def add_common_headers(request: web.Request, response: web.StreamResponse) -> None:
    """`on_response_prepare` hook: COMMON on every response (pages, static files, API)."""
    for name, value in COMMON.items():
        response.headers.setdefault(name, value)
