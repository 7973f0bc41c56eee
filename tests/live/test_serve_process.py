"""`live serve` as a process: embedded Valkey and media workers up, healthy, and everything
stopped on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import aiohttp

from tests.conftest import SECRET


def valkey_pids(data_dir: Path) -> list[int]:
    """Valkey processes whose working directory is under `data_dir`."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if "valkey" in (proc / "comm").read_text() and str(data_dir) in os.readlink(
                proc / "cwd"
            ):
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def media_worker_pids(parent: int) -> list[int]:
    """Media worker processes started by `parent`."""
    pids = []
    for task in Path(f"/proc/{parent}/task").iterdir():
        for pid in (task / "children").read_text().split():
            if "media.worker_process" in Path(f"/proc/{pid}/cmdline").read_text():
                pids.append(int(pid))
    return pids


def running(pids: list[int]) -> list[int]:
    return [pid for pid in pids if Path(f"/proc/{pid}").exists()]


async def test_serve_starts_embedded_valkey_and_stops_it_on_sigterm(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "LIVE_JWT_SECRET": SECRET,
        "LIVE_DATA_DIR": str(tmp_path),
        "LIVE_NODE_ID": "proc-node",
        "LIVE_LOG_JSON": "true",
        "LIVE_MEDIA_WORKERS": "2",
    }
    env.pop("REDIS_URL", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "live.cli.main",
        "serve",
        "--port",
        "0",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    async with asyncio.timeout(30):
        line = (await proc.stdout.readline()).decode()
    url = re.search(r"listening on (http://\S+)", line)
    assert url, line
    async with aiohttp.ClientSession() as http, http.get(url.group(1) + "/healthz") as resp:
        assert (await resp.json())["node"] == "proc-node"
    assert len(valkey_pids(tmp_path)) == 1
    assert (tmp_path / "valkey").is_dir()
    workers = media_worker_pids(proc.pid)
    assert len(workers) == 2

    proc.send_signal(signal.SIGTERM)
    async with asyncio.timeout(20):
        _, stderr = await proc.communicate()
    assert proc.returncode == 0, stderr.decode()[-2000:]
    assert valkey_pids(tmp_path) == []
    assert running(workers) == []
    # Logs are JSON lines with no error in them.
    for raw in stderr.decode().splitlines():
        assert raw.startswith("{"), raw
        assert '"level": "error"' not in raw, raw


async def _serve(env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "live.cli.main", "serve", "--port", "0", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def test_refused_settings_are_one_line_without_their_values(tmp_path: Path) -> None:
    short = "0123456789abcdef0123456789abcde"  # 31 bytes: one too few
    env = {
        **os.environ, "LIVE_JWT_SECRET": SECRET, "LIVE_DATA_DIR": str(tmp_path),
        "LIVE_WEBHOOK_URL": "http://127.0.0.1:9/hooks", "LIVE_WEBHOOK_SECRET": short,
    }  # fmt: skip
    proc = await _serve(env)
    async with asyncio.timeout(30):
        stdout, stderr = await proc.communicate()
    assert proc.returncode == 2
    lines = stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "LIVE_WEBHOOK_SECRET of at least 32 bytes" in lines[0], lines
    assert short[:8] not in stderr.decode() and stdout == b""
    assert valkey_pids(tmp_path) == []


async def test_a_connection_over_the_cap_is_told_so_on_the_real_event_loop(
    tmp_path: Path, valkey_url: str
) -> None:
    # `live serve` runs on uvloop, whose transports are not asyncio.WriteTransports: the 429
    # was never written there, the connection only dropped.
    env = {
        **os.environ, "LIVE_JWT_SECRET": SECRET, "REDIS_URL": valkey_url,
        "LIVE_MAX_CONNECTIONS_PER_IP": "2", "LIVE_MEDIA_WORKERS": "0", "LIVE_LOG_JSON": "true",
    }  # fmt: skip
    proc = await _serve(env)
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(30):
            line = (await proc.stdout.readline()).decode()
        found = re.search(r"listening on http://([\d.]+):(\d+)", line)
        assert found, line
        host, port = found.group(1), int(found.group(2))
        held = [await asyncio.open_connection(host, port) for _ in range(2)]
        for reader, writer in held:
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: node\r\n\r\n")
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
        reader, writer = await asyncio.open_connection(host, port)
        async with asyncio.timeout(5):
            refusal = await reader.read()
        writer.close()
        assert refusal.startswith(b"HTTP/1.1 429 "), refusal
        assert b"Retry-After: 1" in refusal
        for _, writer in held:
            writer.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            await proc.communicate()
