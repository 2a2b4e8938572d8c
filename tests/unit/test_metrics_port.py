"""The Metrics port: declaring instruments, recording, and reading them back."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client import Counter as PromCounter
from prometheus_client import Histogram as PromHistogram
from prometheus_client.parser import text_string_to_metric_families

from twofold.adapters.prometheus import PrometheusMetrics
from twofold.application.metrics import LATENCY_BUCKETS, Metrics, NoMetrics, Scrape, quantile
from twofold.errors import ConfigurationError


def parsed(text: bytes) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Sample name -> labels -> value."""
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


async def test_recorded_values_render_in_the_prometheus_text_format() -> None:
    metrics = PrometheusMetrics()
    handled = metrics.counter("twofold_things_total", "Things.", labels=("kind",))
    handled.labels("a").inc()
    handled.labels("a").inc(2)
    handled.labels("b").inc()
    metrics.histogram("twofold_thing_seconds", "Durations.").labels().observe(0.003)
    metrics.gauge("twofold_level", "A level.", aggregate="max").labels().set(7)

    samples = parsed(await metrics.render())

    assert samples["twofold_things_total"] == {(("kind", "a"),): 3.0, (("kind", "b"),): 1.0}
    assert samples["twofold_thing_seconds_count"] == {(): 1.0}
    assert samples["twofold_thing_seconds_sum"] == {(): pytest.approx(0.003)}
    assert samples["twofold_thing_seconds_bucket"][(("le", "0.0025"),)] == 0.0
    assert samples["twofold_thing_seconds_bucket"][(("le", "0.005"),)] == 1.0
    assert samples["twofold_level"] == {(): 7.0}
    assert not any(name.endswith("_created") for name in samples)


async def test_scrape_callbacks_report_gauges_at_each_read() -> None:
    metrics = PrometheusMetrics()
    reads = 0

    async def report(scrape: Scrape) -> None:
        nonlocal reads
        reads += 1
        scrape.gauge("twofold_lag_events", "Lag.", reads * 10, {"projection": "orders"})
        scrape.gauge("twofold_lag_events", "Lag.", 1, {"projection": "users"})

    metrics.on_scrape(report)
    first = parsed(await metrics.render())
    second = await metrics.snapshot()

    assert first["twofold_lag_events"] == {
        (("projection", "orders"),): 10.0,
        (("projection", "users"),): 1.0,
    }
    [lag] = [family for family in second if family.name == "twofold_lag_events"]
    assert lag.kind == "gauge"
    assert {s.labels["projection"]: s.value for s in lag.samples} == {"orders": 20.0, "users": 1.0}


async def test_snapshot_gives_the_families_as_data() -> None:
    metrics = PrometheusMetrics()
    metrics.counter("twofold_things_total", "Things.", labels=("kind",)).labels("a").inc(4)

    [family] = [f for f in await metrics.snapshot() if f.name == "twofold_things"]

    assert family.kind == "counter"
    assert family.documentation == "Things."
    assert [(s.name, dict(s.labels), s.value) for s in family.samples] == [
        ("twofold_things_total", {"kind": "a"}, 4.0)
    ]


def test_declaring_again_returns_the_same_instrument() -> None:
    metrics = PrometheusMetrics()
    first = metrics.counter("twofold_things_total", "Things.", labels=("kind",))
    assert metrics.counter("twofold_things_total", "Things.", labels=("kind",)) is first


@pytest.mark.parametrize(
    ("declare", "message"),
    [
        (lambda m: m.counter("twofold_things", "x"), "must end in _total"),
        (lambda m: m.gauge("twofold_things_total", "x"), "only counters do"),
        (lambda m: m.histogram("9lives_seconds", "x"), "letters, digits"),
        (lambda m: m.counter("twofold_a_total", "x", labels="kind"), "not the text"),
        (lambda m: m.counter("twofold_a_total", "x", labels=("k", "k")), "distinct names"),
        (lambda m: m.gauge("twofold_a", "x", aggregate="avg"), "must be one of"),
        (lambda m: m.histogram("twofold_a_seconds", "x", buckets=(2, 1)), "increasing order"),
    ],
)
def test_bad_declarations_are_refused_with_what_to_do(
    declare: Callable[[Metrics], object], message: str
) -> None:
    for metrics in (PrometheusMetrics(), NoMetrics()):
        with pytest.raises(ConfigurationError, match=message):
            declare(metrics)


def test_a_name_taken_by_another_kind_or_labels_is_refused() -> None:
    metrics = PrometheusMetrics()
    metrics.counter("twofold_things_total", "Things.", labels=("kind",))
    with pytest.raises(ConfigurationError, match="declared already as a counter"):
        metrics.counter("twofold_things_total", "Things.", labels=("other",))


