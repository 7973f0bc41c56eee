"""Room broadcasts without one task per recipient, and with a bound on every client's queue.

python-socketio's manager creates one asyncio task per recipient per emit and engine.io queues
are unbounded, so a room of 5,000 costs 5,000 tasks per message and a stalled client grows
memory without limit. This manager encodes a broadcast once and puts it straight into each
client's engine.io queue; a client whose queue is already `max_queue` deep is disconnected (it
reconnects and resumes from history) instead of slowing the room or hoarding memory.

When a recipient is on a WebSocket whose engine.io writer is idle, the broadcast skips the
queue altogether: one frame is built per emit and written on each such transport
(`chat/wsdirect.py`, which holds the engine.io/aiohttp internals that needs and falls back when
they differ). Busy writers, clients with a backlog in their transport and polling clients get
the queue, so a client's packets never change order.

It leans on two engine.io internals, `server.eio.sockets[eio_sid]` and that socket's `queue`
(an asyncio.Queue its writer task drains); `supported()` checks they are there and the manager
falls back to the stock path otherwise. Acknowledgements take the same direct write through
python-socketio's `AsyncServer._send_packet` (wrapped per server when it is there): a request's
ack otherwise costs a queue hand-off and a writer wake-up of its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import socketio
from engineio import packet as eio_packet
from socketio import packet as sio_packet

from chat import wsdirect

log = logging.getLogger(__name__)


class FanoutManager(socketio.AsyncManager):  # type: ignore[misc]
    def __init__(
        self,
        max_queue: int = 1000,
        on_drop: Callable[[], None] | None = None,
        on_oversize: Callable[[], None] | None = None,
    ) -> None:
        super().__init__()
        self.max_queue = max_queue
        self._on_drop = on_drop
        self._on_oversize = on_oversize
        self._tasks: set[asyncio.Task[None]] = set()
        self._direct: wsdirect.DirectWrites | None = None
        self.direct_writes = 0  # deliveries written straight to a transport
        self.queued_writes = 0  # deliveries handed to an engine.io queue
        self.direct_acks = 0  # acknowledgements written straight to a transport

    def set_server(self, server: Any) -> None:
        super().set_server(server)
        self._direct = wsdirect.install(server.eio, on_oversize=self._on_oversize)
        if self._direct is not None:
            self._direct_acks(server, self._direct)

    def _direct_acks(self, server: Any, direct: wsdirect.DirectWrites) -> None:
        """Acknowledgements (one per request: every `buy`, `chat`, `join`) take the direct
        write too when the connection's writer is idle, under the same rule as broadcasts, so
        a client's packets keep their order; otherwise, and for binary ones, engine.io's queue.

        Wraps python-socketio's `AsyncServer._send_packet(eio_sid, pkt)` on this server (an
        internal: when it is not there the stock path stays)."""
        send = getattr(server, "_send_packet", None)
        if send is None or not asyncio.iscoroutinefunction(send):
            log.warning("direct acknowledgements disabled: python-socketio internals differ")
            return
        links = direct.links
        ack_type = sio_packet.ACK
        message = eio_packet.MESSAGE

        async def send_packet(eio_sid: str, pkt: Any) -> None:
            if pkt.packet_type != ack_type:
                await send(eio_sid, pkt)
                return
            encoded = pkt.encode()
            if not isinstance(encoded, str):  # attachments: several engine.io packets
                for part in encoded:
                    await server.eio.send(eio_sid, part)
                return
            link = links.get(eio_sid)
            if link is not None:
                frame = wsdirect.text_frame(eio_packet.Packet(message, encoded).encode())
                if link.write(frame):
                    direct.flush_soon()
                    self.direct_acks += 1
                    return
            await server.eio.send(eio_sid, encoded)

        server._send_packet = send_packet

    def supported(self) -> bool:
        sockets = getattr(getattr(self.server, "eio", None), "sockets", None)
        return isinstance(sockets, dict)

    async def emit(
        self,
        event: str,
        data: Any,
        namespace: str,
        room: Any = None,
        skip_sid: Any = None,
        callback: Any = None,
        to: Any = None,
        **kwargs: Any,
    ) -> None:
        room = to or room
        if callback is not None or not self.supported():
            await super().emit(
                event, data, namespace, room=room, skip_sid=skip_sid, callback=callback, **kwargs
            )
            return
        if namespace not in self.rooms:
            return
        args = list(data) if isinstance(data, tuple) else ([] if data is None else [data])
        skip = set(skip_sid) if isinstance(skip_sid, list) else {skip_sid}
        encoded = self.server.packet_class(
            sio_packet.EVENT, namespace=namespace, data=[event, *args]
        ).encode()
        packets = [
            eio_packet.Packet(eio_packet.MESSAGE, p)
            for p in (encoded if isinstance(encoded, list) else [encoded])
        ]
        writes = self._direct
        links = writes.links if writes is not None else {}
        frame = None
        if links and isinstance(encoded, str):  # binary events carry attachments: queue them
            frame = wsdirect.text_frame(packets[0].encode())
        sockets = self.server.eio.sockets
        direct = queued = 0
        for sid, eio_sid in self.get_participants(namespace, room):
            if sid in skip:
                continue
            if frame is not None:
                link = links.get(eio_sid)
                if link is not None and link.write(frame):
                    direct += 1
                    continue
            client = sockets.get(eio_sid)
            if client is None or client.closed or client.closing:
                continue
            if client.queue.qsize() + len(packets) > self.max_queue:
                self._drop(sid, namespace, links.get(eio_sid))
                continue
            for pkt in packets:
                client.queue.put_nowait(pkt)
            queued += 1
        if direct and writes is not None:
            writes.flush_soon()
        self.direct_writes += direct
        self.queued_writes += queued

    async def close_connection(self, eio_sid: str) -> None:
        """Close an engine.io connection: its close packet, then its transport. engine.io alone
        leaves a WebSocket open until the client answers the close packet or the ping times out
        (45 s), so a client that ignores it would keep its connection."""
        link = self._direct.links.get(eio_sid) if self._direct is not None else None
        await self.server.eio.disconnect(eio_sid)
        if link is not None:
            link.close()

    def _drop(self, sid: str, namespace: str, link: wsdirect.Link | None = None) -> None:
        if self._on_drop:
            self._on_drop()
        log.info("disconnecting slow client %s: its send queue is full", sid)
        task = asyncio.ensure_future(self._disconnect(sid, namespace, link))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _disconnect(self, sid: str, namespace: str, link: wsdirect.Link | None) -> None:
        await self.server.disconnect(sid, namespace=namespace)
        # A peer that stopped reading never sees the disconnect packet, and its engine.io
        # writer waits on the full transport for good: cut the connection instead.
        if link is not None and link.stalled():
            link.abort()
