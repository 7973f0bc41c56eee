"""The broadcast manager: one encode per emit, straight into each client's queue, bounded."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType
from aiohttp._websocket.writer import WebSocketWriter
from engineio import packet as eio_packet

from chat import wsdirect
from chat.server import NAMESPACE
from core.auth import TokenAuthority
from loadtest.clients.sioclient import open_viewer
from tests.conftest import Client, ClientFactory, NodeFactory, RunningNode


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
    slow_sid = _sid(node, "slow")
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


# Direct writes: one shared frame per broadcast, written on each idle WebSocket's transport.


class TimelineClient(Client):
    """A client that also records events and acknowledgements in one list, in arrival order."""

    def __init__(self, url: str, token: str) -> None:
        super().__init__(url, token)
        self.timeline: list[tuple[str, Any]] = []

    async def _record(self, event: str, data: Any = None) -> None:
        self.timeline.append((event, data))
        await super()._record(event, data)

    async def connect_with(self, transports: list[str] | None) -> TimelineClient:
        await self.sio.connect(
            self.url,
            namespaces=["/live"],
            auth={"token": self.token},
            transports=transports,
            wait_timeout=5,
        )
        return self


WEBSOCKET = ("websocket",)


@pytest.fixture
async def timeline_client(tokens: TokenAuthority) -> AsyncIterator[TimelineFactory]:
    clients: list[TimelineClient] = []

    async def make(
        url: str, user: str, role: str = "viewer", transports: tuple[str, ...] | None = WEBSOCKET
    ) -> TimelineClient:
        """`transports=None` is the client's default: polling first, then the upgrade."""
        client = TimelineClient(url, tokens.issue(user=user, role=role, name=user.title()))
        clients.append(client)
        return await client.connect_with(None if transports is None else list(transports))

    yield make
    for client in clients:
        with contextlib.suppress(Exception):
            await client.close()


TimelineFactory = Callable[..., Awaitable[TimelineClient]]


def _sid(node: RunningNode, user: str) -> str:
    return next(sid for sid, s in node.node.chat._sockets.items() if s.claims.sub == user)


def _eio_socket(node: RunningNode, user: str) -> Any:
    chat = node.node.chat
    return chat.sio.eio.sockets[chat.sio.manager.eio_sid_from_sid(_sid(node, user), NAMESPACE)]


def _links(node: RunningNode) -> dict[str, wsdirect.Link]:
    direct = node.node.chat.fanout._direct
    assert direct is not None
    return direct.links


def _notice(n: int) -> eio_packet.Packet:
    return eio_packet.Packet(eio_packet.MESSAGE, f'2{NAMESPACE},["notice",{{"n":{n}}}]')


def test_the_shared_frame_is_the_frame_aiohttp_would_write() -> None:
    class Capture:
        def __init__(self) -> None:
            self.data = b""

        def write(self, data: bytes) -> None:
            self.data += data

        def is_closing(self) -> bool:
            return False

    for size in (0, 1, 125, 126, 65535, 65536, 70_000):
        text = "42" + "é" * (size // 2) + "x" * (size % 2)
        capture = Capture()
        WebSocketWriter(None, capture, compress=0)._write_websocket_frame(  # type: ignore[arg-type]
            text.encode(), WSMsgType.TEXT, 0
        )
        assert wsdirect.text_frame(text) == capture.data, size


async def test_broadcasts_to_idle_websockets_are_written_directly(
    node: RunningNode, connect: ClientFactory
) -> None:
    clients = [await connect(node.url, f"u{i}") for i in range(5)]
    for client in clients:
        await client.join("r1")
    fanout = node.node.chat.fanout
    assert len(_links(node)) == 5
    before = fanout.direct_writes
    for i in range(50):
        await node.node.chat.emit("r1", "notice", {"n": i})
        await asyncio.sleep(0.002)
    for client in clients:
        await client.wait_for("notice", lambda d: d["n"] == 49)
        assert [d["n"] for d in client.events["notice"]] == list(range(50))
    assert fanout.direct_writes - before >= 200  # nearly all: the writers were idle


async def test_broadcasts_of_one_loop_iteration_go_out_in_one_write(
    node: RunningNode, connect: ClientFactory
) -> None:
    client = await connect(node.url, "alice")
    await client.join("r1")
    link = _links(node)[_eio_socket(node, "alice").sid]
    writes: list[bytes] = []

    class Counting:
        def __init__(self, inner: Any) -> None:
            self._inner = inner

        def write(self, data: bytes) -> None:
            writes.append(data)
            self._inner.write(data)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._inner, name)

    link._transport = Counting(link._transport)  # type: ignore[assignment]
    sio = node.node.chat.sio
    for n in range(5):  # no await that yields in between: one iteration
        await sio.emit("notice", {"n": n}, room="r1", namespace=NAMESPACE)
    assert writes == []
    await asyncio.sleep(0)
    assert writes == [
        b"".join(wsdirect.text_frame(f'42{NAMESPACE},["notice",{{"n":{n}}}]') for n in range(5))
    ]
    await client.wait_for("notice", lambda d: d["n"] == 4)
    assert [d["n"] for d in client.events["notice"]] == list(range(5))


