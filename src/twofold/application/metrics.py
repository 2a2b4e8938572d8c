"""Recording what twofold does: counters, histograms and gauges behind one small port.

Declare an instrument once, where the component is built, and record on the hot path
through a child kept for its label values (``labels(...)`` looks the child up; keep it)::

    published = metrics.counter(
        "twofold_relay_published_total", "Events the relay published.", labels=("destination",)
    )
    to_nats = published.labels("nats")
    to_nats.inc()

    duration = metrics.histogram(
        "twofold_relay_publish_duration_seconds", "Publishing a batch.", labels=("destination",)
    )
    duration.labels("nats").observe(0.0031)

    in_flight = metrics.gauge(
        "twofold_relay_in_flight_events", "Events sent, not yet acknowledged.",
        labels=("destination",), aggregate="sum",
    )
    in_flight.labels("nats").set(12)

With ``twofold serve --workers N`` every worker records its own values and ``/metrics`` adds
them up: counters and histograms are summed; a gauge says how (``aggregate``): ``sum`` or
``max``/``min`` over the live workers, or ``last``, the value set most recently by any worker.

Figures a store knows better than any one process (a projection's position and lag, its
parked events) are read when ``/metrics`` is scraped: ``metrics.on_scrape(callback)``, where
``callback(scrape)`` is async and reports with ``scrape.gauge(name, documentation, value,
labels)``. They are not added up across workers: the worker that answers reads them.

Names follow Prometheus' conventions: ``snake_case``, base units (``_seconds``, ``_bytes``),
counters end in ``_total``. Label values must be few (a command type, a projection name;
never an id). ``NoMetrics`` records nothing: it is the App's default; ``bootstrap`` gives the
App a Prometheus implementation.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Literal, Protocol

from twofold.errors import ConfigurationError

__all__ = [
    "LATENCY_BUCKETS",
    "SIZE_BUCKETS",
    "Counter",
    "CounterChild",
    "Family",
    "Gauge",
    "GaugeAggregate",
    "GaugeChild",
    "Histogram",
    "HistogramChild",
    "Metrics",
    "NoMetrics",
    "Sample",
    "Scrape",
    "ScrapeCallback",
    "check_declaration",
    "quantile",
]

GaugeAggregate = Literal["sum", "max", "min", "last"]
"""How a gauge's values in several worker processes make one: summed, the largest, the
smallest (over live workers), or the value set most recently by any worker."""

LATENCY_BUCKETS: tuple[float, ...] = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
"""Seconds, from 100 µs (an append to a warm SQLite file) to 10 s (a query's longest wait)."""

SIZE_BUCKETS: tuple[float, ...] = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000)
"""Counts of things (events in one append, in one projection batch)."""

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


class CounterChild(Protocol):
    def inc(self, amount: float = 1.0) -> None:
        """Add ``amount`` (0 or more)."""


class HistogramChild(Protocol):
    def observe(self, value: float) -> None:
        """Count one observation of ``value`` (seconds, for a duration)."""


class GaugeChild(Protocol):
    def set(self, value: float) -> None: ...

    def inc(self, amount: float = 1.0) -> None: ...

    def dec(self, amount: float = 1.0) -> None: ...


class Counter(Protocol):
    def labels(self, *values: str) -> CounterChild:
        """The child for these label values, in the declared order (none: ``labels()``)."""


class Histogram(Protocol):
    def labels(self, *values: str) -> HistogramChild: ...


class Gauge(Protocol):
    def labels(self, *values: str) -> GaugeChild: ...


@dataclasses.dataclass(frozen=True, slots=True)
class Sample:
    """One value of a family: ``name`` is the family's, or with a suffix (``_bucket``,
    ``_sum``, ``_count`` of a histogram; ``_total`` of a counter)."""

    name: str
    labels: Mapping[str, str]
    value: float


@dataclasses.dataclass(frozen=True, slots=True)
class Family:
    """A metric and its samples, as ``/metrics`` shows them (all workers added up)."""

    name: str
    kind: Literal["counter", "gauge", "histogram", "unknown"]
    documentation: str
    samples: tuple[Sample, ...]


class Scrape(Protocol):
    """What a scrape callback reports to."""

    def gauge(
        self, name: str, documentation: str, value: float, labels: Mapping[str, str] | None = None
    ) -> None:
        """Report one value of the gauge ``name`` (call again for other label values)."""


ScrapeCallback = Callable[[Scrape], Awaitable[None]]


class Metrics(Protocol):
    """The port: declare instruments, read them back (``/metrics``, dashboards).

    Declaring the same name again with the same kind and labels returns the same
    instrument; anything else under a name already taken is a ConfigurationError.
    """

    def counter(self, name: str, documentation: str, *, labels: Sequence[str] = ()) -> Counter: ...

    def histogram(
        self,
        name: str,
        documentation: str,
        *,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = LATENCY_BUCKETS,
    ) -> Histogram: ...

    def gauge(
        self,
        name: str,
        documentation: str,
        *,
        labels: Sequence[str] = (),
        aggregate: GaugeAggregate = "last",
    ) -> Gauge: ...

    def on_scrape(self, callback: ScrapeCallback) -> None:
        """Call ``callback`` at every read (``render``, ``snapshot``) to report gauges."""

    @property
    def content_type(self) -> str:
        """The media type of ``render``'s answer."""

    async def render(self) -> bytes:
        """Every metric in the Prometheus text format (all workers; scrape callbacks run)."""

    async def snapshot(self) -> list[Family]:
        """Every metric as data (all workers; scrape callbacks run), for dashboards."""


