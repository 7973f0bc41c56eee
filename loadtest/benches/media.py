"""`live loadtest media`: one host stream (pre-encoded VP8 ~1.5 Mbps 30 fps + Opus) to N viewers.

    scripts/loopback-only live loadtest media --viewers 50,100,200 --seconds 10 \
        --modes forward,aiortc,relay --json bench-results/media.json

The server runs pinned to one core (taskset), the host and the receive-only viewers to another.
Modes: `forward` (the fast send path: media.rtp_writer), `aiortc` (forwarding through each
viewer's aiortc RTCRtpSender), `relay` (aiortc's MediaRelay: decode once, encode per viewer),
`janus` and `janus1` (the Debian Janus streaming plugin as a reference, see
loadtest.benches.janus). Viewers (`--viewer lean`, the default) let aiortc do ICE and DTLS, then
SRTP-decrypt each datagram and read its RTP header in one plain callback: sequence gaps are loss,
marker bits are frames; nothing is decoded. `--viewer aiortc` counts through aiortc's receivers
instead (heavier). Only loopback is used; every loop is bounded by --seconds and setup timeouts.
One JSON line per run is printed; --out appends them to a file, --json writes them as one
document.

This module is the driver (`run_matrix`); it imports neither aiortc nor av. The server, the host
and the viewers are processes of their own (`loadtest.benches.media_roles`), each started with its
role (`ServerRole`, `HostRole`, `ClientRole`) as JSON on its command line.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from loadtest.benches import janus
from loadtest.report import procfs

MODES = ("forward", "aiortc", "relay", "janus", "janus1")
MODES_WITH_WORKERS = ("forward", "aiortc")  # our MediaServer's send paths
JANUS_DIR = "janus"  # under the results: the last Janus run's configuration and janus.log


@dataclass(frozen=True, slots=True)
class MediaBench:
    """What `live loadtest media` asked for: each viewer count with each mode."""

    viewers: list[int]
    modes: list[str]
    seconds: float
    server_cpu: str  # taskset CPU lists
    client_cpu: str
    results: Path  # the stream cache and Janus configurations (every role runs in this directory)
    viewer: str = "lean"  # lean | aiortc
    loop: str = "asyncio"  # the server's event loop: asyncio | uvloop
    media_workers: int = 0  # in the forward and aiortc modes
    port: int = 18555
    batch: int = 10  # viewers connecting at once
    out: Path | None = None  # each run's JSON line is appended here
    # Our server refuses viewers by its measured load (media.admission; forward/aiortc modes);
    # a refused viewer offers again after the Retry-After, at most `retries` more times.
    admission: bool = False
    retries: int = 2
    admit_max_cpu: float = 0.85  # the server's bounds (LIVE_MEDIA_ADMIT_MAX_CPU, _LAG_MS)
    admit_max_lag_ms: float = 50.0

    def workers_for(self, mode: str) -> int:
        return self.media_workers if mode in MODES_WITH_WORKERS else 0


@dataclass(frozen=True, slots=True)
class ServerRole:
    """Our server: WHIP, WHEP and /stats on `port`; prints "ready"."""

    port: int
    mode: str
    loop: str
    workers: int
    admission: bool = False  # MediaConfig.admission
    admit_max_cpu: float = 0.85
    admit_max_lag_ms: float = 50.0


@dataclass(frozen=True, slots=True)
class HostRole:
    """Publishes the pre-encoded stream (to Janus over plain RTP) until stdin closes."""

    url: str
    results: str  # the stream cache's folder
    janus: bool = False
    limit_s: float = 900.0


@dataclass(frozen=True, slots=True)
class ClientRole:
    """`viewers` viewers of `url`, measured for `seconds`; prints one JSON line."""

    url: str
    viewers: int
    seconds: float
    batch: int
    lean: bool
    janus_pid: int = 0  # measure this Janus process instead of our server
    retries: int = 0  # a viewer refused with 503 offers again after Retry-After this many times


Role = ServerRole | HostRole | ClientRole


def role_command(role: Role) -> list[str]:
    """The command line of a role's process."""
    kind = type(role).__name__.removesuffix("Role").lower()
    doc = json.dumps({"role": kind, **asdict(role)})
    return [sys.executable, "-m", "loadtest.benches.media_roles", doc]


def role_from(doc: str) -> Role:
    """The role a process was started with (`role_command`)."""
    fields = json.loads(doc)
    kind = fields.pop("role")
    roles: dict[str, type[Role]] = {"server": ServerRole, "host": HostRole, "client": ClientRole}
    return roles[kind](**fields)


def missing_janus() -> str | None:
    """Why the janus modes cannot run here, or None."""
    if not janus.available():
        return "Janus is not installed (Debian/Ubuntu: apt-get install janus)"
    if not procfs.loopback_only():
        return "the janus modes run only under scripts/loopback-only"
    return None


def run_matrix(bench: MediaBench) -> list[dict[str, Any]]:
    """Each viewer count with each mode, one after another; one JSON line printed per run (and
    appended to `bench.out`)."""
    if os.geteuid() == 0:
        # With autogroup scheduling nice only ranks processes within a session: raise this
        # session's group (all the bench processes) above unrelated work sharing the machine.
        with contextlib.suppress(OSError):
            Path("/proc/self/autogroup").write_text("-15")
    results: list[dict[str, Any]] = []
    for n in bench.viewers:
        for mode in bench.modes:
            line = _run_one(bench, mode, n)
            print(line, flush=True)
            results.append(json.loads(line))
            if bench.out:
                with open(bench.out, "a") as f:
                    f.write(line + "\n")
    return results


