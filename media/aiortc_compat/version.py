"""The aiortc and pylibsrtp releases this package was checked on."""

from __future__ import annotations

import aioice
import aiortc
import pylibsrtp

# The name-mangled attributes in internals.py were read in these releases; anything else must be
# re-checked.
SUPPORTED_AIORTC = ((1, 9), (1, 16))

# The fast path writes into pylibsrtp's session buffer and calls libsrtp 2's srtp_protect itself.
SUPPORTED_PYLIBSRTP = ((0, 10), (1, 0))


def version_tuple(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int("".join(ch for ch in minor if ch.isdigit()) or 0)


def check_aiortc_version(version: str | None = None) -> None:
    """Raise RuntimeError unless aiortc's version is one these hooks were checked against."""
    found = version_tuple(version if version is not None else aiortc.__version__)
    low, high = SUPPORTED_AIORTC
    if not low <= found <= high:
        raise RuntimeError(f"media.aiortc_compat supports aiortc {low}..{high}, found {found}")


def pylibsrtp_version() -> tuple[int, int]:
    return version_tuple(getattr(pylibsrtp, "__version__", "0.0"))


def installed_versions() -> str:
    """What an error about internals should name: the releases actually installed."""
    return ", ".join(
        f"{module.__name__} {getattr(module, '__version__', '?')}"
        for module in (aiortc, aioice, pylibsrtp)
    )