_AGGREGATES = ("sum", "max", "min", "last")


def check_declaration(
    kind: str,
    name: str,
    labels: Sequence[str],
    *,
    aggregate: str = "last",
    buckets: Sequence[float] = LATENCY_BUCKETS,
) -> tuple[str, ...]:
    """Refuse a declaration Prometheus would not take, saying what would; the labels."""
    if aggregate not in _AGGREGATES:
        raise ConfigurationError(
            f"aggregate of {name} must be one of {', '.join(_AGGREGATES)}, not {aggregate!r}"
        )
    if not buckets or list(buckets) != sorted(set(buckets)):
        raise ConfigurationError(
            f"buckets of {name} must be distinct upper bounds in increasing order, "
            f"not {list(buckets)}"
        )
    if isinstance(labels, str):
        raise ConfigurationError(
            f"labels of {name!r} must be a sequence of label names, like ('command',), "
            f"not the text {labels!r}"
        )
    if not _NAME.fullmatch(name):
        raise ConfigurationError(
            f"metric name {name!r} must be letters, digits, _ and :, not starting with a digit "
            "(e.g. twofold_relay_published_total)"
        )
    if kind == "counter" and not name.endswith("_total"):
        raise ConfigurationError(
            f"counter {name!r} must end in _total (Prometheus naming); call it {name}_total"
        )
    if kind != "counter" and name.endswith("_total"):
        raise ConfigurationError(f"{kind} {name!r} must not end in _total: only counters do")
    bad = [label for label in labels if not _LABEL.fullmatch(label) or label.startswith("__")]
    if bad or len(set(labels)) != len(labels):
        raise ConfigurationError(
            f"labels of {name!r} must be distinct names of letters, digits and _ "
            f"(not starting with a digit or __); got {list(labels)}"
        )
    return tuple(labels)


def quantile(family: Family, q: float, labels: Mapping[str, str] | None = None) -> float | None:
    """The ``q``-quantile (0.99: p99) of a histogram family, estimated from its buckets as
    Prometheus' ``histogram_quantile`` does (linear within the bucket it falls in).

    ``labels``: only the series whose labels include these (None: all, added up). None when
    nothing was observed. Observations above the last finite bucket answer that bucket.
    """
    if family.kind != "histogram":
        raise ConfigurationError(f"{family.name} is a {family.kind}, not a histogram")
    if not 0 <= q <= 1:
        raise ConfigurationError(f"q must be between 0 and 1 (0.99 for p99), not {q}")
    wanted = set((labels or {}).items())
    counts: dict[float, float] = {}
    for sample in family.samples:
        if sample.name != family.name + "_bucket" or not wanted <= set(sample.labels.items()):
            continue
        bound = float(sample.labels["le"])
        counts[bound] = counts.get(bound, 0.0) + sample.value
    bounds = sorted(counts)
    if not bounds or counts[bounds[-1]] == 0:
        return None
    rank = q * counts[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        cumulative = counts[bound]
        if cumulative >= rank:
            if bound == float("inf"):
                return lower
            if cumulative == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (cumulative - below)
        lower, below = bound, cumulative
    return lower


class _Nothing:
    """Every instrument and child of NoMetrics: it records nothing."""

    __slots__ = ()

    def labels(self, *values: str) -> _Nothing:
        return self

    def inc(self, amount: float = 1.0) -> None:
        pass

    def dec(self, amount: float = 1.0) -> None:
        pass

    def set(self, value: float) -> None:
        pass

    def observe(self, value: float) -> None:
        pass


_NOTHING = _Nothing()


class NoMetrics:
    """Metrics that record nothing and show nothing (an App built without bootstrap)."""

    content_type = "text/plain; version=0.0.4; charset=utf-8"

    def counter(self, name: str, documentation: str, *, labels: Sequence[str] = ()) -> Counter:
        check_declaration("counter", name, labels)
        return _NOTHING

    def histogram(
        self,
        name: str,
        documentation: str,
        *,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = LATENCY_BUCKETS,
    ) -> Histogram:
        check_declaration("histogram", name, labels, buckets=buckets)
        return _NOTHING

    def gauge(
        self,
        name: str,
        documentation: str,
        *,
        labels: Sequence[str] = (),
        aggregate: GaugeAggregate = "last",
    ) -> Gauge:
        check_declaration("gauge", name, labels, aggregate=aggregate)
        return _NOTHING

    def on_scrape(self, callback: ScrapeCallback) -> None:
        pass

    async def render(self) -> bytes:
        return b""

    async def snapshot(self) -> list[Family]:
        return []
