"""Every event is applied to a projection exactly once, however many processes share it.

A user's service (``tally_api``) runs under ``twofold serve --workers 2`` beside two
``twofold worker`` processes, all of them on the same stores and all willing to run the
projections; clients write concurrently. Its projection adds a document per application,
so an event applied twice (two runners in one process, or in two) shows as two documents.
The PostgreSQL run of the same scenario is in tests/integration/postgres.
"""

from __future__ import annotations

import collections
import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.processes import environment, serving, twofold
from tests.e2e.shop_client import created

DEADLINE = 60.0  # seconds; for a broken run to fail rather than hang
TALLY = "tests.e2e.tally_api:api"
TICKS = 120


def assert_each_event_applied_once(env: dict[str, str], cwd: Path) -> None:
    workers = [
        twofold("worker", TALLY, "--retry-interval", "0.1", cwd=cwd, env=env) for _ in range(2)
    ]
    try:
        with serving([TALLY, "--workers", "2"], cwd=cwd, env=env) as (url, _):

            def post_tick(_: int) -> int:
                with httpx.Client(base_url=url, timeout=DEADLINE) as client:
                    position: int = created(client.post("/ticks", json={}))["position"]
                    return position

            with ThreadPoolExecutor(8) as pool:
                positions = list(pool.map(post_tick, range(TICKS)))
            with httpx.Client(base_url=url, timeout=DEADLINE) as client:
                response = client.get(
                    "/applications",
                    params={"min_position": max(positions), "timeout_ms": 30000},
                )
            assert response.status_code == 200, response.text
            applications: list[dict[str, Any]] = response.json()
        running = [w.poll() is None for w in workers]
    finally:
        outputs = [_stop(w) for w in workers]
    assert running == [True, True], f"a worker exited early:\n{''.join(outputs)}"
    applied = collections.Counter(a["position"] for a in applications)
    twice = {p: n for p, n in applied.items() if n != 1}
    assert not twice, f"positions applied more than once (position: times): {twice}"
    assert sorted(applied) == sorted(positions), "every answered event is applied"
    assert [w.returncode for w in workers] == [0, 0], "".join(outputs)


def _stop(process: subprocess.Popen[str]) -> str:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        output, _ = process.communicate(timeout=DEADLINE)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    return output or ""


@pytest.mark.slow
def test_serve_and_workers_on_sqlite_apply_each_event_once(tmp_path: Path) -> None:
    env = environment(
        TWOFOLD_EVENT_STORE=f"sqlite:///{tmp_path}/events.db",
        TWOFOLD_READ_STORE=f"sqlite:///{tmp_path}/views.db",
    )
    assert_each_event_applied_once(env, tmp_path)
