"""A media worker process: serves viewers' peer connections with the frames the node's ingest
sends over the channel (`python -m media.worker_process --fd N --index I --config JSON`).

Its rooms are fed rooms of an ordinary MediaServer (same Forwarder/Downtrack/ForwardSender, own
GOP cache); keyframe requests go back to the node, which coalesces them per room. It ends when the
channel closes: the node stopped it, or died.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import socket
from collections.abc import Coroutine, Sequence
from typing import Any

from media.config import MediaConfig
from media.errors import MediaError
from media.frames import EncodedFrame
from media.keyframes import Send
from media.room import Session
from media.server import MediaServer
from media.workers.channel import ChannelProtocol, Control, control_record

logger = logging.getLogger(__name__)

# Requests from this worker's viewers are folded here for a tenth of the node's interval only:
# the node coalesces across workers, and a viewer's request should not wait twice.
_LOCAL_KEYFRAME_SHARE = 0.1
_SHUTDOWN_S = 1.0


class WorkerService:
    """The worker's side of the channel: feeds, WHEP requests, notices and stats to the node."""

    def __init__(self, config: MediaConfig) -> None:
        self.media = MediaServer(
            dataclasses.replace(
                config,
                workers=0,
                keyframe_interval_s=config.keyframe_interval_s * _LOCAL_KEYFRAME_SHARE,
            )
        )
        self.media.session_closed = self._session_closed
        self.channel = ChannelProtocol(self._on_frame, self._on_control, self._on_lost)
        self.done = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._stats_interval = config.worker_stats_interval_s

    def send(self, message: Control) -> None:
        self.channel.write(control_record(message))

    async def run(self) -> None:
        self.media.measure()
        self.send({"op": "ready", "pid": os.getpid()})
        while not self.done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.done.wait(), self._stats_interval)
            report: Control = {"op": "stats", "stats": dataclasses.asdict(self.media.stats())}
            if self.media.governor is not None:
                report["load"] = self.media.governor.load.to_json()
            self.send(report)
        try:
            await asyncio.wait_for(self.media.shutdown(), _SHUTDOWN_S)
        except TimeoutError:
            logger.warning("media worker: sessions still closing at exit")
        for task in self._tasks:
            task.cancel()

    # -- from the node ------------------------------------------------------------------------

    def _on_frame(self, room_id: str, frame: EncodedFrame) -> None:
        room = self.media.rooms.get(room_id)
        if room is not None and room.fed:
            room.on_frame(frame)

    def _on_control(self, message: Control) -> None:
        op = message.get("op")
        if op == "feed":
            self.media.open_feed(message["room"], self._keyframe_sender(message["room"]))
        elif op == "unfeed":
            self.media.close_feed(message["room"])
        elif op == "publisher_end":
            room = self.media.rooms.get(message["room"])
            if room is not None:
                room.end_of_publisher()
        elif op == "play":
            self._spawn(self._play(message))
        elif op == "close":
            self._spawn(self._close(message))
        else:
            logger.warning("media worker: unknown request %r", op)

    def _on_lost(self, exc: Exception | None) -> None:
        self.done.set()

    async def _play(self, message: Control) -> None:
        room_id: str = message["room"]
        room = self.media.rooms.get(room_id)
        if room is not None and room.video_codec is None:
            room.video_codec = message.get("codec")
        try:
            session_id, answer = await self.media.play(
                room_id,
                message["offer"],
                owner=message.get("owner"),
                beyond_limit=bool(message.get("beyond_limit")),
            )
        except MediaError as exc:
            self._reply(message, {"error": exc.code, "detail": exc.detail, **exc.extra})
            return
        room = self.media.rooms.get(room_id)
        codec = room.video_codec if room is not None else None
        self._reply(message, {"session": session_id, "answer": answer, "codec": codec})

    async def _close(self, message: Control) -> None:
        try:
            await self.media.close(message["session"])
        except MediaError as exc:
            self._reply(message, {"error": exc.code, "detail": exc.detail})
            return
        self._reply(message, {})

    def _reply(self, request: Control, result: Control) -> None:
        self.send({"op": "reply", "id": request["id"], **result})

    # -- to the node ------------------------------------------------------------------------------

    def _keyframe_sender(self, room_id: str) -> Send:
        async def send() -> bool:
            self.send({"op": "keyframe", "room": room_id})
            return True

        return send

    def _session_closed(self, session: Session) -> None:
        self.send({"op": "ended", "session": session.id})

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class ChannelLogHandler(logging.Handler):
    """Sends log records to the node, which logs them with its own handlers (JSON or text)."""

    def __init__(self, service: WorkerService) -> None:
        super().__init__()
        self._service = service

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.exc_info:
                text += "\n" + logging.Formatter().formatException(record.exc_info)
            self._service.send(
                {"op": "log", "level": record.levelno, "logger": record.name, "message": text}
            )
        except Exception:
            self.handleError(record)


async def serve(fd: int, config: MediaConfig) -> None:
    """Run the worker on the channel socket `fd` until the node closes it."""
    service = WorkerService(config)
    logging.getLogger().addHandler(ChannelLogHandler(service))
    sock = socket.socket(fileno=fd)
    await asyncio.get_running_loop().connect_accepted_socket(lambda: service.channel, sock)
    await service.run()


def config_from_json(text: str) -> MediaConfig:
    values: dict[str, Any] = json.loads(text)
    values["video_codecs"] = tuple(values.get("video_codecs", ()))
    return MediaConfig(**values)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A media worker process (started by the node).")
    parser.add_argument("--fd", type=int, required=True, help="the channel socket to the node")
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--config", required=True, help="MediaConfig as JSON")
    parser.add_argument("--log-level", type=int, default=logging.INFO, help="the node's level")
    args = parser.parse_args(argv)
    # The node stops its workers: Ctrl-C on its terminal is for it, not for us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Records go to the node over the channel (ChannelLogHandler), not to our stderr.
    logging.getLogger().setLevel(args.log_level)
    import uvloop

    uvloop.run(serve(args.fd, config_from_json(args.config)))


if __name__ == "__main__":
    main()
