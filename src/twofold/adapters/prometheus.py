"""The Metrics port over prometheus_client, in one process or across ``--workers N``.

With ``PROMETHEUS_MULTIPROC_DIR`` set before prometheus_client is imported (``twofold
serve --workers N`` creates one directory per server run, hands it to its workers, marks
dead workers and removes it at exit), every worker writes its values to files there, and
``render`` adds up the files of all workers (prometheus_client's multiprocess mode).
Without it, values live in this object's own registry: two Apps in one process (tests)
keep their figures apart.

Counters and histograms add up in memory first and reach prometheus_client in batches
(``twofold.adapters._metrics_buffer``): a read in this process sees everything; another
worker's figures show up to ``FLUSH_INTERVAL`` (0.25 s) late.
"""

from __future__ import annotations

import copy
import inspect
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import Any, Literal, cast

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    generate_latest,
    values,
)
from prometheus_client import Counter as PromCounter
from prometheus_client import Gauge as PromGauge
from prometheus_client import Histogram as PromHistogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from twofold.adapters._metrics_buffer import BufferedCounter, BufferedHistogram, flush
from twofold.application.metrics import (
    LATENCY_BUCKETS,
    Counter,
    Family,
    Gauge,
    GaugeAggregate,
    Histogram,
    Sample,
    ScrapeCallback,
    check_declaration,
)
from twofold.errors import ConfigurationError

__all__ = ["MULTIPROC_DIR", "PrometheusMetrics"]

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
_Mode = Literal["livesum", "livemax", "livemin", "mostrecent"]
_MODES: dict[str, _Mode] = {
    "sum": "livesum",
    "max": "livemax",
    "min": "livemin",
    "last": "mostrecent",
}
_Kind = Literal["counter", "gauge", "histogram", "unknown"]
_KINDS = frozenset({"counter", "gauge", "histogram"})


class _Instrument:
    """A declared metric; ``labels(...)`` finds (and keeps) the child for label values."""

    __slots__ = ("_children", "_count", "_metric", "_name", "_wrap")

    def __init__(self, metric: Any, name: str, count: int, wrap: Callable[[Any], Any]) -> None:
        self._metric = metric
        self._name = name
        self._count = count
        self._wrap = wrap
        self._children: dict[tuple[str, ...], Any] = {}

    def labels(self, *values: str) -> Any:
        child = self._children.get(values)
        if child is None:
            if len(values) != self._count:
                raise ConfigurationError(
                    f"{self._name} takes {self._count} label values, got {len(values)}: "
                    f"{list(values)}"
                )
            child = self._wrap(self._metric.labels(*values) if self._count else self._metric)
            self._children[values] = child
        return child


class _Scrape:
    """Gauges reported by scrape callbacks: one family per name."""

    def __init__(self, taken: Mapping[str, object]) -> None:
        self._taken = taken
        self.families: dict[str, tuple[GaugeMetricFamily, tuple[str, ...]]] = {}

    def gauge(
        self, name: str, documentation: str, value: float, labels: Mapping[str, str] | None = None
    ) -> None:
        labels = labels or {}
        names = tuple(labels)
        found = self.families.get(name)
        if found is None:
            check_declaration("gauge", name, names)
            if name in self._taken:
                raise ConfigurationError(
                    f"{name} is a declared instrument; a scrape callback reports another name"
                )
            found = (GaugeMetricFamily(name, documentation, labels=names), names)
            self.families[name] = found
        family, declared = found
        if set(names) != set(declared):
            raise ConfigurationError(
                f"{name} was reported with labels {list(declared)}, now with {list(names)}"
            )
        family.add_metric([str(labels[n]) for n in declared], float(value))


class _Families:
    """A collector of families already built (what the scrape callbacks reported)."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self._families


class _WithoutCreated:
    """A registry's metrics without the ``_created`` samples of one process's counters
    and histograms (the multiprocess mode has none), so one worker and N read alike."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterable[Metric]:
        for metric in self._registry.collect():
            samples = [s for s in metric.samples if not s.name.endswith("_created")]
            if len(samples) != len(metric.samples):
                metric = copy.copy(metric)
                metric.samples = samples
            yield metric


_pid = os.getpid()


def _cached_pid() -> int:
    return _pid


def _forked() -> None:
    global _pid
    _pid = os.getpid()