async def test_order_holds_when_some_packets_are_queued_and_others_direct(
    node: RunningNode, timeline_client: TimelineFactory
) -> None:
    client = await timeline_client(node.url, "alice")
    await client.join("r1")
    queue = _eio_socket(node, "alice").queue
    sio, fanout = node.node.chat.sio, node.node.chat.fanout
    for round_ in range(20):
        base = round_ * 5
        direct, queued = fanout.direct_writes, fanout.queued_writes
        # No await in between: the writer cannot run, so everything after the packet put in
        # its queue has to queue behind it.
        await sio.emit("notice", {"n": base}, room="r1", namespace=NAMESPACE)
        queue.put_nowait(_notice(base + 1))
        await sio.emit("notice", {"n": base + 2}, room="r1", namespace=NAMESPACE)
        await sio.emit("notice", {"n": base + 3}, room="r1", namespace=NAMESPACE)
        assert (fanout.direct_writes - direct, fanout.queued_writes - queued) == (1, 2)
        await asyncio.sleep(0.01)  # the writer drains and parks again
        await sio.emit("notice", {"n": base + 4}, room="r1", namespace=NAMESPACE)
        assert fanout.direct_writes - direct >= 2  # other room events may go direct too
    await client.wait_for("notice", lambda d: d["n"] == 99)
    assert [d["n"] for d in client.events["notice"]] == list(range(100))


async def test_broadcasts_interleave_with_acks_in_order(
    node: RunningNode, timeline_client: TimelineFactory
) -> None:
    # The room's owner: staff skip the chat rate limit (a host of another seller does not).
    sender = await timeline_client(node.url, "host", role="host")
    watcher = await timeline_client(node.url, "bob")
    await sender.join("r1")
    await watcher.join("r1")
    acks: list[dict[str, Any]] = []

    def acked(ack: dict[str, Any]) -> None:
        sender.timeline.append(("ack", ack))
        acks.append(ack)

    for i in range(60):
        await sender.sio.emit(
            "chat", {"room": "r1", "text": f"m{i}"}, namespace=NAMESPACE, callback=acked
        )
        if i % 3 == 0:
            await node.node.chat.emit("r1", "notice", {"n": i})
    await asyncio.wait_for(
        _until(lambda: len(acks) == 60 and len(watcher.events["chat"]) == 60), 10
    )
    assert all(a["ok"] for a in acks)
    for client in (sender, watcher):
        texts = [d["text"] for e, d in client.timeline if e == "chat"]
        assert sorted(texts, key=lambda t: int(t[1:])) == [f"m{i}" for i in range(60)]
        assert len(set(texts)) == 60
        assert [d["n"] for d in client.events["notice"]] == list(range(0, 60, 3))
    # The handler broadcasts a message before acknowledging it: every ack comes after its echo.
    seen: set[str] = set()
    for event, data in sender.timeline:
        if event == "chat":
            seen.add(data["id"])
        elif event == "ack":
            assert data["id"] in seen
    # One emit reaches everyone, so everyone sees the room's broadcasts in one order.
    assert [d["id"] for d in sender.events["chat"]] == [d["id"] for d in watcher.events["chat"]]


