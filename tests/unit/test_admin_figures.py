"""The overview's figures: p99 from histogram buckets, rates over a window of readings."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest

from twofold.application.metrics import Family, NoMetrics, Sample
from twofold.http.admin.figures import Figures, quantile

INF = math.inf


def test_the_quantile_interpolates_within_its_bucket() -> None:
    assert quantile(0.99, {0.1: 50, 0.5: 99, 1.0: 100, INF: 100}) == pytest.approx(0.5)
    assert quantile(0.99, {0.005: 0, 0.01: 100, INF: 100}) == pytest.approx(0.00995)
    assert quantile(0.5, {0.1: 0, 0.2: 10, INF: 10}) == pytest.approx(0.15)


def test_the_quantile_in_the_last_bucket_is_the_largest_bound_known() -> None:
    assert quantile(0.99, {1.0: 0, INF: 10}) == 1.0


def test_no_observations_give_no_quantile() -> None:
    assert quantile(0.99, {}) is None
    assert quantile(0.99, {0.1: 0, INF: 0}) is None


class Recorded:
    """A fake Metrics that answers snapshots of commands measured so far (unit tests only):
    the duration histogram's buckets and its _count."""

    def __init__(self) -> None:
        self.commands = 0.0
        self.fast = 0.0  # observations at or below 10 ms

    async def snapshot(self) -> Sequence[Family]:
        buckets = [
            Sample("twofold_command_duration_seconds_bucket", {"command": "A", "le": le}, n)
            for le, n in (("0.01", self.fast), ("0.1", self.commands), ("+Inf", self.commands))
        ]
        count = Sample("twofold_command_duration_seconds_count", {"command": "A"}, self.commands)
        return [Family("twofold_command_duration_seconds", "histogram", "", (*buckets, count))]


async def test_rates_and_p99_come_from_the_difference_between_readings() -> None:
    metrics = Recorded()
    figures = Figures()
    metrics.commands = metrics.fast = 100
    commands, queries, source = await figures.read(metrics)  # type: ignore[arg-type]
    assert (commands.total, commands.per_second) == (100, None)
    assert commands.p99_seconds is not None and commands.p99_seconds <= 0.01
    assert (queries.total, queries.p99_seconds) == (0, None)
    assert "first reading" in source

    metrics.commands += 50  # 50 more, all slower than 10 ms
    commands, _, source = await figures.read(metrics)  # type: ignore[arg-type]
    assert commands.total == 150
    assert commands.per_second is not None and commands.per_second > 0
    # Over the window only the 50 slow ones count: p99 lies in (0.01, 0.1].
    assert commands.p99_seconds is not None and 0.01 < commands.p99_seconds <= 0.1
    assert "all worker processes" in source


async def test_a_service_without_metrics_says_so() -> None:
    commands, queries, source = await Figures().read(NoMetrics())
    assert commands.total is None and queries.per_second is None
    assert "no metrics" in source
