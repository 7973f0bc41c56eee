"""Translation of chat messages: a port, its LibreTranslate adapter, and the node's cache around it.

The node translates for its own viewers only, after the original was delivered: nothing here is
awaited on the delivery path. `Translations` keeps results per (room, message id, language) in
a bounded LRU, shares a request in flight between those who ask for the same result, bounds
the requests sent at once (and those waiting), and counts every outcome; a failure or a timeout
gives `None` and is never cached (a later ask tries again).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

import aiohttp

OUTCOMES = ("translated", "cached", "failed", "timeout", "dropped")


class TranslationFailed(Exception):
    """The service did not answer with a translation."""


class Translator(Protocol):
    """The port: `text` from `source` (a language subtag, or "auto") into `target`."""

    async def translate(self, text: str, source: str, target: str) -> str: ...

    async def close(self) -> None: ...


class LibreTranslate:
    """A LibreTranslate-compatible service: `POST {url}/translate` with `{q, source, target,
    format: "text", api_key?}` answering `{translatedText}`."""

    def __init__(self, url: str, api_key: str | None = None) -> None:
        self.endpoint = url.rstrip("/") + "/translate"
        self._api_key = api_key
        self._session: aiohttp.ClientSession | None = None

    async def translate(self, text: str, source: str, target: str) -> str:
        body: dict[str, Any] = {"q": text, "source": source, "target": target, "format": "text"}
        if self._api_key:
            body["api_key"] = self._api_key
        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            async with self._session.post(
                self.endpoint, json=body, allow_redirects=False
            ) as response:
                if response.status != 200:
                    raise TranslationFailed(f"HTTP {response.status}")
                doc: Any = await response.json(content_type=None)
        except (aiohttp.ClientError, ValueError) as exc:
            raise TranslationFailed(str(exc) or type(exc).__name__) from None
        translated = doc.get("translatedText") if isinstance(doc, dict) else None
        if not isinstance(translated, str):
            raise TranslationFailed("the answer has no translatedText")
        return translated

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


Key = tuple[str, str, str]  # room, message id, target language


class Translations:
    def __init__(
        self,
        translator: Translator,
        *,
        timeout_s: float,
        concurrency: int,
        queue: int,
        cache_size: int,
        count: Callable[[str], None],
        observe: Callable[[float], None],
    ) -> None:
        self.translator = translator
        self._timeout_s = timeout_s
        self._slots = asyncio.Semaphore(concurrency)
        self._max_pending = concurrency + queue
        self._pending = 0  # requests running or waiting for a slot
        self._cache: OrderedDict[Key, str] = OrderedDict()
        self._cache_size = cache_size
        self._inflight: dict[Key, asyncio.Future[str | None]] = {}
        self._count = count
        self._observe = observe

    async def get(
        self, room: str, message_id: str, text: str, source: str, target: str
    ) -> str | None:
        """`text` of message `message_id` in `target`, or None when that failed or was dropped."""
        key = (room, message_id, target)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            self._count("cached")
            return cached
        inflight = self._inflight.get(key)
        if inflight is not None:
            self._count("cached")
            return await asyncio.shield(inflight)
        if self._pending >= self._max_pending:
            self._count("dropped")
            return None
        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        result: str | None = None
        try:
            result = await self._request(text, source, target)
        finally:
            del self._inflight[key]
            future.set_result(result)
        if result is not None and self._cache_size:
            self._cache[key] = result
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return result

    async def _request(self, text: str, source: str, target: str) -> str | None:
        self._pending += 1
        try:
            async with self._slots:
                started = time.perf_counter()
                try:
                    async with asyncio.timeout(self._timeout_s):
                        result = await self.translator.translate(text, source, target)
                except TimeoutError:
                    self._count("timeout")
                    return None
                except TranslationFailed:
                    self._count("failed")
                    return None
                finally:
                    self._observe(time.perf_counter() - started)
                self._count("translated")
                return result
        finally:
            self._pending -= 1

    def forget(self, room: str, message_id: str | None = None) -> None:
        """Drop the cached translations of a deleted message (of every message when None)."""
        for key in [k for k in self._cache if k[0] == room and message_id in (None, k[1])]:
            del self._cache[key]

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.translator.close()


def language_of(tag: str | None) -> str | None:
    """The language subtag of a BCP 47 tag, lower case (`pt-BR` -> `pt`)."""
    return tag.split("-", 1)[0].lower() if tag else None
