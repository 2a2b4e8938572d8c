"""Commands and queries per second and their p99 latency, for the overview.

Read from the service's own metrics (``App.metrics``: every worker process added up), the
figures ``GET /metrics`` serves: the histograms ``twofold_command_duration_seconds`` and
``twofold_query_duration_seconds`` (their ``_count`` counts the commands and queries
handled, errors included). Rates and percentiles are taken over a sliding
``WINDOW`` (as Prometheus' ``rate`` and ``histogram_quantile`` would): the process that
answers keeps the snapshots it read in that window. The first overview a process answers
has no rate yet, and its p99 covers everything since the server started.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from twofold.application.metrics import Family, Metrics
from twofold.http.admin.schemas import Rate

__all__ = ["WINDOW", "Figures", "quantile"]

WINDOW = 60.0
"""Seconds the rates and percentiles are taken over."""
_KINDS = {
    "commands": "twofold_command_duration_seconds",
    "queries": "twofold_query_duration_seconds",
}
Buckets = dict[float, float]
"""Upper bound (``le``) -> observations at or below it, cumulative."""


@dataclass(frozen=True, slots=True)
class _Reading:
    at: float
    totals: dict[str, float]
    buckets: dict[str, Buckets]


def quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """The ``q`` quantile of a cumulative histogram, interpolating within the bucket it
    falls in (as Prometheus' ``histogram_quantile``); None without observations. In the
    last (+Inf) bucket it is the largest finite bound: the histogram knows no more."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank and count > below:
            if math.isinf(bound):
                return lower
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


class Figures:
    """Reads the figures the service records of itself, over a sliding window."""

    def __init__(self) -> None:
        self._readings: deque[_Reading] = deque()

    async def read(self, metrics: Metrics) -> tuple[Rate, Rate, str]:
        families = {family.name: family for family in await metrics.snapshot()}
        now = time.monotonic()
        reading = _Reading(
            at=now,
            totals={kind: _total(families, histogram) for kind, histogram in _KINDS.items()},
            buckets={kind: _buckets(families, histogram) for kind, histogram in _KINDS.items()},
        )
        # Keep one reading at or before the window's start, so the window is whole.
        while len(self._readings) > 1 and self._readings[1].at <= now - WINDOW:
            self._readings.popleft()
        base = self._readings[0] if self._readings else None
        self._readings.append(reading)
        if not families:
            unmeasured = Rate(total=None, per_second=None, p99_seconds=None)
            return unmeasured, unmeasured, "this service records no metrics"
        rates = [_rate(kind, reading, base) for kind in _KINDS]
        if base is None:
            source = "no rate yet (first reading); p99 since the server started"
        else:
            seconds = reading.at - base.at
            source = f"over the last {seconds:.0f} s, all worker processes, from /metrics"
        return rates[0], rates[1], source


def _rate(kind: str, now: _Reading, base: _Reading | None) -> Rate:
    total = now.totals[kind]
    if base is None or now.at <= base.at:
        return Rate(total=int(total), per_second=None, p99_seconds=_rounded(now.buckets[kind]))
    delta = {le: count - base.buckets[kind].get(le, 0.0) for le, count in now.buckets[kind].items()}
    per_second = max(0.0, total - base.totals[kind]) / (now.at - base.at)
    return Rate(total=int(total), per_second=round(per_second, 3), p99_seconds=_rounded(delta))


def _rounded(buckets: Buckets) -> float | None:
    found = quantile(0.99, buckets)
    return None if found is None else round(found, 6)


def _samples(
    families: Mapping[str, Family], name: str
) -> Iterable[tuple[str, Mapping[str, str], float]]:
    family = families.get(name)
    if family is None:
        return ()
    return ((s.name, s.labels, s.value) for s in family.samples)


def _total(families: Mapping[str, Family], histogram: str) -> float:
    """Observations of the histogram (its ``_count``) over every label value."""
    count = f"{histogram}_count"
    return sum(value for name, _, value in _samples(families, histogram) if name == count)


def _buckets(families: Mapping[str, Family], histogram: str) -> Buckets:
    """The histogram's buckets added up over its label values (every command type)."""
    found: Buckets = {}
    for name, labels, value in _samples(families, histogram):
        if name == f"{histogram}_bucket" and "le" in labels:
            bound = float(labels["le"])
            found[bound] = found.get(bound, 0.0) + value
    return found