def taskset(cpus: str, nice: int = -15) -> list[str]:
    """Pin to `cpus`; as root, also run ahead of unrelated work sharing the machine."""
    prio = ["nice", "-n", str(nice)] if os.geteuid() == 0 else []
    return [*prio, "taskset", "-c", cpus]


def _start_server(bench: MediaBench, mode: str) -> subprocess.Popen[str]:
    """Our server (prints "ready"), or Janus configured under the results' JANUS_DIR."""
    if mode.startswith("janus"):
        janus.add_loopback_alias()
        bench.results.mkdir(exist_ok=True)
        folder = bench.results / JANUS_DIR
        shutil.rmtree(folder, ignore_errors=True)  # the previous run's configuration and log
        folder.mkdir()
        # "janus": stock (a thread per session); "janus1": event_loops = 1, fairer on one core
        janus.write_config(folder, bench.port, event_loops=1 if mode == "janus1" else 0)
        proc = subprocess.Popen(
            [*taskset(bench.server_cpu), "janus", "-F", str(folder), "-C", f"{folder}/janus.jcfg"],
            stdout=open(folder / "janus.log", "w"),  # noqa: SIM115 (lives as long as janus)
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"http://127.0.0.1:{bench.port}/janus/info", timeout=2)
                return proc
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError(f"janus did not start, see {folder}/janus.log")
            time.sleep(0.2)
    role = ServerRole(
        bench.port, mode, bench.loop, bench.workers_for(mode), admission=bench.admission,
        admit_max_cpu=bench.admit_max_cpu, admit_max_lag_ms=bench.admit_max_lag_ms,
    )  # fmt: skip
    server = subprocess.Popen(
        [*taskset(bench.server_cpu), *role_command(role)], stdout=subprocess.PIPE, text=True
    )
    assert server.stdout is not None
    assert server.stdout.readline().strip() == "ready"
    return server


def _run_one(bench: MediaBench, mode: str, n: int) -> str:
    pin: dict[str, Any] = {
        "server_cpu": bench.server_cpu, "client_cpu": bench.client_cpu, "loop": bench.loop,
        "media_workers": bench.workers_for(mode), "admission": bench.admission,
    }  # fmt: skip
    if bench.admission:
        pin["admit_max_cpu"] = bench.admit_max_cpu
        pin["admit_max_lag_ms"] = bench.admit_max_lag_ms
    janus_mode = mode.startswith("janus")
    if janus_mode:
        pin["loop"] = mode
    server = _start_server(bench, mode)
    host: subprocess.Popen[str] | None = None
    url = f"http://127.0.0.1:{bench.port}"
    try:
        feed = HostRole(url, str(bench.results), janus=janus_mode)
        host = subprocess.Popen(
            [*taskset(bench.client_cpu, nice=-20), *role_command(feed)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert host.stdout is not None
        live = json.loads(host.stdout.readline())
        viewers = ClientRole(
            url=f"{url}/janus" if janus_mode else url, viewers=n, seconds=bench.seconds,
            batch=bench.batch, lean=bench.viewer == "lean",
            janus_pid=server.pid if janus_mode else 0,
            retries=bench.retries if bench.admission else 0,
        )  # fmt: skip
        out = subprocess.run(
            [*taskset(bench.client_cpu), *role_command(viewers)],
            capture_output=True,
            text=True,
            timeout=bench.seconds + 600,
        )
        line = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
        if line[:1] == "{":
            return json.dumps({"mode": mode, **pin, **live, **json.loads(line)})
        return json.dumps({"mode": mode, "viewers": n, **pin, "error": out.stderr[-1500:]})
    finally:
        if host is not None:
            assert host.stdin is not None
            host.stdin.close()
            try:
                host.wait(timeout=15)
            except subprocess.TimeoutExpired:
                host.kill()
        if janus_mode:
            server.terminate()
        else:
            with contextlib.suppress(Exception):
                urllib.request.urlopen(f"{url}/quit", data=b"", timeout=5)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=15)


def table(runs: list[dict[str, Any]]) -> str:
    """One row per run: the figures `docs/media.md` tabulates."""
    head = (
        f"{'mode':>8} {'N':>5} {'cores':>6} {'%/viewer':>8} {'N/core':>6} {'fps min/med':>11}"
        f" {'loss max':>8} {'ttff med/max ms':>15} {'rss/viewer':>10} {'rq wait':>7}  ok"
    )
    if any("admitted" in r for r in runs):
        head += "  admitted/refused (fps p5)"
    lines = [head]
    for r in runs:
        if "error" in r:
            last = (str(r["error"]).strip().splitlines() or ["?"])[-1]
            lines.append(f"{r['mode']:>8} {r['viewers']:>5}  error: {last}")
            continue
        lines.append(
            f"{r['mode']:>8} {r['viewers']:>5} {r['server_cpu_cores']:>6.3f}"
            f" {r['server_cpu_per_viewer_pct']:>7.2f}% {r['viewers_per_core'] or '-'!s:>6}"
            f" {r['fps_min']:>5.1f}/{r['fps_median']:<5.1f} {r['loss_pct_max']:>7.2f}%"
            f" {r['ttff_median_ms']:>7}/{r['ttff_max_ms']:<7} {r['rss_per_viewer_kb']:>7.0f} KB"
            f" {r['server_runqueue_wait_pct']:>6.1f}%  {'yes' if r['all_viewers_ok'] else 'no'}"
            + (f"  {r['admitted']}/{r['refused']} ({r['fps_p5']:.1f})" if "admitted" in r else "")
        )
    return "\n".join(lines)
