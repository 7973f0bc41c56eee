"""An identity provider's signing keys (a JWKS URL), fetched with aiohttp and kept by key id.

Verification is sync (`TokenAuthority.verify`, called from every handler); fetching is not. So a
request's token is first `prepare`d (async): an unknown `kid` fetches the set again, at most once
per `refresh_min_s` whatever the number of forged kids, and the sync verify then finds the key.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import jwt
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

# The asymmetric algorithms an IdP's token may use; HS256 stays with the node's own secret.
ALGORITHMS = frozenset({"RS256", "ES256"})
# Keys older than this are fetched again when next asked for, even with every kid known.
MAX_AGE_S = 3600.0
FETCH_TIMEOUT_S = 5.0


class KeySet:
    """The keys at `url`, by kid; `ensure(kid)` refreshes them when `kid` is not among them."""

    def __init__(
        self,
        url: str,
        *,
        refresh_min_s: float = 30.0,
        max_age_s: float = MAX_AGE_S,
        timeout_s: float = FETCH_TIMEOUT_S,
    ) -> None:
        self.url = url
        self._refresh_min_s = refresh_min_s
        self._max_age_s = max_age_s
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")  # monotonic time of the last attempt, successful or not
        self._loaded_at = float("-inf")  # of the last successful fetch
        self._lock = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None
        self.fetches = 0
        self.throttled = 0  # unknown kids not fetched for (a fetch was too recent)
        # Called when the set of keys changed (a verified-token memory must then forget).
        self.on_change: Callable[[], None] = lambda: None

    def key(self, kid: str) -> jwt.PyJWK | None:
        return self._keys.get(kid)

    async def ensure(self, kid: str) -> None:
        """Make `kid`'s key known if the IdP has it, fetching at most once per refresh_min_s."""
        now = time.monotonic()
        stale = now - self._loaded_at > self._max_age_s
        if kid in self._keys and not stale:
            return
        if now - self._fetched_at < self._refresh_min_s:
            self.throttled += 1
            return  # a recent fetch did not have it: a forged kid must not hammer the IdP
        async with self._lock:
            if (kid in self._keys and not stale) or (
                time.monotonic() - self._fetched_at < self._refresh_min_s
            ):
                return  # another request fetched while this one waited
            await self.refresh()

    async def refresh(self) -> None:
        """Fetch the set; on failure keep the keys there were (and log why)."""
        self._fetched_at = time.monotonic()
        self.fetches += 1
        try:
            if self._session is None:
                self._session = aiohttp.ClientSession(timeout=self._timeout)
            async with self._session.get(self.url, allow_redirects=False) as response:
                if response.status != 200:
                    raise ValueError(f"HTTP {response.status}")
                doc: Any = await response.json(content_type=None)
            keys = _keys_of(doc)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("fetching the JWKS at %s failed: %s", self.url, exc)
            return
        changed = keys.keys() != self._keys.keys()
        self._keys = keys
        self._loaded_at = time.monotonic()
        if changed:
            self.on_change()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class KeySetCollector(Collector):
    """The key set's fetches and throttled refreshes, read at scrape time."""

    def __init__(self, keys: KeySet) -> None:
        self._keys = keys

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(
            "live_jwks_fetches", "Fetches of the identity provider's JWKS", value=self._keys.fetches
        )
        yield CounterMetricFamily(
            "live_jwks_refreshes_throttled",
            "Unknown key ids not fetched for: a fetch was more recent than LIVE_JWKS_REFRESH_MIN_S",
            value=self._keys.throttled,
        )


def _keys_of(doc: Any) -> dict[str, jwt.PyJWK]:
    """The usable signing keys of a JWKS document, by kid (others are skipped)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise ValueError("not a JWKS document (no keys list)")
    keys: dict[str, jwt.PyJWK] = {}
    for entry in doc["keys"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str):
            continue
        if entry.get("use", "sig") != "sig":
            continue
        try:
            key = jwt.PyJWK(entry)
        except jwt.PyJWTError:
            continue  # a key type or curve we do not verify with
        if key.algorithm_name in ALGORITHMS:
            keys[entry["kid"]] = key
    return keys
