"""Admission by measured load: each process serving viewers (the node, each media worker) measures
itself and refuses new viewers before its admitted viewers' frame rate falls.

A `LoadGovernor` samples every `interval_s` (0.1 s) on the process's event loop:

- loop lag: how late the sampling timer fired (the loop was busy with other work);
- CPU: process CPU time over wall time, plus the time the loop's thread was runnable but waited
  for a core (`/proc/thread-self/schedstat`): their sum is what the process *wanted*, so a core
  shared with other processes counts as full even when this process's own share is small;
- backlog: frames queued towards viewers and slow-viewer skips (a viewer's queue overflowed), and
  frames a node could not hand to a media worker that was behind.

It refuses (`admitting` False) when, over the last `window_s`, the 95th percentile of the lag
passes `max_lag_s`, the busy fraction over the window passes `max_cpu`, or any frame was
skipped or dropped for backlog; it admits again only when the lag is under half its bound, the
busy fraction `RESUME_SHARE` under its bound and the window saw no skip (hysteresis: it does not
flap around a threshold). Each offer is also checked against the sessions still in setup
(answered, not yet connected: their cost has not shown yet) and the projected cost of one more
viewer (`cpu_per_viewer`, measured), so a burst of offers is not all admitted before the
measurement reacts. The viewer count (`max_viewers`) stays as a ceiling above all this.

Pure but for `sample()` and `start()`: `observe()` takes explicit figures, so the decision rules
are tested without a loaded machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Reason = Literal["ceiling", "lag", "cpu", "backlog", "setup", "headroom", "workers"]
REASONS: tuple[Reason, ...] = ("ceiling", "lag", "cpu", "backlog", "setup", "headroom", "workers")
# A refusing process admits again once the busy fraction is this share under `max_cpu` (0.75 of a
# core for the default 0.85) and the lag under half its bound.
RESUME_SHARE = 0.12
# A viewer's cost shows in the measured CPU about this long after it connected (the CPU is
# averaged over the window, a whole GOP of the usual 2 s; its GOP burst comes first).
SETTLE_S = 2.5
# Below this many viewers the CPU a viewer costs is not estimated (fixed costs dominate).
_MIN_VIEWERS_FOR_COST = 10


@dataclass(frozen=True, slots=True)
class AdmissionLimits:
    """A governor's thresholds (MediaConfig's `admit_*`)."""

    max_lag_s: float = 0.05  # loop lag p95 over the window; 0 = not used
    max_cpu: float = 0.85  # busy fraction of one core (CPU + run-queue wait); 0 = not used
    max_setups: int = 8  # sessions being answered or connecting at once; 0 = no bound
    window_s: float = 2.0
    interval_s: float = 0.1


@dataclass(frozen=True, slots=True)
class Sample:
    """One measurement: `lag_s` late, over `wall_s` the process used `cpu_s` and waited `wait_s`
    for a core; `skips` (cumulative) skips or drops for backlog, `queued` frames queued now."""

    wall_s: float
    lag_s: float
    cpu_s: float
    wait_s: float
    skips: int
    queued: int


@dataclass(frozen=True, slots=True)
class Load:
    """What the governor last measured and decided; reported by workers, shown on /metrics."""

    admitting: bool
    reason: Reason | None  # why not admitting
    lag_s: float  # p95 over the window
    cpu: float  # CPU fraction of one core over the window
    wait: float  # run-queue wait fraction over the window
    backlog: int  # frames queued towards viewers now
    skips_per_s: float  # over the window
    cpu_per_viewer: float  # measured busy fraction per viewer (0 until estimated)
    viewers: int
    setups: int  # viewers being set up or connected within SETTLE_S (cost not measured yet)

    @property
    def busy(self) -> float:
        return self.cpu + self.wait

    def to_json(self) -> dict[str, object]:
        return {
            "admitting": self.admitting,
            "reason": self.reason,
            "lag_s": self.lag_s,
            "cpu": self.cpu,
            "wait": self.wait,
            "backlog": self.backlog,
            "skips_per_s": self.skips_per_s,
            "cpu_per_viewer": self.cpu_per_viewer,
            "viewers": self.viewers,
            "setups": self.setups,
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Load:
        def num(key: str) -> float:
            value = data.get(key, 0)
            return float(value) if isinstance(value, (int, float)) else 0.0

        reason = data.get("reason")
        return cls(
            admitting=bool(data.get("admitting", True)),
            reason=reason if reason in REASONS else None,
            lag_s=num("lag_s"),
            cpu=num("cpu"),
            wait=num("wait"),
            backlog=int(num("backlog")),
            skips_per_s=num("skips_per_s"),
            cpu_per_viewer=num("cpu_per_viewer"),
            viewers=int(num("viewers")),
            setups=int(num("setups")),
        )


IDLE = Load(True, None, 0.0, 0.0, 0.0, 0, 0.0, 0.0, 0, 0)


class LoadGovernor:
    """One process's admission decision from its own measurements (see the module docstring).

    `pressure()` returns (viewers, viewers whose cost is not measured yet, cumulative skips,
    frames queued); it is called at every sample and must be cheap.
    """

    def __init__(
        self, limits: AdmissionLimits, pressure: Callable[[], tuple[int, int, int, int]]
    ) -> None:
        self.limits = limits
        self._pressure = pressure
        size = max(1, round(limits.window_s / limits.interval_s))
        self._samples: deque[Sample] = deque(maxlen=size)
        self.load = IDLE
        self.refusals: Counter[str] = Counter()
        self._handle: asyncio.TimerHandle | None = None
        self._last: tuple[float, float, float, int] | None = None  # wall, cpu, wait, skips
        self._due = 0.0

    # -- measuring ----------------------------------------------------------------------------

    def start(self) -> None:
        """Sample every `interval_s` on the running loop until `stop()`."""
        loop = asyncio.get_running_loop()
        self._last = (time.monotonic(), time.process_time(), _thread_wait_s(), 0)
        self._due = loop.time() + self.limits.interval_s
        self._handle = loop.call_at(self._due, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        lag = max(0.0, loop.time() - self._due)
        self.sample(lag)
        self._due = loop.time() + self.limits.interval_s
        self._handle = loop.call_at(self._due, self._tick)

    def sample(self, lag_s: float) -> Load:
        """Measure the process now (the timer fired `lag_s` late) and decide."""
        wall, cpu, wait = time.monotonic(), time.process_time(), _thread_wait_s()
        viewers, setups, skips, queued = self._pressure()
        last = self._last or (wall, cpu, wait, skips)
        self._last = (wall, cpu, wait, skips)
        sample = Sample(
            wall_s=wall - last[0],
            lag_s=lag_s,
            cpu_s=cpu - last[1],
            wait_s=wait - last[2],
            skips=max(0, skips - last[3]),
            queued=queued,
        )
        return self.observe(sample, viewers, setups)

    # -- deciding -----------------------------------------------------------------------------

    def observe(self, sample: Sample, viewers: int, setups: int) -> Load:
        """Add one sample and decide (pure: what `sample()` does after measuring)."""
        self._samples.append(sample)
        samples = list(self._samples)
        lags = sorted(s.lag_s for s in samples)
        lag = lags[int(0.95 * (len(lags) - 1))]  # of 20 samples: the second highest
        # Over the whole window: a keyframe every 2 s makes a second's CPU swing.
        wall = sum(s.wall_s for s in samples)
        cpu = sum(s.cpu_s for s in samples) / wall if wall > 0 else 0.0
        wait = sum(s.wait_s for s in samples) / wall if wall > 0 else 0.0
        skips = sum(s.skips for s in samples)
        per_viewer = self.load.cpu_per_viewer
        settled = viewers - setups
        if settled >= _MIN_VIEWERS_FOR_COST and wall > 0:
            # Busy time per viewer whose cost shows, fixed costs and any setups under way
            # included: it errs high (a viewer's marginal cost is less); smoothed.
            measured = (cpu + wait) / settled
            per_viewer = measured if per_viewer == 0 else 0.8 * per_viewer + 0.2 * measured
        admitting, reason = self._decide(lag, cpu + wait, skips)
        self.load = Load(
            admitting=admitting,
            reason=reason,
            lag_s=lag,
            cpu=cpu,
            wait=wait,
            backlog=sample.queued,
            skips_per_s=skips / wall if wall > 0 else 0.0,
            cpu_per_viewer=per_viewer,
            viewers=viewers,
            setups=setups,
        )
        return self.load

    def _decide(self, lag: float, busy: float, skips: int) -> tuple[bool, Reason | None]:
        limits = self.limits
        over = _over(lag, busy, skips, limits.max_lag_s, limits.max_cpu)
        if self.load.admitting:
            return over is None, over
        # Refusing: admit again only well below every bound.
        resume_cpu = limits.max_cpu * (1 - RESUME_SHARE)
        if _over(lag, busy, skips, limits.max_lag_s / 2, resume_cpu) is None:
            return True, None
        return False, over or self.load.reason

    def refusal(self, setups: int, fresh: int = 0) -> Reason | None:
        """Why one more viewer must be refused now (None: admit), `setups` sessions being
        answered or connecting and `fresh` ones connected too recently for the measurement to
        show their cost; counted in `refusals`."""
        reason = self._refusal(setups, fresh)
        if reason is not None:
            self.refusals[reason] += 1
        return reason

    def _refusal(self, setups: int, fresh: int) -> Reason | None:
        load, limits = self.load, self.limits
        if not load.admitting:
            return load.reason or "cpu"
        if limits.max_setups and setups >= limits.max_setups:
            return "setup"
        if limits.max_cpu and load.cpu_per_viewer:
            # What the viewers not measured yet and this one will cost once they get frames.
            projected = load.busy + (setups + fresh + 1) * load.cpu_per_viewer
            if projected > limits.max_cpu:
                return "headroom"
        return None


def _over(lag: float, busy: float, skips: int, max_lag: float, max_cpu: float) -> Reason | None:
    """The first bound passed (a bound of 0 or less is not used), or None."""
    if max_lag > 0 and lag > max_lag:
        return "lag"
    if max_cpu > 0 and busy > max_cpu:
        return "cpu"
    if skips:
        return "backlog"
    return None


def _thread_wait_s() -> float:
    """Seconds the calling thread (the event loop's) was runnable but not running; 0 where
    schedstat is not available."""
    with (
        contextlib.suppress(OSError, ValueError, IndexError),
        open("/proc/thread-self/schedstat", "rb") as f,
    ):
        return int(f.read().split()[1]) / 1e9
    return 0.0
