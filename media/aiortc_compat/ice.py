"""ICE: aioice leaves loopback out of host candidates; the node's addresses are a setting."""

from __future__ import annotations

import aioice.ice

_original_get_host_addresses = aioice.ice.get_host_addresses
_ice_addresses: list[str] = []


def _configured_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    return [a for a in _ice_addresses if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]


def set_ice_addresses(addresses: list[str]) -> None:
    """Offer exactly `addresses` as ICE host candidates in this process; [] restores aioice's own.

    Process-wide because a node has one set of addresses and aioice looks the function up globally.
    """
    _ice_addresses[:] = addresses
    if addresses:
        aioice.ice.get_host_addresses = _configured_host_addresses
    else:
        aioice.ice.get_host_addresses = _original_get_host_addresses
