"""`GET /metrics` of a real `twofold serve --workers 2`: every worker's figures added up.

Commands and queries go through both workers (a kept-alive connection to each); whichever
worker answers /metrics, the counts are those of both. A poison event parked by the
worker that runs the projections shows in the figures too.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.poison import append_to, poison_order
from tests.e2e.processes import environment, serving
from tests.e2e.shop_client import created, ok
from tests.e2e.test_workers import pinned_clients

DEADLINE = 60.0  # seconds; for a broken run to fail rather than hang

REQUESTS = "http_server_request_duration_seconds_count"
HANDLED = "twofold_command_duration_seconds_count"  # a histogram's count: commands handled
Samples = dict[str, dict[frozenset[tuple[str, str]], float]]


def scrape(client: httpx.Client) -> Samples:
    """/metrics parsed with prometheus_client's own parser: sample name -> labels -> value."""
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    found: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            found.setdefault(sample.name, {})[frozenset(sample.labels.items())] = sample.value
    return found


def scrape_until(client: httpx.Client, done: Callable[[Samples], bool]) -> Samples:
    """/metrics once ``done`` holds. Each worker hands its figures to the shared files every
    0.25 s (FLUSH_INTERVAL), so another worker's may show a moment late: poll, with a
    deadline for a broken run."""
    deadline = time.monotonic() + DEADLINE
    while True:
        samples = scrape(client)
        if done(samples):
            return samples
        assert time.monotonic() < deadline, f"/metrics never got there: {samples}"
        time.sleep(0.05)


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample ``name`` with exactly these labels (0 when absent)."""
    return samples.get(name, {}).get(frozenset(labels.items()), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples ``name`` whose labels include these."""
    wanted = set(labels.items())
    return sum(v for key, v in samples.get(name, {}).items() if wanted <= key)


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    events = tmp_path / "events.db"
    env = environment(
        TWOFOLD_EVENT_STORE=f"sqlite:///{events}",
        TWOFOLD_READ_STORE=f"sqlite:///{tmp_path}/views.db",
        TWOFOLD_VERIFY_INTERVAL="0.5",  # the worker running the projections verifies them
    )
    with serving(["--workers", "2"], cwd=tmp_path, env=env) as (url, _):
        yield url, events


