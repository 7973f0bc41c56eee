"""Fixtures for the media tests: a MediaServer on loopback, closed and checked for leaks."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from media import MediaConfig, MediaServer
from tests.support.peers import Events


@pytest.fixture
def config() -> MediaConfig:
    return MediaConfig(ice_addresses=["127.0.0.1"])


@pytest.fixture
async def server(config: MediaConfig) -> AsyncIterator[MediaServer]:
    srv = MediaServer(config)
    yield srv
    await srv.shutdown()


@pytest.fixture
def events(server: MediaServer) -> Events:
    e = Events()
    server.add_listener(e)
    return e