async def test_polling_and_upgrading_clients_get_everything(
    node: RunningNode, timeline_client: TimelineFactory
) -> None:
    poller = await timeline_client(node.url, "poller", transports=("polling",))
    ws = await timeline_client(node.url, "ws")
    await poller.join("r1")
    await ws.join("r1")
    upgrader = None
    for i in range(150):
        if i == 20:  # polling first, upgraded to WebSocket while broadcasts flow
            upgrader = await timeline_client(node.url, "upgrader", transports=None)
            await upgrader.join("r1")
            first = i + 1
        await node.node.chat.emit("r1", "notice", {"n": i})
        await asyncio.sleep(0.003)
    assert upgrader is not None and upgrader.sio.transport() == "websocket"
    for client in (poller, ws):
        await client.wait_for("notice", lambda d: d["n"] == 149)
        assert [d["n"] for d in client.events["notice"]] == list(range(150))
    await upgrader.wait_for("notice", lambda d: d["n"] == 149)
    got = [d["n"] for d in upgrader.events["notice"]]
    assert got == list(range(got[0], 150)) and got[0] <= first
    assert poller.sio.transport() == "polling"
    poller_eio = _eio_socket(node, "poller").sid
    assert poller_eio not in _links(node)
    assert _eio_socket(node, "upgrader").sid in _links(node)
    # Closed from the server as a ban closes it (a polling client closing itself waits out its
    # pending GET). Not engine.io's own disconnect: it marks the session closed and then waits
    # for the CLOSE packet to drain, so a GET arriving in between is refused and it waits forever.
    await node.node.chat.sio.disconnect(_sid(node, "poller"), namespace=NAMESPACE)
    await asyncio.wait_for(poller.disconnected.wait(), 5)


async def test_a_client_that_stops_reading_is_queued_then_dropped(
    node: RunningNode, connect: ClientFactory, tokens: TokenAuthority
) -> None:
    """Direct writes stop at the transport's buffer bound; the bounded queue then drops it."""
    fast = await connect(node.url, "fast")
    await fast.join("r1")

    class Sink:
        def chat(self, slot: int, seq: int, sent_us: int) -> None:
            pass

        def lost(self, slot: int, reason: str) -> None:
            pass

    token = tokens.issue(user="stalled", role="viewer", name="Stalled")
    viewer = await open_viewer(0, node.url, NAMESPACE, {"token": token}, Sink(), 5)
    ack = await asyncio.wait_for(viewer.call("join", {"room": "r1"}), 5)
    assert ack["ok"]
    assert viewer._transport is not None
    viewer._transport.pause_reading()

    chat = node.node.chat
    chat.fanout.max_queue = 10
    link = _links(node)[_eio_socket(node, "stalled").sid]
    transport = link._transport
    peak = 0
    blob = "x" * 16_000
    sent = 0
    for i in range(600):
        if transport.is_closing():
            break
        await chat.sio.emit("notice", {"n": i, "blob": blob}, room="r1", namespace=NAMESPACE)
        sent += 1
        peak = max(peak, transport.get_write_buffer_size())
        await asyncio.sleep(0.001)
    await asyncio.wait_for(_until(lambda: transport.is_closing()), 10)
    metrics = node.node.metrics.render().decode()
    assert "live_chat_slow_clients_dropped_total 1.0" in metrics
    # Bound + one writer batch up to aiohttp's drain limit, not everything that was sent.
    assert peak < 512 * 1024, peak
    assert sent * 16_000 > 4 * peak
    await fast.wait_for("notice", lambda d: d["n"] == sent - 1, within=15)
    assert [d["n"] for d in fast.events["notice"]] == list(range(sent))
    assert not fast.disconnected.is_set()
    viewer.abort()


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never held")


async def test_websockets_do_not_negotiate_compression(node: RunningNode) -> None:
    """Browsers offer permessage-deflate; a broadcast is one frame for all only uncompressed."""
    url = node.url + "/socket.io/?EIO=4&transport=websocket"
    async with aiohttp.ClientSession() as session, session.ws_connect(url, compress=15) as ws:
        assert ws.compress == 0
        assert (await ws.receive_str()).startswith("0{")


async def test_other_engineio_internals_fall_back_to_the_queue(
    start_node: NodeFactory, connect: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wsdirect, "ENGINEIO_VERSIONS", ((9, 0), (10, 0)))
    running = await start_node()
    await running.node.rooms.create(title="Test room", owner="host", room_id="r1")
    fanout = running.node.chat.fanout
    assert fanout._direct is None
    clients = [await connect(running.url, f"u{i}") for i in range(3)]
    for client in clients:
        await client.join("r1")
    for i in range(20):
        await running.node.chat.emit("r1", "notice", {"n": i})
    for client in clients:
        await client.wait_for("notice", lambda d: d["n"] == 19)
        assert [d["n"] for d in client.events["notice"]] == list(range(20))
    assert fanout.direct_writes == 0 and fanout.queued_writes >= 60
