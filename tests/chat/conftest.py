"""Fixtures of the chat tests."""

from tests.support.translation import service  # noqa: F401  (the fixture)
