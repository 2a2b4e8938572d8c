"""Table names and SQL for the SQLite read store, built from collection declarations.

Identifiers come only from validated declarations (lower-case identifiers), never from
query input; values always travel as parameters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from twofold.application.views import Collection, SortBy
from twofold.errors import ConfigurationError, QueryError

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


class ViewSchema:
    """Which projection owns which collections, and the SQL to read and write them."""

    def __init__(self) -> None:
        self._collections: dict[str, Collection] = {}
        self._owner: dict[str, str] = {}
        self._by_projection: dict[str, tuple[Collection, ...]] = {}
        self._get_sql: dict[str, str] = {}

    def register(self, projection: str, collections: Sequence[Collection]) -> None:
        for collection in collections:
            owner = self._owner.get(collection.name)
            if owner is not None and owner != projection:
                raise ConfigurationError(
                    f"collection {collection.name!r} belongs to projection {owner!r}; "
                    f"{projection!r} must use a collection of its own"
                )
            self._collections[collection.name] = collection
            self._owner[collection.name] = projection
            self._get_sql[collection.name] = (
                f"SELECT doc FROM {collection_table(collection.name, None)} WHERE key = ?"
            )
        self._by_projection[projection] = tuple(collections)

    def projections(self) -> list[str]:
        return sorted(self._by_projection)

    def collections(self, projection: str) -> tuple[Collection, ...]:
        return self._by_projection.get(projection, ())

    def collection(self, name: str) -> Collection:
        found = self._collections.get(name)
        if found is None:
            raise QueryError(
                f"no collection named {name!r}; known: {', '.join(sorted(self._collections))}"
            )
        return found

    def tables_for(self, projection: str, generation: int) -> dict[str, tuple[str, Collection]]:
        """The tables a projection's batch writes: collection name -> (table, declaration)."""
        return {
            c.name: (collection_table(c.name, generation), c)
            for c in self._by_projection.get(projection, ())
        }

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
        declared = self.collection(collection)
        fields = {"key", *declared.indexes}

        def check(field: str, purpose: str) -> str:
            if field not in fields:
                raise QueryError(
                    f"cannot {purpose} {collection!r} by {field!r}: it is not indexed; "
                    f"indexed fields: {', '.join(sorted(fields))}"
                )
            return field

        clauses: list[str] = []
        args: list[Any] = []
        for field, value in (where or {}).items():
            clauses.append(f"{check(field, 'filter')} = ?")
            args.append(value)
        for field, (low, high) in (between or {}).items():
            check(field, "filter")
            if low is not None:
                clauses.append(f"{field} >= ?")
                args.append(low)
            if high is not None:
                clauses.append(f"{field} <= ?")
                args.append(high)
        sql = f"SELECT {what} FROM {collection_table(collection, None)}"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        if order_by:
            terms = []
            for field, direction in order_by:
                if direction not in ("asc", "desc"):
                    raise QueryError(f"order direction must be 'asc' or 'desc', not {direction!r}")
                terms.append(f"{check(field, 'order')} {direction.upper()}")
            sql += " ORDER BY " + ", ".join(terms)
        if limit is not None or offset:
            if (limit is not None and limit < 0) or offset < 0:
                raise QueryError("limit and offset must be 0 or more")
            sql += " LIMIT ? OFFSET ?"
            args.extend((-1 if limit is None else limit, offset))
        return sql, args
