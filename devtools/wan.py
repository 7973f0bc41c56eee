"""A cluster's WAN on one machine: one network namespace per node, each with a TUN device `wan0`,
and a delay router that carries IPv4 packets between those devices and one on the host, holding
each for the one-way delay between the regions of its ends. Needs root, iproute2 and /dev/net/tun.

The router stands in for `tc qdisc ... netem delay`: kernels built without sch_netem (and sch_prio,
which per-destination delays would need) are common in containers; it adds a fixed delay, no jitter
or loss. Every address is in 10.77.N.0/24 (N picked free on this host) and exists only in these
namespaces and on the host's TUN device; no namespace has a default route, so nothing leaves them.
A reaper process deletes everything when the creating process exits, however it exits.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import heapq
import json
import math
import os
import re
import selectors
import shutil
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edge.selection import RegionDistances

PREFIX = "lcw"  # namespaces are lcwPID-NAME, the host's TUN device lcwPIDh
CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
TUNSETIFF = 0x400454CA
IFF_TUN, IFF_NO_PI = 0x0001, 0x1000
NETNS_DIR = Path("/run/netns")
UNNAMED_RTT_MS = 150.0  # RTT between regions the distance table does not name
_TAG = re.compile(rf"^{PREFIX}(\d+)(?:-|h$)")


class WanError(RuntimeError):
    """The namespaces could not be set up (not root, no iproute2, a command failed)."""


def available() -> str | None:
    """Why a WAN cannot be built here, or None when it can."""
    if os.geteuid() != 0:
        return "needs root"
    if not shutil.which("ip"):
        return "needs iproute2"
    if not os.path.exists("/dev/net/tun"):
        return "needs /dev/net/tun"
    return None


@dataclass(frozen=True, slots=True)
class WanNode:
    name: str  # the node id, e.g. origin, edge-eu
    region: str
    netns: str
    address: str


def one_way_delays(
    nodes: Mapping[str, str], distances: RegionDistances
) -> dict[tuple[str, str], float]:
    """One-way delay in ms between nodes {name: region} of different regions: half the table's
    distance, read as an RTT in ms (UNNAMED_RTT_MS for pairs it does not name)."""
    out: dict[tuple[str, str], float] = {}
    for a, ra in nodes.items():
        for b, rb in nodes.items():
            if ra != rb:
                rtt = distances.distance(ra, rb)
                out[a, b] = (rtt if math.isfinite(rtt) else UNNAMED_RTT_MS) / 2
    return out


def _ip(*args: str) -> str:
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=10, check=True)
    except subprocess.CalledProcessError as e:
        raise WanError(f"{' '.join(args)}: {e.stderr.strip()}") from e
    except (OSError, subprocess.TimeoutExpired) as e:
        raise WanError(f"{' '.join(args)}: {e}") from e
    return done.stdout


def _free_subnet() -> int:
    used = _ip("ip", "-4", "-o", "addr") + _ip("ip", "-4", "route")
    for n in range(1, 255):
        if not re.search(rf"\b10\.77\.{n}\.", used):
            return n
    raise WanError("no free 10.77.N.0/24 on this host")


@dataclass
class Wan:
    """The namespaces of one cluster and their router; `close()` (or the reaper) deletes them."""

    tag: str
    host_address: str  # the host's TUN device: Valkey listens here
    nodes: dict[str, WanNode]
    delays_ms: dict[tuple[str, str], float]
    _reaper: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _router: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def enter(self, name: str) -> Callable[[], None]:
        """A preexec_fn that moves the child into node `name`'s namespace."""
        return netns_entry(self.nodes[name].netns)

    def close(self, within_s: float = 15.0) -> None:
        """Stop the router and tear everything down (the reaper does it once its pipe closes)."""
        if self._router is not None:
            self._router.kill()
            self._router.wait()
            self._router = None
        reaper, self._reaper = self._reaper, None
        if reaper is None:
            return
        assert reaper.stdin is not None
        reaper.stdin.close()
        try:
            reaper.wait(within_s)
        except subprocess.TimeoutExpired:
            reaper.kill()
            reaper.wait()
            teardown(self.tag)