def _cheap_pid_lookup() -> None:
    """In multiprocess mode, prometheus_client asks the kernel for the process id at every
    ``inc`` (to notice a fork): a system call each time, several per request. Ask it once,
    and again after a fork (``os.register_at_fork``): the same answer, none of the calls.

    Only while no value of the mode exists yet: two sets of values would keep two maps of
    one file. Otherwise prometheus_client stays as it is (correct, a little slower).
    """
    global _value_class
    current = values.ValueClass
    if current is _value_class or getattr(current, "_multiprocess", False) is not True:
        return
    made = inspect.getclosurevars(current.__init__).nonlocals.get("values")
    if made is None or len(made) > 0:
        return
    if _value_class is None:
        os.register_at_fork(after_in_child=_forked)
        _value_class = values.MultiProcessValue(process_identifier=_cached_pid)  # type: ignore[no-untyped-call]
    values.ValueClass = _value_class


_value_class: Any = None


class PrometheusMetrics:
    """Counters, histograms and gauges of prometheus_client; see the module docstring."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self._registry = CollectorRegistry(auto_describe=False)
        self._declared: dict[str, tuple[str, tuple[str, ...], _Instrument]] = {}
        self._callbacks: list[ScrapeCallback] = []
        self.multiprocess_dir = os.environ.get(MULTIPROC_DIR) or None
        """Where the workers' files are; None: this process's values only."""
        if self.multiprocess_dir is not None:
            _cheap_pid_lookup()

    def _declare(
        self,
        kind: str,
        name: str,
        labels: Sequence[str],
        make: Callable[..., Any],
        wrap: Callable[[Any], Any] = lambda child: child,
    ) -> _Instrument:
        """The instrument ``name``: made by ``make(labelnames=..., registry=...)`` the
        first time, the same one after (same kind and labels), refused otherwise."""
        names = check_declaration(kind, name, labels)
        found = self._declared.get(name)
        if found is not None:
            if found[:2] != (kind, names):
                raise ConfigurationError(
                    f"{name} is declared already as a {found[0]} with labels {list(found[1])}; "
                    f"it cannot also be a {kind} with labels {list(names)}"
                )
            return found[2]
        metric = make(labelnames=names, registry=self._registry)
        instrument = _Instrument(metric, name, len(names), wrap)
        self._declared[name] = (kind, names, instrument)
        return instrument

    def counter(self, name: str, documentation: str, *, labels: Sequence[str] = ()) -> Counter:
        return self._declare(
            "counter", name, labels, partial(PromCounter, name, documentation), BufferedCounter
        )

    def histogram(
        self,
        name: str,
        documentation: str,
        *,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = LATENCY_BUCKETS,
    ) -> Histogram:
        check_declaration("histogram", name, labels, buckets=buckets)
        return self._declare(
            "histogram",
            name,
            labels,
            partial(PromHistogram, name, documentation, buckets=tuple(buckets)),
            BufferedHistogram,
        )

    def gauge(
        self,
        name: str,
        documentation: str,
        *,
        labels: Sequence[str] = (),
        aggregate: GaugeAggregate = "last",
    ) -> Gauge:
        check_declaration("gauge", name, labels, aggregate=aggregate)
        mode = _MODES[aggregate]
        return self._declare(
            "gauge",
            name,
            labels,
            partial(PromGauge, name, documentation, multiprocess_mode=mode),
        )

    def on_scrape(self, callback: ScrapeCallback) -> None:
        self._callbacks.append(callback)

    async def _collect(self) -> list[_WithoutCreated]:
        """The registries to read: the recorded values (all workers), the scraped ones."""
        flush()  # this process's figures, up to now
        scrape = _Scrape(self._declared)
        for callback in self._callbacks:
            await callback(scrape)
        if self.multiprocess_dir is not None:
            recorded = CollectorRegistry(auto_describe=False)
            MultiProcessCollector(recorded, self.multiprocess_dir)  # type: ignore[no-untyped-call]
        else:
            recorded = self._registry
        scraped = CollectorRegistry(auto_describe=False)
        scraped.register(_Families(family for family, _ in scrape.families.values()))
        return [_WithoutCreated(recorded), _WithoutCreated(scraped)]

    async def render(self) -> bytes:
        parts = [generate_latest(registry) for registry in await self._collect()]
        return b"".join(parts)

    async def snapshot(self) -> list[Family]:
        families: list[Family] = []
        for registry in await self._collect():
            for metric in registry.collect():
                kind = cast(_Kind, metric.type if metric.type in _KINDS else "unknown")
                samples = tuple(Sample(s.name, dict(s.labels), s.value) for s in metric.samples)
                families.append(Family(metric.name, kind, metric.documentation, samples))
        families.sort(key=lambda family: family.name)
        return families
