"""The browser tests' Chromium."""

from tests.support.browser import browser  # noqa: F401  (the fixture)
from tests.support.translation import service  # noqa: F401  (the fixture)
