"""Which product image URLs a node accepts: its own paths, or https on an allowed host."""

from __future__ import annotations

from urllib.parse import urlsplit

from commerce.errors import CommerceError


def check_image_url(url: str, hosts: tuple[str, ...]) -> None:
    """Refuse (400 `invalid_request`) an image the pages could not show under their CSP."""
    if url.startswith("/") and not url.startswith("//") and "\\" not in url:
        return  # served by the node itself: `img-src 'self'`
    parts = urlsplit(url)
    if parts.scheme != "https":
        raise _refused(f"image_url must be https or a path on this node, not {url[:80]!r}")
    if parts.username is not None or parts.password is not None:
        raise _refused("image_url must not carry a user name or password")
    try:
        port = parts.port
    except ValueError:
        raise _refused("image_url has an invalid port") from None
    host = (parts.hostname or "") + (f":{port}" if port is not None else "")
    if host not in hosts:
        allowed = ", ".join(hosts) or "none: set LIVE_IMAGE_HOSTS"
        raise _refused(f"image_url host {host!r} is not allowed (allowed: {allowed})")


def _refused(detail: str) -> CommerceError:
    return CommerceError("invalid_request", detail, field="image_url")
