"""`twofold serve --workers 2` on one SQLite store: both append, one runs the projections,
and a client reads its own writes whichever worker answers."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.processes import environment, serving
from tests.e2e.shop_client import created, ok

DEADLINE = 60.0  # seconds; for a broken run to fail rather than hang


def pinned_clients(url: str, stack: ExitStack) -> dict[int, httpx.Client]:
    """One kept-alive connection to each worker process, by process id.

    Which worker accepts a connection is the kernel's choice; open connections until both
    workers have one.
    """
    found: dict[int, httpx.Client] = {}
    deadline = time.monotonic() + DEADLINE
    while len(found) < 2:
        assert time.monotonic() < deadline, "only one worker ever accepted a connection"
        client = httpx.Client(
            base_url=url, limits=httpx.Limits(max_connections=1, max_keepalive_connections=1)
        )
        pid = client.get("/health").json()["process_id"]
        if pid in found:
            client.close()
        else:
            stack.callback(client.close)
            found[pid] = client
    return found


def health_at(client: httpx.Client, position: int) -> dict[str, Any]:
    """/health once it shows every projection at ``position`` or past it.

    A worker learns of the others' commits a moment after they happen: poll until then,
    with a deadline for a broken run, rather than expect it at once.
    """
    deadline = time.monotonic() + DEADLINE
    while True:
        health: dict[str, Any] = client.get("/health").json()
        if all(p["position"] >= position for p in health["projections"]):
            return health
        assert time.monotonic() < deadline, f"projections never reached {position}: {health}"
        time.sleep(0.05)


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[str]:
    env = environment(
        TWOFOLD_EVENT_STORE=f"sqlite:///{tmp_path}/events.db",
        TWOFOLD_READ_STORE=f"sqlite:///{tmp_path}/views.db",
    )
    with serving(["--workers", "2"], cwd=tmp_path, env=env) as (url, _):
        yield url


@pytest.mark.slow
def test_both_workers_append_and_read_their_writes(two_workers: str) -> None:
    with ExitStack() as stack:
        clients = pinned_clients(two_workers, stack)
        (pid_a, a), (pid_b, b) = clients.items()
        leaders = [c.get("/health").json()["runs_projections"] for c in (a, b)]
        assert sorted(leaders) == [False, True], "exactly one worker runs the projections"

        # Writes through both processes, each reading the other's writes at once.
        for n in range(5):
            user = created(
                a.post("/api/users", json={"user_id": f"u{n}", "email": f"u{n}@x.io", "name": "A"})
            )
            seen = ok(b.get(f"/api/users/u{n}", params={"min_position": user["position"]}))
            assert seen["name"] == "A"
            product = created(
                b.post("/api/products", json={"product_id": f"p{n}", "name": "P", "price": "2.50"})
            )
            order = created(
                b.post(
                    "/api/orders",
                    json={
                        "customer_id": f"u{n}",
                        "items": [{"product_id": f"p{n}", "quantity": 2, "price": "2.50"}],
                    },
                )
            )
            assert order["position"] > product["position"] > user["position"]
            view = ok(
                a.get(f"/api/orders/{order['id']}", params={"min_position": order["position"]})
            )
            assert view["customer_name"] == "A" and view["total_amount"] == "5.00"
            assert {pid_a, pid_b} == set(clients)

        health = health_at(a, 15)
        assert health["status"] == "UP" and health["head_position"] == 15
        assert all(p["position"] == 15 for p in health["projections"])


@pytest.mark.slow
def test_projections_go_on_when_their_runner_dies(two_workers: str) -> None:
    with ExitStack() as stack:
        clients = pinned_clients(two_workers, stack)
        leader = next(
            pid for pid, c in clients.items() if c.get("/health").json()["runs_projections"]
        )
        survivor = next(c for pid, c in clients.items() if pid != leader)
        os.kill(leader, signal.SIGKILL)
        # The survivor, or the worker uvicorn starts in place of the dead one, takes the
        # lock over and runs the projections from their checkpoints.
        user = created(
            survivor.post("/api/users", json={"user_id": "u1", "email": "u@x.io", "name": "A"})
        )
        view = survivor.get(
            "/api/users/u1", params={"min_position": user["position"], "timeout_ms": 30000}
        )
        assert ok(view)["name"] == "A"
        assert ok(survivor.get("/health"))["status"] == "UP"
