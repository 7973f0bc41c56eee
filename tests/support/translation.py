"""A LibreTranslate-compatible translation service on loopback, answering from a fixed
dictionary and counting its calls (tests of chat across languages)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

DICTIONARY = {
    "hello": {"es": "hola", "fr": "bonjour", "de": "hallo"},
    "good night": {"es": "buenas noches", "de": "gute Nacht"},
    "hola": {"fr": "salut"},
}


class TranslationService:
    """`POST /translate {q, source, target, format}` -> `{translatedText}` from DICTIONARY;
    "boom" answers 500, "slow" never answers; `calls` counts (q, target)."""

    def __init__(self) -> None:
        self.calls: Counter[tuple[str, str]] = Counter()
        self.bodies: list[dict[str, Any]] = []
        self.slow_started = asyncio.Event()
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def translate(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.bodies.append(body)
        self.calls[(body["q"], body["target"])] += 1
        if body["q"] == "boom":
            return web.json_response({"error": "boom"}, status=500)
        if body["q"] == "slow":
            self.slow_started.set()
            await asyncio.Event().wait()  # until the node gives up (cancelled at cleanup)
        text = DICTIONARY.get(body["q"], {}).get(body["target"])
        if text is None:
            return web.json_response({"error": "no translation"}, status=400)
        return web.json_response({"translatedText": text})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/translate", self.translate)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


@pytest.fixture
async def service() -> AsyncIterator[TranslationService]:
    running = TranslationService()
    await running.start()
    yield running
    with contextlib.suppress(Exception):
        await running.stop()
