"""Helpers shared by the benchmark scripts: timing, medians, JSON lines and the summary.

A benchmark run repeats every measurement ``--repeat`` times and reports the median, since
the machines these run on are shared and noisy. Every figure is printed as one JSON object
per line, ``{"bench", "value", "unit", "ratio_vs", "ratio", ...}``, then as a table.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import sqlite3
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = [
    "Report",
    "Target",
    "machine",
    "percentile",
    "stopwatch",
]


@contextmanager
def stopwatch() -> Iterator[list[float]]:
    """``with stopwatch() as t: ...``; then ``t[0]`` holds the elapsed seconds."""
    elapsed: list[float] = []
    start = time.perf_counter()
    try:
        yield elapsed
    finally:
        elapsed.append(time.perf_counter() - start)


def percentile(samples: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``samples``, nearest-rank."""
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))
    return ordered[index]


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
    }


@dataclasses.dataclass
class _Figure:
    bench: str
    unit: str
    runs: list[float]
    ratio_vs: str | None
    note: str | None

    @property
    def value(self) -> float:
        return statistics.median(self.runs)


@dataclasses.dataclass(frozen=True)
class Target:
    """``bench`` / ``versus`` must be ``>=`` (or ``<=``) ``threshold``."""

    title: str
    bench: str
    versus: str
    op: str
    threshold: float


class Report:
    """Collects the runs of every figure; prints medians, ratios and targets at the end."""

    def __init__(self, out: Callable[[str], None] = print) -> None:
        self._figures: dict[str, _Figure] = {}
        self._out = out

    def add(
        self,
        bench: str,
        value: float,
        unit: str,
        *,
        ratio_vs: str | None = None,
        note: str | None = None,
    ) -> None:
        figure = self._figures.get(bench)
        if figure is None:
            self._figures[bench] = _Figure(bench, unit, [value], ratio_vs, note)
        else:
            figure.runs.append(value)
        sys.stderr.write(f"  {bench}: {value:,.3f} {unit}\n")

    def value(self, bench: str) -> float | None:
        figure = self._figures.get(bench)
        return None if figure is None else figure.value

    def ratio(self, bench: str, versus: str) -> float | None:
        value, base = self.value(bench), self.value(versus)
        if value is None or not base:
            return None
        return value / base

    def emit(self, meta: dict[str, Any], targets: list[Target]) -> bool:
        """Print the JSON lines and the summary; True when every target passed."""
        out = self._out
        out(
            json.dumps(
                {
                    "bench": "meta",
                    "value": None,
                    "unit": None,
                    "ratio_vs": None,
                    "ratio": None,
                    **meta,
                }
            )
        )
        for figure in self._figures.values():
            ratio = None if figure.ratio_vs is None else self.ratio(figure.bench, figure.ratio_vs)
            line: dict[str, Any] = {
                "bench": figure.bench,
                "value": round(figure.value, 6),
                "unit": figure.unit,
                "ratio_vs": figure.ratio_vs,
                "ratio": None if ratio is None else round(ratio, 4),
                "runs": [round(run, 6) for run in figure.runs],
            }
            if figure.note:
                line["note"] = figure.note
            out(json.dumps(line))
        verdicts: list[tuple[Target, float | None, bool]] = []
        for target in targets:
            ratio = self.ratio(target.bench, target.versus)
            passed = ratio is not None and (
                ratio >= target.threshold if target.op == ">=" else ratio <= target.threshold
            )
            verdicts.append((target, ratio, passed))
            out(
                json.dumps(
                    {
                        "bench": f"target: {target.title}",
                        "value": self.value(target.bench),
                        "unit": self._figures[target.bench].unit
                        if target.bench in self._figures
                        else None,
                        "ratio_vs": target.versus,
                        "ratio": None if ratio is None else round(ratio, 4),
                        "target": f"{target.op} {target.threshold}",
                        "pass": passed,
                    }
                )
            )
        self._summary(meta, verdicts)
        return all(passed for _, _, passed in verdicts)

    def _summary(
        self, meta: dict[str, Any], verdicts: list[tuple[Target, float | None, bool]]
    ) -> None:
        out = self._out
        out("")
        out(
            f"== summary: medians of {meta.get('repeat')} run(s); machine: "
            f"{meta['machine']['cpus']} CPUs, Python {meta['machine']['python']}, "
            f"SQLite {meta['machine']['sqlite']}"
        )
        for line in meta.get("notes", []):
            out(f"   {line}")
        out("")
        width = max(len(f.bench) for f in self._figures.values())
        for figure in self._figures.values():
            ratio = None if figure.ratio_vs is None else self.ratio(figure.bench, figure.ratio_vs)
            against = "" if ratio is None else f"  {ratio:7.2f}x {figure.ratio_vs}"
            out(f"{figure.bench:<{width}}  {_number(figure.value):>12} {figure.unit:<9}{against}")
        out("")
        for target, ratio, passed in verdicts:
            shown = "n/a" if ratio is None else f"{ratio:.2f}x"
            out(
                f"[{'PASS' if passed else 'FAIL'}] {target.title}: {shown} "
                f"(target {target.op} {target.threshold}x)"
            )


def _number(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 1:
        return f"{value:,.2f}"
    return f"{value:.4f}"
