"""One media worker process as the node sees it: the process, its channel, requests in flight,
and the bounded frame backlog towards it (a worker that falls behind skips to a keyframe)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

from media.admission import IDLE, Load
from media.config import MediaConfig
from media.errors import MediaError
from media.frames import EncodedFrame
from media.workers.channel import ChannelProtocol, Control, control_record

logger = logging.getLogger(__name__)

# Socket buffers of the channel: a keyframe burst should fit without waking the loop per chunk.
CHANNEL_SOCKET_BUFFER = 1 << 20
_ROOT = str(Path(__file__).resolve().parents[2])

Notice = Callable[["WorkerLink", Control], None]


class WorkerLink:
    """A worker process and its channel; `closed` is set when either ends."""

    def __init__(self, index: int, config: MediaConfig, on_notice: Notice) -> None:
        self.index = index
        self.config = config
        self._on_notice = on_notice
        self.process: asyncio.subprocess.Process | None = None
        self.channel = ChannelProtocol(self._frame_from_worker, self._on_control, self._on_lost)
        self.ready = asyncio.Event()
        self.closed = asyncio.Event()
        self.started_at = time.monotonic()
        self.viewers = 0  # sessions placed here, including those being answered
        self.stats: Control = {}  # the worker's last reported MediaStats
        self.load = IDLE  # the worker's last reported measured load (media.admission)
        self.refusing = False  # it refused a viewer since its last report
        self.frames_dropped = 0  # frames not sent because the worker's backlog was full
        self.skips = 0  # times a room's video skipped to its next keyframe for this worker
        self._skipping: set[str] = set()
        self._requests: dict[int, asyncio.Future[Control]] = {}
        self._ids = itertools.count(1)

    @property
    def admitting(self) -> bool:
        """Whether its last report admits viewers and it has refused none since."""
        return self.load.admitting and not self.refusing

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def usable(self) -> bool:
        return self.ready.is_set() and not self.closed.is_set()

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the process and wait until it is ready; raises if it is not within the timeout."""
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        _enlarge(ours, socket.SO_SNDBUF)
        _enlarge(theirs, socket.SO_RCVBUF)
        # The node counts sessions per owner (across workers); a worker sees only its share.
        worker_config = dataclasses.replace(self.config, workers=0, sessions_per_owner=0)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_ROOT, env.get("PYTHONPATH")) if p)
        try:
            # Its own session: a terminal's Ctrl-C goes to the node, which stops its workers.
            # The worker ends when its end of the channel reads EOF, also if the node dies.
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "media.worker_process",
                "--fd",
                str(theirs.fileno()),
                "--index",
                str(self.index),
                "--config",
                json.dumps(dataclasses.asdict(worker_config)),
                # Records below the node's level would only be dropped by the node.
                "--log-level",
                str(logging.getLogger().getEffectiveLevel()),
                pass_fds=(theirs.fileno(),),
                start_new_session=True,
                env=env,
            )
        except BaseException:
            ours.close()
            self.closed.set()
            raise
        finally:
            theirs.close()
        await loop.connect_accepted_socket(lambda: self.channel, ours)
        waits = [asyncio.ensure_future(e.wait()) for e in (self.ready, self.closed)]
        try:
            await asyncio.wait(
                waits,
                timeout=self.config.worker_start_timeout_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            for waiting in waits:
                waiting.cancel()
        if not self.usable:
            logger.warning("media worker %d did not start", self.index)
            await self.stop(1.0)
            raise MediaError("closed", f"media worker {self.index} failed to start")

    async def stop(self, grace_s: float) -> None:
        """Close the channel (the worker ends its sessions and exits); kill it after `grace_s`."""
        if self.channel.transport is not None:
            self.channel.transport.abort()
        self.closed.set()
        process = self.process
        if process is None:
            return
        try:
            await asyncio.wait_for(process.wait(), grace_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()

    # -- channel ----------------------------------------------------------------------------------

    def send(self, message: Control) -> None:
        self.channel.write(control_record(message))

    async def request(self, message: Control) -> Control:
        """Send a request and wait for its reply; a MediaError reply is raised as one."""
        if not self.usable:
            raise MediaError("closed", f"media worker {self.index} is not running")
        request_id = next(self._ids)
        future: asyncio.Future[Control] = asyncio.get_running_loop().create_future()
        self._requests[request_id] = future
        try:
            self.send({**message, "id": request_id})
            reply = await future
        finally:
            self._requests.pop(request_id, None)
        if "error" in reply:
            extra = {"reason": reply["reason"]} if "reason" in reply else {}
            raise MediaError(reply["error"], reply.get("detail", ""), **extra)
        return reply

    def send_frame(self, room_id: str, frame: EncodedFrame, record: bytes) -> bool:
        """Queue a frame record unless the worker is too far behind; True when a skipped video
        stream now needs a keyframe (it resumes at the next one that fits)."""
        if self.closed.is_set():
            return False
        full = self.channel.backlog > self.config.worker_backlog_bytes
        if frame.kind == "video":
            if room_id in self._skipping:
                if not frame.keyframe or full:
                    self.frames_dropped += 1
                    return frame.keyframe  # a keyframe lost to a full backlog: ask again
                self._skipping.discard(room_id)
            elif full:
                self._skipping.add(room_id)
                self.frames_dropped += 1
                self.skips += 1
                return True
        elif full:
            self.frames_dropped += 1
            return False
        self.channel.write(record)
        return False

    def forget_room(self, room_id: str) -> None:
        self._skipping.discard(room_id)

    def _frame_from_worker(self, room_id: str, frame: EncodedFrame) -> None:
        logger.warning("media worker %d sent a frame; ignored", self.index)

    def _on_control(self, message: Control) -> None:
        op = message.get("op")
        if op == "reply":
            future = self._requests.get(message.get("id", 0))
            if future is not None and not future.done():
                future.set_result(message)
            return
        if op == "ready":
            self.ready.set()
        elif op == "stats":
            self.stats = message.get("stats", {})
            if "load" in message:
                self.load = Load.from_json(message["load"])
            self.refusing = False
        self._on_notice(self, message)

    def _on_lost(self, exc: Exception | None) -> None:
        self.closed.set()
        for future in self._requests.values():
            if not future.done():
                future.set_exception(MediaError("closed", f"media worker {self.index} exited"))


def _enlarge(sock: socket.socket, option: int) -> None:
    force = {socket.SO_SNDBUF: 32, socket.SO_RCVBUF: 33}[option]  # SO_SNDBUFFORCE/SO_RCVBUFFORCE
    try:
        sock.setsockopt(socket.SOL_SOCKET, force, CHANNEL_SOCKET_BUFFER)
    except OSError:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, option, CHANNEL_SOCKET_BUFFER)