def _setns(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {path}")
    finally:
        os.close(fd)


def netns_entry(netns: str) -> Callable[[], None]:
    """A preexec_fn: enter `netns` and die with the parent (a node must not outlive a cluster)."""
    path = str(NETNS_DIR / netns)

    def enter() -> None:  # pragma: no cover - runs in the child between fork and exec
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        _setns(path)

    return enter


def create(nodes: Mapping[str, str], distances: RegionDistances, *, tag: str | None = None) -> Wan:
    """Namespaces for nodes {name: region}, in order, with delays from `distances`."""
    if why := available():
        raise WanError(f"--wan {why}")
    sweep_stale()
    tag = tag or f"{PREFIX}{os.getpid()}"
    reaper = _start_reaper(tag)  # first: whatever happens next gets cleaned up
    w = Wan(tag, "", {}, {}, reaper)
    try:
        _build(w, nodes, distances)
    except BaseException:
        w.close()
        raise
    return w


def _build(w: Wan, nodes: Mapping[str, str], distances: RegionDistances) -> None:
    n = _free_subnet()
    w.host_address = f"10.77.{n}.1"
    host_dev = f"{w.tag}h"
    _ip("ip", "tuntap", "add", "dev", host_dev, "mode", "tun")
    _ip("ip", "addr", "add", f"{w.host_address}/24", "dev", host_dev)
    _ip("ip", "link", "set", host_dev, "up")
    ports: list[dict[str, str | None]] = [
        {"netns": None, "dev": host_dev, "address": w.host_address}
    ]
    for i, (name, region) in enumerate(nodes.items()):
        node = WanNode(name, region, f"{w.tag}-{name}", f"10.77.{n}.{10 + i}")
        w.nodes[name] = node
        _ip("ip", "netns", "add", node.netns)
        _ip("ip", "-n", node.netns, "link", "set", "lo", "up")
        _ip("ip", "-n", node.netns, "tuntap", "add", "dev", "wan0", "mode", "tun")
        _ip("ip", "-n", node.netns, "addr", "add", f"{node.address}/24", "dev", "wan0")
        _ip("ip", "-n", node.netns, "link", "set", "wan0", "up")
        ports.append({"netns": node.netns, "dev": "wan0", "address": node.address})
    w.delays_ms = one_way_delays(nodes, distances)
    names = list(nodes)
    delays = [[names.index(a) + 1, names.index(b) + 1, d] for (a, b), d in w.delays_ms.items()]
    w._router = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devtools.wan",
            "route",
            json.dumps({"ports": ports, "delays": delays}),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        env=_module_env(),
        preexec_fn=_die_with_parent,
    )
    assert w._router.stdout is not None
    if w._router.stdout.readline().strip() != b"ready":  # it exits on any setup error
        raise WanError(f"delay router failed (exit {w._router.wait()})")


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _open_tun(dev: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", dev.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def _route(ports: Sequence[Mapping[str, str | None]], delays: Sequence[Sequence[float]]) -> None:
    """The delay router: forward IPv4 packets between TUN devices by destination address, each
    held for the one-way delay (ms) between its source and destination ports."""
    home = "/proc/self/ns/net"
    home_fd = os.open(home, os.O_RDONLY)
    fds: list[int] = []
    for port in ports:
        netns = port["netns"]
        _setns(str(NETNS_DIR / netns) if netns else f"/proc/self/fd/{home_fd}")
        fds.append(_open_tun(str(port["dev"])))
    _setns(f"/proc/self/fd/{home_fd}")
    by_address = {bytes(map(int, str(p["address"]).split("."))): i for i, p in enumerate(ports)}
    delay_s = {(int(a), int(b)): d / 1000 for a, b, d in delays}
    sel = selectors.DefaultSelector()
    for i, fd in enumerate(fds):
        sel.register(fd, selectors.EVENT_READ, i)
    print("ready", flush=True)
    queue: list[tuple[float, int, int, bytes]] = []  # (due, seq, fd, packet)
    seq = 0
    while True:
        timeout = max(0.0, queue[0][0] - time.monotonic()) if queue else None
        for key, _ in sel.select(timeout):
            src = key.data
            for _ in range(64):  # bounded: other ports get their turn
                try:
                    packet = os.read(key.fd, 65536)
                except BlockingIOError:
                    break
                if len(packet) < 20 or packet[0] >> 4 != 4:
                    continue  # IPv4 only (IPv6 router solicitations and the like are dropped)
                dst = by_address.get(packet[16:20])
                if dst is None or dst == src:
                    continue
                d = delay_s.get((src, dst), 0.0)
                if d <= 0:
                    _write(fds[dst], packet)
                else:
                    seq += 1
                    heapq.heappush(queue, (time.monotonic() + d, seq, fds[dst], packet))
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _, _, fd, packet = heapq.heappop(queue)
            _write(fd, packet)


def _write(fd: int, packet: bytes) -> None:
    with contextlib.suppress(BlockingIOError, OSError):
        os.write(fd, packet)  # a full or vanished device drops the packet, as a link would


def namespaces(tag: str | None = None) -> list[str]:
    """Names of this module's namespaces (of `tag` only, if given)."""
    names = [line.split()[0] for line in _ip("ip", "netns", "list").splitlines() if line.strip()]
    return [n for n in names if _TAG.match(n) and (tag is None or n.startswith(f"{tag}-"))]


def teardown(tag: str) -> None:
    """Kill what still runs in `tag`'s namespaces, delete them and the host's TUN device."""
    for ns in namespaces(tag):
        with contextlib.suppress(WanError):
            for pid in _ip("ip", "netns", "pids", ns).split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
        with contextlib.suppress(WanError):
            _ip("ip", "netns", "del", ns)
    with contextlib.suppress(WanError):
        if _ip("ip", "-o", "link", "show", "dev", f"{tag}h"):
            _ip("ip", "link", "del", f"{tag}h")


def sweep_stale() -> None:
    """Tear down what a cluster left behind when it and its reaper were both killed."""
    tags = {m.group(1) for n in namespaces() if (m := _TAG.match(n))}
    for pid in tags:
        if not Path(f"/proc/{pid}").exists():
            teardown(f"{PREFIX}{pid}")


def _module_env() -> dict[str, str]:
    root = str(Path(__file__).resolve().parents[1])
    path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


def _start_reaper(tag: str) -> subprocess.Popen[bytes]:
    # In a session of its own (Ctrl-C does not reach it) and with no parent-death signal: it
    # outlives the cluster, sees its pipe close, and cleans up.
    return subprocess.Popen(
        [sys.executable, "-m", "devtools.wan", "reap", tag],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        env=_module_env(),
        start_new_session=True,
    )


def _reap(tag: str) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(OSError):
        while sys.stdin.buffer.read(4096):
            pass
    teardown(tag)


@contextlib.contextmanager
def wan(nodes: Mapping[str, str], distances: RegionDistances) -> Iterator[Wan]:
    """`create`, then `close` when the block exits."""
    w = create(nodes, distances)
    try:
        yield w
    finally:
        w.close()


def main(argv: Sequence[str]) -> int:
    if len(argv) == 2 and argv[0] == "reap":
        _reap(argv[1])
        return 0
    if len(argv) == 2 and argv[0] == "route":
        config = json.loads(argv[1])
        _route(config["ports"], config["delays"])
        return 0
    print("usage: python -m devtools.wan reap TAG | route CONFIG", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
