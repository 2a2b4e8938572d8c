"""Counters and histograms that add up in memory and reach prometheus_client in batches.

Writing a value in prometheus_client's multiprocess mode takes a lock and a write into a
memory-mapped file, twice per histogram observation: a few microseconds, on every request.
Here an observation adds to plain numbers under one lock (well under a microsecond), and
``flush`` hands the totals to prometheus_client: before every read in this process
(``PrometheusMetrics.render``), every ``FLUSH_INTERVAL`` seconds from a background thread
(so the other workers, answering ``/metrics``, see this one's figures that late at most),
and at exit. A worker killed with SIGKILL loses what it recorded since the last flush.

The histograms write their bucket counts and sum through prometheus_client's own value
objects (``_buckets``, ``_sum``): tests/unit/test_metrics_port.py checks that the result
reads exactly as ``Histogram.observe`` would have written it.
"""

from __future__ import annotations

import atexit
import os
import threading
from bisect import bisect_left
from collections.abc import Callable
from functools import partial
from typing import Any

__all__ = ["FLUSH_INTERVAL", "BufferedCounter", "BufferedHistogram", "flush"]

FLUSH_INTERVAL = 0.25
"""Seconds between the background flushes."""

_lock = threading.Lock()
_dirty: list[BufferedCounter | BufferedHistogram] = []
_flusher: list[threading.Thread] = []


def flush() -> None:
    """Hand every total recorded since the last flush to prometheus_client."""
    with _lock:
        writes = [child._take() for child in _dirty]
        _dirty.clear()
    for write in writes:
        write()


def _run() -> None:
    wake = threading.Event()
    while True:
        wake.wait(FLUSH_INTERVAL)
        flush()


def _mark(child: BufferedCounter | BufferedHistogram) -> None:
    """With ``_lock`` held: ``child`` has figures to flush."""
    child._dirty = True
    _dirty.append(child)
    if not _flusher:
        thread = threading.Thread(target=_run, name="twofold-metrics-flush", daemon=True)
        _flusher.append(thread)
        thread.start()


def _forked() -> None:
    # The child of a fork has no flusher thread, a lock no thread may hold, and totals that
    # the parent recorded and will write itself: drop them here.
    global _lock
    _lock = threading.Lock()
    _flusher.clear()
    for child in _dirty:
        child._take()
    _dirty.clear()


os.register_at_fork(after_in_child=_forked)
atexit.register(flush)


class BufferedCounter:
    """A counter child: ``inc`` adds here; ``flush`` adds the total to ``target``."""

    __slots__ = ("_amount", "_dirty", "_target")

    def __init__(self, target: Any) -> None:
        self._target = target
        self._amount = 0.0
        self._dirty = False

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError(f"a counter only goes up; inc({amount}) would take it down")
        with _lock:
            self._amount += amount
            if not self._dirty:
                _mark(self)

    def _take(self) -> Callable[[], None]:
        """With ``_lock`` held: start again from 0; what writes the total taken."""
        amount, self._amount, self._dirty = self._amount, 0.0, False
        return partial(self._target.inc, amount)


class BufferedHistogram:
    """A histogram child: ``observe`` counts here; ``flush`` adds to ``target``'s buckets
    and sum."""

    __slots__ = ("_bounds", "_counts", "_dirty", "_sum", "_target")

    def __init__(self, target: Any) -> None:
        self._target = target
        self._bounds: list[float] = list(target._upper_bounds)  # the last one is +Inf
        self._counts = [0] * len(self._bounds)
        self._sum = 0.0
        self._dirty = False

    def observe(self, value: float) -> None:
        index = bisect_left(self._bounds, value)  # the first bucket whose bound >= value
        with _lock:
            self._counts[index] += 1
            self._sum += value
            if not self._dirty:
                _mark(self)

    def _take(self) -> Callable[[], None]:
        """With ``_lock`` held: start again from 0; what writes the totals taken."""
        taken = partial(self._write, self._counts, self._sum)
        self._counts, self._sum, self._dirty = [0] * len(self._bounds), 0.0, False
        return taken

    def _write(self, counts: list[int], total: float) -> None:
        buckets = self._target._buckets
        for index, count in enumerate(counts):
            if count:
                buckets[index].inc(count)
        self._target._sum.inc(total)
