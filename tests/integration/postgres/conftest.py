"""PostgreSQL fixtures: every test gets a schema of its own, dropped afterwards.

The server is ``TWOFOLD_TEST_POSTGRES_URL`` (default: postgres on 127.0.0.1:5432, database
``test``). When it cannot be reached the tests are skipped, except under ``CI=true``, where
a missing database is a failure, not a reason to pass.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest
from psycopg import sql

from twofold.adapters.postgres import PostgresEventStore

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture(scope="session")
def postgres_url() -> str:
    return find_postgres()


def find_postgres() -> str:
    """The test server's URL; skips the test when unreachable (fails it under CI=true)."""
    url = os.environ.get("TWOFOLD_TEST_POSTGRES_URL", DEFAULT_URL)
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        message = f"PostgreSQL at {url} is unreachable ({exc}); set TWOFOLD_TEST_POSTGRES_URL"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return url


def drop_schema(url: str, schema: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def pg_schema(postgres_url: str) -> Iterator[str]:
    """A fresh schema name; the schema (if a test created it) is dropped afterwards."""
    schema = f"twofold_test_{uuid.uuid4().hex[:12]}"
    try:
        yield schema
    finally:
        drop_schema(postgres_url, schema)


@pytest.fixture
async def store(postgres_url: str, pg_schema: str) -> AsyncIterator[PostgresEventStore]:
    opened = await PostgresEventStore.open(postgres_url, schema=pg_schema)
    try:
        yield opened
    finally:
        await opened.close()
