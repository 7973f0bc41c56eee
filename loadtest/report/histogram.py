"""A mergeable latency histogram: logarithmic buckets of 1% width, summed across workers.

Workers record into their own histogram and ship the bucket counts; adding counts bucket by bucket
gives exactly the histogram a single recorder would have built from the same samples.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

# Bucket b holds values v (microseconds) with floor(ln(1 + v) * SCALE) == b; 1% relative width.
SCALE = 100
MAX_US = 600_000_000  # ten minutes; anything slower lands in the last bucket
_BUCKETS = int(math.log1p(MAX_US) * SCALE) + 1


class Histogram:
    """Counts of non-negative durations in microseconds."""

    __slots__ = ("count", "counts", "max_us", "min_us", "total_us")

    def __init__(self) -> None:
        self.counts = [0] * _BUCKETS
        self.count = 0
        self.total_us = 0
        self.min_us = 0
        self.max_us = 0

    def record(self, value_us: int) -> None:
        if value_us < 0:
            value_us = 0  # clocks of two processes on one host; a negative step is noise
        bucket = int(math.log1p(min(value_us, MAX_US)) * SCALE)
        self.counts[bucket] += 1
        if self.count == 0 or value_us < self.min_us:
            self.min_us = value_us
        if value_us > self.max_us:
            self.max_us = value_us
        self.count += 1
        self.total_us += value_us

    def merge(self, other: Histogram) -> None:
        if other.count == 0:
            return
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        self.min_us = other.min_us if self.count == 0 else min(self.min_us, other.min_us)
        self.max_us = max(self.max_us, other.max_us)
        self.count += other.count
        self.total_us += other.total_us

    def percentile(self, q: float) -> float:
        """The value (microseconds) below which `q` percent of samples fall; 0 when empty."""
        if self.count == 0:
            return 0.0
        rank = max(1, math.ceil(self.count * q / 100.0))
        seen = 0
        for bucket, n in enumerate(self.counts):
            seen += n
            if seen >= rank:
                # The bucket's geometric middle, clamped to the observed extremes.
                mid = math.expm1((bucket + 0.5) / SCALE)
                return float(min(max(mid, self.min_us), self.max_us))
        return float(self.max_us)

    def summary_ms(self) -> dict[str, float]:
        """count, mean, p50/p95/p99/max in milliseconds."""
        mean = self.total_us / self.count if self.count else 0.0
        return {
            "count": self.count,
            "mean": round(mean / 1000, 3),
            "p50": round(self.percentile(50) / 1000, 3),
            "p95": round(self.percentile(95) / 1000, 3),
            "p99": round(self.percentile(99) / 1000, 3),
            "max": round(self.max_us / 1000, 3),
        }

    def to_wire(self) -> dict[str, Any]:
        """A compact picklable/JSON form: only the non-empty buckets."""
        return {
            "buckets": {b: n for b, n in enumerate(self.counts) if n},
            "count": self.count,
            "total_us": self.total_us,
            "min_us": self.min_us,
            "max_us": self.max_us,
        }

    @classmethod
    def from_wire(cls, wire: dict[str, Any]) -> Histogram:
        hist = cls()
        for bucket, n in wire["buckets"].items():
            hist.counts[int(bucket)] = int(n)
        hist.count = int(wire["count"])
        hist.total_us = int(wire["total_us"])
        hist.min_us = int(wire["min_us"])
        hist.max_us = int(wire["max_us"])
        return hist


class Timeline:
    """Per-second latency histograms and outcome counts, keyed by whole seconds since a start."""

    def __init__(self, seconds: int) -> None:
        self.hists = [Histogram() for _ in range(seconds + 1)]
        self.outcomes: list[Counter[str]] = [Counter() for _ in range(seconds + 1)]

    def record(self, second: int, latency_us: int, outcome: str) -> None:
        s = min(max(second, 0), len(self.hists) - 1)
        self.hists[s].record(latency_us)
        self.outcomes[s][outcome] += 1

    def to_wire(self) -> list[dict[str, Any]]:
        return [
            {"latency": h.to_wire(), "outcomes": dict(o)}
            for h, o in zip(self.hists, self.outcomes, strict=True)
        ]


def merge_timelines(parts: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Workers' timelines added second by second: `{t, count, p50, p95, p99, ..., outcomes}`."""
    seconds = max((len(p) for p in parts), default=0)
    merged = [(Histogram(), Counter[str]()) for _ in range(seconds)]
    for part in parts:
        for s, entry in enumerate(part):
            merged[s][0].merge(Histogram.from_wire(entry["latency"]))
            merged[s][1].update(entry["outcomes"])
    return [
        {"t": s, **hist.summary_ms(), "outcomes": dict(counts)}
        for s, (hist, counts) in enumerate(merged)
        if hist.count or counts
    ]
