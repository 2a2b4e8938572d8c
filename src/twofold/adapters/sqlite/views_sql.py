"""Table names and SQL for the SQLite read store, built from collection declarations.

Identifiers come only from validated declarations (lower-case identifiers), never from
query input; values always travel as parameters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from twofold.adapters._views import ViewRegistry, build_select
from twofold.application.views import Collection, SortBy

__all__ = ["ViewSchema", "collection_table", "create_collection_sql", "from_us", "to_us"]

_SQL_TYPES = {str: "TEXT", int: "INTEGER", float: "REAL"}


def collection_table(name: str, generation: int | None) -> str:
    """``v_orders`` is the active copy (a SQL view); ``v_orders_g3`` is generation 3."""
    return f"v_{name}" if generation is None else f"v_{name}_g{generation}"


def create_collection_sql(collection: Collection, generation: int) -> list[str]:
    table = collection_table(collection.name, generation)
    columns = "".join(f", {f} {_SQL_TYPES[t]}" for f, t in collection.indexes.items())
    statements = [
        f"CREATE TABLE IF NOT EXISTS {table} (key TEXT PRIMARY KEY, doc BLOB NOT NULL"
        f"{columns}) WITHOUT ROWID"
    ]
    for field in collection.indexes:
        statements.append(f"CREATE INDEX IF NOT EXISTS {table}_{field} ON {table} ({field}, key)")
    return statements


def to_us(moment: datetime | None) -> int | None:
    """A datetime as integer microseconds since the epoch (``None`` for now is not None)."""
    if moment is None:
        moment = datetime.now(UTC)
    return int(moment.timestamp() * 1_000_000)


def from_us(value: int | None) -> datetime | None:
    if value is None:
        return None
    return datetime.fromtimestamp(value / 1_000_000, UTC)


class ViewSchema(ViewRegistry):
    """Which projection owns which collections, and the SQL to read them on SQLite."""

    def __init__(self) -> None:
        super().__init__()
        self._get_sql: dict[str, str] = {}

    def registered(self, collection: Collection) -> None:
        self._get_sql[collection.name] = (
            f"SELECT doc FROM {collection_table(collection.name, None)} WHERE key = ?"
        )

    def table(self, collection: str, generation: int) -> str:
        return collection_table(collection, generation)

    def get_sql(self, collection: str) -> str:
        sql = self._get_sql.get(collection)
        if sql is None:
            self.collection(collection)
            raise AssertionError("unreachable")  # pragma: no cover
        return sql

    def select_sql(
        self,
        collection: str,
        what: str,
        where: Mapping[str, Any] | None,
        between: Mapping[str, tuple[Any, Any]] | None,
        order_by: Sequence[SortBy],
        limit: int | None,
        offset: int,
    ) -> tuple[str, list[Any]]:
        return build_select(
            self.collection(collection),
            source=collection_table(collection, None),
            what=what,
            where=where,
            between=between,
            order_by=order_by,
            limit=limit,
            offset=offset,
            mark="?",
            no_limit=-1,  # SQLite's "no limit" beside an OFFSET
        )
