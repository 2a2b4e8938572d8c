"""SIGKILL `twofold serve` on SQLite under concurrent commands with Idempotency-Keys:
every acknowledged command is stored once, every retry gets its first answer, and the views
equal a rebuild (tests/e2e/crash_scenario.py tells the scenario)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e import crash_scenario
from tests.e2e.processes import environment
from twofold import Settings

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("workers", [1, 2])
def test_killed_server_answers_retries_first_and_its_views_equal_a_rebuild(
    workers: int, tmp_path: Path
) -> None:
    events, views = f"sqlite:///{tmp_path}/events.db", f"sqlite:///{tmp_path}/views.db"
    env = environment(TWOFOLD_EVENT_STORE=events, TWOFOLD_READ_STORE=views)
    figures = crash_scenario.run(
        workers=workers,
        cwd=tmp_path,
        env=env,
        settings=Settings(event_store=events, read_store=views),
    )
    assert figures.kills == 3 and figures.requests >= 40
