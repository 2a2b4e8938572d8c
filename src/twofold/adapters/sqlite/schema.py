"""The SQLite event store's tables, their migrations, and how its connections are set up.

The schema is versioned in ``schema_migrations``: opening a file applies the migrations it
lacks, in one ``BEGIN IMMEDIATE`` transaction, so creating it is idempotent and safe when
several processes open the same file at once. Stored rows are never rewritten by a
migration (DESIGN 2.7: upcasting happens on read).
"""

from __future__ import annotations

import sqlite3
import time
from typing import Literal

from twofold.errors import ConfigurationError

__all__ = [
    "COMPONENT",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "Synchronous",
    "connect_reader",
    "connect_writer",
    "migrate",
]

Synchronous = Literal["FULL", "NORMAL"]

COMPONENT = "event_store"

# Each entry is one schema version; append new ones, never edit a released one.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        # position is the rowid: assigned by the single writer under SQLite's write lock, so
        # positions become visible in commit order (DESIGN 2.4) and are never reused (rows
        # are never deleted).
        """
        CREATE TABLE events (
            position INTEGER PRIMARY KEY,
            event_id BLOB NOT NULL UNIQUE,
            stream_id TEXT NOT NULL,
            stream_version INTEGER NOT NULL,
            type TEXT NOT NULL,
            schema_version INTEGER NOT NULL,
            data BLOB NOT NULL,
            metadata BLOB NOT NULL,
            recorded_at INTEGER NOT NULL,
            UNIQUE (stream_id, stream_version)
        )
        """,
        """
        CREATE TABLE snapshots (
            stream_id TEXT PRIMARY KEY,
            aggregate_type TEXT NOT NULL,
            version INTEGER NOT NULL,
            schema_version INTEGER NOT NULL,
            state BLOB NOT NULL
        )
        """,
        """
        CREATE TABLE idempotency (
            key TEXT PRIMARY KEY,
            fingerprint TEXT NOT NULL,
            result BLOB NOT NULL,
            created_at INTEGER NOT NULL
        )
        """,
    ),
    # 2: idempotency keys expire; an index to find the old ones.
    ("CREATE INDEX idempotency_created_at ON idempotency (created_at)",),
    # 3: the store's identity (32 random hex digits), made once with it: read stores record
    # it, so that views built from another store are refused.
    (
        "CREATE TABLE store_identity (identity TEXT PRIMARY KEY)",
        "INSERT INTO store_identity VALUES (lower(hex(randomblob(16))))",
    ),
)

SCHEMA_VERSION = len(MIGRATIONS)


def _connect(path: str, busy_timeout: float) -> sqlite3.Connection:
    # isolation_level=None: the stores issue BEGIN/COMMIT themselves, nothing implicit.
    # timeout is SQLite's busy_timeout: how long to wait for another process's write lock.
    return sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, cached_statements=256)


def connect_writer(
    path: str, *, synchronous: Synchronous, busy_timeout: float
) -> sqlite3.Connection:
    """The one writing connection of a store: WAL, the chosen durability, schema up to date."""
    conn = _connect(path, busy_timeout)
    try:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise ConfigurationError(
                f"SQLite could not switch {path!r} to WAL mode (it is in {mode!r} mode); "
                "put the database on a local file system"
            )
        # FULL: the WAL is fsynced at every commit, so an acknowledged append survives power
        # loss. NORMAL: it survives a process crash, but the last commits may be lost if the
        # machine loses power.
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        migrate(conn)
        # From here on the writer waits for other processes' locks itself (Writer._begin),
        # so that it can answer finished work while it waits.
        conn.execute("PRAGMA busy_timeout = 0")
    except BaseException:
        conn.close()
        raise
    return conn


def connect_reader(path: str, *, busy_timeout: float) -> sqlite3.Connection:
    """A read-only connection: in WAL mode it reads a snapshot without waiting for writers."""
    conn = _connect(path, busy_timeout)
    conn.execute("PRAGMA query_only = 1")
    return conn


def migrate(conn: sqlite3.Connection) -> int:
    """Apply the missing migrations; return the schema version the file is at."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " component TEXT NOT NULL, version INTEGER NOT NULL, applied_at INTEGER NOT NULL,"
            " PRIMARY KEY (component, version))"
        )
        row = conn.execute(
            "SELECT coalesce(max(version), 0) FROM schema_migrations WHERE component = ?",
            (COMPONENT,),
        ).fetchone()
        current = int(row[0])
        if current > SCHEMA_VERSION:
            raise ConfigurationError(
                f"the event store schema is at version {current}, newer than this twofold "
                f"knows ({SCHEMA_VERSION}); upgrade twofold"
            )
        for version in range(current + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[version - 1]:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (component, version, applied_at) VALUES (?, ?, ?)",
                (COMPONENT, version, time.time_ns() // 1000),
            )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return SCHEMA_VERSION
