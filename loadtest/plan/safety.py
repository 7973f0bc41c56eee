"""The load generator only aims at loopback unless the operator says otherwise."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit


class UnsafeTarget(ValueError):
    pass


def is_loopback(host: str) -> bool:
    """True when every address `host` resolves to is a loopback address."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


def check_targets(urls: list[str], allow_remote: bool) -> None:
    """Refuse non-http(s) URLs, and URLs outside loopback unless `allow_remote`."""
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UnsafeTarget(f"target {url!r} must be an http:// or https:// URL with a host")
        if not allow_remote and not is_loopback(parts.hostname):
            raise UnsafeTarget(
                f"target {url!r} is not a loopback address; pass --allow-remote to load it"
            )
