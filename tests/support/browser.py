"""Headless Chromium (the system's /usr/bin/chromium) driven by Playwright, launched as the load
tester's browser role launches it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, async_playwright, expect

from loadtest.clients.browsers import ARGS, default_executable

# Generous: these waits end as soon as the condition holds, and CI shares two cores.
expect.set_options(timeout=15_000)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=default_executable(), headless=True, args=ARGS
        )
        yield browser
        await browser.close()
