"""What /proc says (Linux): a process's memory, CPU time and run-queue wait; the network
interfaces of this namespace. The one reader of /proc in the load tester."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class ProcSample:
    pid: int
    rss_kb: int
    peak_rss_kb: int
    cpu_s: float  # user + system since the process started
    threads: int
    system_s: float = 0.0  # the system part of `cpu_s`
    # Seconds its threads were runnable but waiting for a CPU (schedstat); with `run_queue` only.
    runqueue_wait_s: float = 0.0


def sample(pid: int, *, run_queue: bool = False) -> ProcSample | None:
    """The process's current figures, or None when it is gone. `run_queue` adds the time its
    threads waited for a CPU (one more file per thread)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            stat = f.read()
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            status = f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    fields = stat[stat.rfind(")") + 2 :].split()
    user, system = int(fields[11]) / _TICK, int(fields[12]) / _TICK
    values: dict[str, int] = {}
    for line in status.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM", "Threads"):
            values[key] = int(rest.split()[0])
    return ProcSample(
        pid=pid,
        rss_kb=values.get("VmRSS", 0),
        peak_rss_kb=values.get("VmHWM", 0),
        cpu_s=user + system,
        threads=values.get("Threads", 0),
        system_s=system,
        runqueue_wait_s=_runqueue_wait_s(pid) if run_queue else 0.0,
    )


def _runqueue_wait_s(pid: int) -> float:
    wait = 0
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                wait += int((task / "schedstat").read_text().split()[1])
    return wait / 1e9


def cpu_percent(before: ProcSample | None, after: ProcSample | None, wall_s: float) -> float:
    """CPU use between two samples as a percentage of one core."""
    if before is None or after is None or wall_s <= 0:
        return 0.0
    return round(100.0 * (after.cpu_s - before.cpu_s) / wall_s, 1)


def available_cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def interfaces() -> set[str]:
    """The network interfaces of this network namespace (/proc/net/dev is per namespace; sysfs
    may still show the host's)."""
    lines = Path("/proc/net/dev").read_text().splitlines()[2:]
    return {line.split(":")[0].strip() for line in lines}


def loopback_only() -> bool:
    """Whether this network namespace holds the loopback interface alone."""
    return interfaces() == {"lo"}


def udp_counters() -> dict[str, int]:
    """This network namespace's UDP counters (/proc/net/snmp): InDatagrams, RcvbufErrors
    (datagrams the kernel dropped on a full receive buffer), SndbufErrors..."""
    rows = [line.split()[1:] for line in Path("/proc/net/snmp").read_text().splitlines()
            if line.startswith("Udp:")]  # fmt: skip
    if len(rows) < 2:
        return {}
    return {name: int(value) for name, value in zip(rows[0], rows[1], strict=False)}
