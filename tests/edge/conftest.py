"""The edge tests' Chromium (test_browser_edge)."""

from tests.support.browser import browser  # noqa: F401  (the fixture)
