"""Per-stage latency samples, summarised as percentiles.

Long-running services keep only the most recent samples of each stage (a
bounded window), so memory stays flat; totals and counts cover everything.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

import numpy as np

DEFAULT_WINDOW = 100_000
"""Samples kept per stage for percentiles."""


@dataclass(frozen=True)
class StageSummary:
    """One stage's figures, in seconds."""

    count: int
    total_s: float
    p50_s: float
    p95_s: float
    max_s: float

    def as_dict(self, unit: float = 1e3) -> dict[str, float | int]:
        """Rounded figures in milliseconds (``unit`` = 1000 per second)."""
        return {
            "count": self.count,
            "total_ms": round(self.total_s * unit, 3),
            "p50_ms": round(self.p50_s * unit, 3),
            "p95_ms": round(self.p95_s * unit, 3),
            "max_ms": round(self.max_s * unit, 3),
        }


class StageTimings:
    """Thread-safe collector of durations by stage name."""

    def __init__(self, window: int = DEFAULT_WINDOW) -> None:
        self._window = window
        self._samples: dict[str, deque[float]] = {}
        self._totals: dict[str, float] = {}
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def add(self, stage: str, seconds: float) -> None:
        self.absorb({stage: ([seconds], seconds, 1)})

    def export(self) -> dict[str, tuple[list[float], float, int]]:
        """Every stage's (recent samples, total seconds, count), to send to another
        process and :meth:`absorb` there."""
        with self._lock:
            return {
                stage: (list(samples), self._totals[stage], self._counts[stage])
                for stage, samples in self._samples.items()
            }

    def absorb(self, exported: dict[str, tuple[list[float], float, int]]) -> None:
        """Add another collector's :meth:`export` to this one."""
        with self._lock:
            for stage, (samples, total, count) in exported.items():
                if stage not in self._samples:
                    self._samples[stage] = deque(maxlen=self._window)
                    self._totals[stage] = 0.0
                    self._counts[stage] = 0
                self._samples[stage].extend(samples)
                self._totals[stage] += total
                self._counts[stage] += count

    def total(self, stage: str) -> float:
        with self._lock:
            return self._totals.get(stage, 0.0)

    def summary(self) -> dict[str, StageSummary]:
        """Figures for every stage seen so far (percentiles over the recent window)."""
        with self._lock:
            snapshot = {stage: np.array(samples) for stage, samples in self._samples.items()}
            totals, counts = dict(self._totals), dict(self._counts)
        return {
            stage: StageSummary(
                count=counts[stage],
                total_s=totals[stage],
                p50_s=float(np.percentile(values, 50)),
                p95_s=float(np.percentile(values, 95)),
                max_s=float(values.max()),
            )
            for stage, values in snapshot.items()
            if len(values)
        }