def test_wrong_number_of_label_values_is_refused() -> None:
    metrics = PrometheusMetrics()
    handled = metrics.counter("twofold_things_total", "Things.", labels=("kind",))
    with pytest.raises(ConfigurationError, match="takes 1 label values, got 2"):
        handled.labels("a", "b")


async def test_two_instances_keep_their_figures_apart() -> None:
    one, other = PrometheusMetrics(), PrometheusMetrics()
    one.counter("twofold_things_total", "Things.").labels().inc()
    other.counter("twofold_things_total", "Things.")
    assert parsed(await one.render())["twofold_things_total"] == {(): 1.0}
    assert parsed(await other.render())["twofold_things_total"] == {(): 0.0}


async def test_no_metrics_records_and_shows_nothing() -> None:
    metrics = NoMetrics()
    metrics.counter("twofold_things_total", "Things.").labels().inc()
    metrics.gauge("twofold_level", "Level.").labels().set(3)
    metrics.histogram("twofold_thing_seconds", "Durations.").labels().observe(1)
    assert await metrics.render() == b""
    assert await metrics.snapshot() == []


async def test_quantile_estimates_from_the_buckets_as_prometheus_does() -> None:
    metrics = PrometheusMetrics()
    duration = metrics.histogram(
        "twofold_thing_seconds", "Durations.", labels=("kind",), buckets=(0.1, 0.2, 0.4)
    )
    for _ in range(50):
        duration.labels("a").observe(0.05)  # bucket (0, 0.1]
    for _ in range(50):
        duration.labels("b").observe(0.3)  # bucket (0.2, 0.4]
    [family] = [f for f in await metrics.snapshot() if f.name == "twofold_thing_seconds"]

    # 100 observations: the median is the 50th, at the top of the first bucket.
    assert quantile(family, 0.5) == pytest.approx(0.1)
    # The 99th of 100 lies 49/50 of the way through (0.2, 0.4].
    assert quantile(family, 0.99) == pytest.approx(0.2 + 0.2 * 49 / 50)
    assert quantile(family, 0.5, {"kind": "a"}) == pytest.approx(0.05)
    assert quantile(family, 0.5, {"kind": "c"}) is None


async def test_quantile_refuses_what_is_no_histogram_or_no_quantile() -> None:
    metrics = PrometheusMetrics()
    metrics.counter("twofold_things_total", "Things.").labels().inc()
    metrics.histogram("twofold_thing_seconds", "Durations.").labels().observe(1)
    families = {f.name: f for f in await metrics.snapshot()}
    with pytest.raises(ConfigurationError, match="not a histogram"):
        quantile(families["twofold_things"], 0.5)
    with pytest.raises(ConfigurationError, match="between 0 and 1"):
        quantile(families["twofold_thing_seconds"], 99)


async def test_buffered_figures_read_exactly_as_prometheus_client_writes_them() -> None:
    # twofold's counters and histograms add up in memory and write their totals in
    # batches, through prometheus_client's own values; the result must be the same.
    values = [0.0, 0.00005, 0.0001, 0.0003, 0.001, 0.02, 1.0, 9.99, 10.0, 11.0, 250.0]
    ours = PrometheusMetrics()
    theirs = CollectorRegistry()
    direct = PromHistogram(
        "twofold_thing_seconds", "Durations.", ["kind"], registry=theirs, buckets=LATENCY_BUCKETS
    )
    counted = PromCounter("twofold_things_total", "Things.", ["kind"], registry=theirs)
    histogram = ours.histogram("twofold_thing_seconds", "Durations.", labels=("kind",))
    counter = ours.counter("twofold_things_total", "Things.", labels=("kind",))
    for kind in ("a", "b"):
        for value in values if kind == "a" else values[::3]:
            histogram.labels(kind).observe(value)
            direct.labels(kind).observe(value)
            counter.labels(kind).inc(value)
            counted.labels(kind).inc(value)

    expected = {
        k: v for k, v in parsed(generate_latest(theirs)).items() if not k.endswith("_created")
    }
    assert parsed(await ours.render()) == expected


def test_a_counter_refuses_to_go_down() -> None:
    counter = PrometheusMetrics().counter("twofold_things_total", "Things.").labels()
    with pytest.raises(ValueError, match="only goes up"):
        counter.inc(-1)


def test_a_forked_child_does_not_write_its_parents_totals() -> None:
    from twofold.adapters import _metrics_buffer

    metrics = PrometheusMetrics()
    counter = metrics.counter("twofold_things_total", "Things.").labels()
    counter.inc(5)  # recorded, not flushed yet
    _metrics_buffer._forked()  # what a forked child runs first
    _metrics_buffer.flush()
    assert counter._target._value.get() == 0  # type: ignore[attr-defined]
