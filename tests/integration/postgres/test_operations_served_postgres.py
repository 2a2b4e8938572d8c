"""Repairs from a second process while `twofold serve` runs, on one PostgreSQL schema."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.e2e.operations_served import repair_a_running_server
from tests.e2e.processes import environment, serving

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def test_a_running_server_is_repaired_from_another_process(
    postgres_url: str, pg_schema: str, tmp_path: Path
) -> None:
    target = f"{postgres_url}?schema={pg_schema}"
    env = environment(TWOFOLD_EVENT_STORE=target, TWOFOLD_READ_STORE=target)
    with (
        serving([], cwd=tmp_path, env=env) as (url, _),
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        repair_a_running_server(client, {"event_store": target, "read_store": target})
