"""Repairs from a second process while `twofold serve` runs, on SQLite files."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.e2e.operations_served import repair_a_running_server
from tests.e2e.processes import environment, serving


def test_a_running_server_is_repaired_from_another_process(tmp_path: Path) -> None:
    stores = {
        "event_store": f"sqlite:///{tmp_path}/twofold.db",
        "read_store": f"sqlite:///{tmp_path}/twofold-views.db",
    }
    with (
        serving([], cwd=tmp_path, env=environment()) as (url, _),
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        repair_a_running_server(client, stores)
