"""Fixtures for the media tests: a MediaServer on loopback, closed and checked for leaks."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator

import pytest
from aiortc import RTCPeerConnection

from media import MediaConfig, MediaEvent, MediaServer
from tests.media.peers import Signal


def open_peer_connections() -> int:
    return sum(
        1
        for o in gc.get_objects()
        if isinstance(o, RTCPeerConnection) and o.connectionState != "closed"
    )


class Events:
    """Collects MediaEvents."""

    def __init__(self) -> None:
        self.items: list[MediaEvent] = []
        self.progress = Signal()

    def __call__(self, event: MediaEvent) -> None:
        self.items.append(event)
        self.progress.notify()

    def kinds(self) -> list[str]:
        return [e.kind for e in self.items]


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