@pytest.mark.slow
def test_metrics_add_up_both_workers(two_workers: tuple[str, Path]) -> None:
    url, _ = two_workers
    with ExitStack() as stack:
        clients = pinned_clients(url, stack)
        (_, a), (_, b) = clients.items()
        before = {pid: scrape(c) for pid, c in clients.items()}
        for pid in clients:
            assert value(before[pid], HANDLED, command="CreateUser") == 0

        last = 0
        for n in range(3):  # 3 users through a, 2 through b; each read through the other
            writer, reader = (a, b) if n % 2 == 0 else (b, a)
            body = {"user_id": f"u{n}", "email": f"u{n}@x.io", "name": "A"}
            last = created(writer.post("/api/users", json=body))["position"]
            ok(reader.get(f"/api/users/u{n}", params={"min_position": last}))
        refused = a.post("/api/users", json={"user_id": "u0", "email": "z@x.io", "name": "Z"})
        assert refused.status_code == 409  # the user exists: a command error
        missing = b.get("/api/users/nobody")
        assert missing.status_code == 404

        for pid, client in clients.items():
            # Both workers' commands and queries, whichever answers.
            samples = scrape_until(
                client,
                lambda s: (
                    value(s, HANDLED, command="CreateUser") == 4
                    and value(s, "twofold_query_duration_seconds_count", query="GetUser") == 4
                    and total(s, REQUESTS, http_route="/api/users/{user_id}") == 4
                    and total(s, REQUESTS, http_route="/api/users") == 4
                    and value(s, "twofold_projection_batch_events_sum", projection="users") == 3
                ),
            )
            assert value(samples, HANDLED, command="CreateUser") == 4, pid
            assert (
                value(
                    samples,
                    "twofold_command_errors_total",
                    command="CreateUser",
                    error="AggregateExistsError",
                )
                == 1
            )
            assert value(samples, "twofold_append_duration_seconds_count") == 4  # 1 refused
            assert value(samples, "twofold_append_events_sum") == 3
            assert value(samples, "twofold_append_events_count") == 3
            assert value(samples, "twofold_append_errors_total", error="ConcurrencyError") == 1
            assert value(samples, "twofold_query_duration_seconds_count", query="GetUser") == 4
            assert value(samples, "twofold_query_position_timeouts_total", query="GetUser") == 0
            # The HTTP measure, by route template (not by path: ids stay out of labels).
            created_users = value(
                samples,
                "http_server_request_duration_seconds_count",
                http_request_method="POST",
                http_route="/api/users",
                http_response_status_code="201",
            )
            assert created_users == 3
            read_users = total(
                samples,
                "http_server_request_duration_seconds_count",
                http_request_method="GET",
                http_route="/api/users/{user_id}",
            )
            assert read_users == 4
            # Read from the stores at the scrape: the same in both workers.
            assert value(samples, "twofold_log_head_position") == last
            assert value(samples, "twofold_projection_position", projection="users") == last
            assert value(samples, "twofold_projection_lag_events", projection="users") == 0
            assert value(samples, "twofold_projection_lag_seconds", projection="users") == 0
            assert (
                value(samples, "twofold_projection_status", projection="users", status="running")
                == 1
            )
            assert value(samples, "twofold_projection_batch_events_sum", projection="users") == 3

        for pid, client in clients.items():
            # The scheduled verification's result, whichever worker made it and answers.
            samples = scrape_until(
                client,
                lambda s: (
                    value(s, "twofold_verify_runs_total", result="clean") >= 1
                    and value(s, "twofold_verify_last_run_timestamp_seconds") > 0
                ),
            )
            assert value(samples, "twofold_verify_runs_total", result="divergent") == 0, pid
            assert value(samples, "twofold_verify_consistent", projection="users") == 1
            assert value(samples, "twofold_verify_divergent_documents", projection="users") == 0


@pytest.mark.slow
def test_a_parked_event_shows_in_the_metrics(two_workers: tuple[str, Path]) -> None:
    url, events = two_workers
    with httpx.Client(base_url=url) as client:
        poisoned = append_to(f"sqlite:///{events}", "Order-o9", poison_order("o9"))
        # The worker that runs the projections parks both events of the stream; poll the
        # figures (as Prometheus would) until it did and its counts came through.
        samples = scrape_until(
            client,
            lambda s: (
                value(s, "twofold_projection_position", projection="orders") >= poisoned
                and value(s, "twofold_projection_parked_events_total", projection="orders") == 2
            ),
        )
        assert value(samples, "twofold_projection_parked_events", projection="orders") == 2
        assert value(samples, "twofold_projection_parked_events", projection="users") == 0
        assert value(samples, "twofold_projection_lag_events", projection="orders") == 0
        # The handler failed, was retried per the projection's policy, then parked.
        assert value(samples, "twofold_projection_retries_total", projection="orders") >= 1


@pytest.mark.slow
def test_a_dead_workers_counts_stay_in_the_sum(two_workers: tuple[str, Path]) -> None:
    url, _ = two_workers
    with ExitStack() as stack:
        clients = pinned_clients(url, stack)
        (pid_a, a), (_, b) = clients.items()
        for n in range(2):
            body = {"user_id": f"u{n}", "email": f"u{n}@x.io", "name": "A"}
            created(a.post("/api/users", json=body))
        created(b.post("/api/users", json={"user_id": "u9", "email": "u9@x.io", "name": "B"}))
        scrape_until(b, lambda s: value(s, HANDLED, command="CreateUser") == 3)  # a's flushed
        os.kill(pid_a, signal.SIGKILL)
        # The survivor answers, with the dead worker's commands still counted; the parent
        # starts another worker in its place, and the count does not go back.
        samples = scrape(b)
        assert value(samples, HANDLED, command="CreateUser") == 3
        last = created(
            b.post("/api/users", json={"user_id": "u8", "email": "u8@x.io", "name": "B"})
        )
        assert value(scrape(b), HANDLED, command="CreateUser") == 4
        assert value(scrape(b), "twofold_log_head_position") == last["position"]
