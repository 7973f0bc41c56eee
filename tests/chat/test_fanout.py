"""The broadcast manager: one encode per emit, straight into each client's queue, bounded."""

from __future__ import annotations

from engineio import packet as eio_packet

from chat.server import NAMESPACE
from tests.conftest import ClientFactory, RunningNode


async def test_broadcast_reaches_every_client_once(
    node: RunningNode, connect: ClientFactory
) -> None:
    clients = [await connect(node.url, f"u{i}") for i in range(5)]
    for client in clients:
        await client.join("r1")
    chat = node.node.chat
    for i in range(20):
        await chat.emit("r1", "notice", {"n": i})
    for client in clients:
        await client.wait_for("notice", lambda d: d["n"] == 19)
        assert [d["n"] for d in client.events["notice"]] == list(range(20))


async def test_a_client_whose_queue_is_full_is_disconnected_not_buffered(
    node: RunningNode, connect: ClientFactory
) -> None:
    fast = await connect(node.url, "fast")
    slow = await connect(node.url, "slow")
    await fast.join("r1")
    await slow.join("r1")
    chat = node.node.chat
    chat.fanout.max_queue = 10
    slow_sid = next(sid for sid, s in chat._sockets.items() if s.claims.sub == "slow")
    eio_sid = chat.sio.manager.eio_sid_from_sid(slow_sid, NAMESPACE)
    backlog = chat.sio.eio.sockets[eio_sid].queue
    # Ten packets the writer has not sent yet, then a broadcast, with no await in between:
    # the slow client's queue is full at the moment of the emit.
    for _ in range(10):
        backlog.put_nowait(eio_packet.Packet(eio_packet.NOOP))
    await chat.sio.emit("notice", {"n": 1}, room="r1", namespace=NAMESPACE)

    await fast.wait_for("notice", lambda d: d["n"] == 1)
    await slow.disconnected.wait()
    assert slow.events["notice"] == []
    assert not fast.disconnected.is_set()
    metrics = node.node.metrics.render().decode()
    assert "live_chat_slow_clients_dropped_total 1.0" in metrics
