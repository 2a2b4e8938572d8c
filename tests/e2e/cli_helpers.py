"""Drive the `twofold` operating commands as processes, against real stores.

``Stores`` names a real SQLite folder or a real PostgreSQL schema (the ``cli_stores``
fixture in conftest gives one of each); ``cli`` runs a command over them, ``cli_json`` one
that must succeed with ``--json``; ``one_line_failure`` checks how a command fails.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg

from tests.e2e.processes import REPO, environment, run_twofold
from tests.integration.postgres.conftest import drop_schema, find_postgres

DEADLINE = 60.0  # seconds; for a broken run to fail rather than hang


@dataclasses.dataclass(frozen=True)
class Stores:
    kind: str  # "sqlite" or "postgres"
    events: str
    views: str
    folder: Path
    postgres: str | None = None
    schema: str | None = None

    def env(self, **more: str) -> dict[str, str]:
        stores = {"TWOFOLD_EVENT_STORE": self.events, "TWOFOLD_READ_STORE": self.views}
        return environment(**(stores | more))

    def update_document(
        self, table: str, key: str, change: Callable[[dict[str, Any]], None]
    ) -> None:
        """Change a stored view document behind twofold's back (as a bad migration would)."""
        if self.kind == "sqlite":
            with sqlite3.connect(self.folder / "views.db") as views:
                (raw,) = views.execute(f"SELECT doc FROM {table} WHERE key = ?", (key,)).fetchone()
                document = json.loads(raw)
                change(document)
                encoded = (
                    json.dumps(document).encode()
                    if isinstance(raw, bytes)
                    else json.dumps(document)
                )
                views.execute(f"UPDATE {table} SET doc = ? WHERE key = ?", (encoded, key))
            return
        assert self.postgres is not None
        with psycopg.connect(self.postgres, autocommit=True) as conn:
            row = conn.execute(
                f'SELECT doc FROM "{self.schema}".{table} WHERE key = %s', (key,)
            ).fetchone()
            assert row is not None
            document = row[0]
            change(document)
            conn.execute(
                f'UPDATE "{self.schema}".{table} SET doc = %s::jsonb WHERE key = %s',
                (json.dumps(document), key),
            )

    def insert_document(self, table: str, key: str, document: dict[str, Any]) -> None:
        """Add a view document no event made."""
        if self.kind == "sqlite":
            with sqlite3.connect(self.folder / "views.db") as views:
                encoded = json.dumps(document).encode()
                views.execute(f"INSERT INTO {table} (key, doc) VALUES (?, ?)", (key, encoded))
            return
        with psycopg.connect(self.postgres or "", autocommit=True) as conn:
            conn.execute(
                f'INSERT INTO "{self.schema}".{table} (key, doc) VALUES (%s, %s::jsonb)',
                (key, json.dumps(document)),
            )

    def execute(self, statement: str, *params: Any) -> None:
        """Run SQL on the views' database (table names unqualified: the test's own)."""
        if self.kind == "sqlite":
            with sqlite3.connect(self.folder / "views.db") as views:
                views.execute(statement, params)
            return
        assert self.postgres is not None
        with psycopg.connect(self.postgres, autocommit=True) as conn:
            conn.execute(f'SET search_path TO "{self.schema}"')
            conn.execute(statement.replace("?", "%s"), params)


@contextmanager
def postgres_stores(folder: Path) -> Iterator[Stores]:
    """Stores in a PostgreSQL schema of their own, dropped after (the test server:
    skipped when it is away, failed under CI=true)."""
    server = find_postgres()
    schema = f"twofold_cli_{uuid.uuid4().hex[:12]}"
    url = f"{server}?schema={schema}"
    try:
        yield Stores(
            kind="postgres", events=url, views=url, folder=folder, postgres=server, schema=schema
        )
    finally:
        drop_schema(server, schema)


def cli(
    stores: Stores, *args: str, cwd: Path | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    return run_twofold(*args, cwd=cwd or stores.folder, env=stores.env(**env))


def cli_json(stores: Stores, *args: str, cwd: Path | None = None) -> Any:
    """The JSON document a successful ``twofold ARGS --json`` prints."""
    done = cli(stores, *args, "--json", cwd=cwd)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr
    return json.loads(done.stdout)


def one_line_failure(done: subprocess.CompletedProcess[str], status: int, command: str) -> str:
    """The one line a failed command printed on stderr (checked: no traceback)."""
    assert done.returncode == status, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"{command}: "), done.stderr
    return done.stderr.strip()


def projection(health: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(p for p in health["projections"] if p["name"] == name)
    return found


def wait_health(
    client: httpx.Client, name: str, done: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """Poll /health (with a deadline) until ``done(name's report)``; the whole answer."""
    deadline = time.monotonic() + DEADLINE
    while True:
        health: dict[str, Any] = client.get("/health").json()
        if done(projection(health, name)):
            return health
        assert time.monotonic() < deadline, health
        time.sleep(0.05)


__all__ = [
    "REPO",
    "Stores",
    "cli",
    "cli_json",
    "one_line_failure",
    "postgres_stores",
    "projection",
    "wait_health",
]
