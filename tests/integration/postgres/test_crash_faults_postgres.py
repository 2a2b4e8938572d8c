"""SIGKILL `twofold serve` on PostgreSQL under concurrent commands with Idempotency-Keys:
every acknowledged command is stored once, every retry gets its first answer, and the views
(customer statistics included) equal a rebuild (tests/e2e/crash_scenario.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e import crash_scenario
from tests.e2e.processes import environment
from twofold import Settings

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.mark.parametrize("workers", [1, 2])
def test_killed_server_answers_retries_first_and_its_views_equal_a_rebuild(
    workers: int, postgres_url: str, pg_schema: str, tmp_path: Path
) -> None:
    target = f"{postgres_url}?schema={pg_schema}"
    env = environment(TWOFOLD_EVENT_STORE=target, TWOFOLD_READ_STORE=target)
    figures = crash_scenario.run(
        workers=workers,
        cwd=tmp_path,
        env=env,
        settings=Settings(event_store=target, read_store=target),
    )
    assert figures.kills == 3 and figures.requests >= 40
