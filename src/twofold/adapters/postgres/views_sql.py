"""Table names and SQL for the PostgreSQL read store, built from collection declarations.

Identifiers come only from validated declarations (lower-case identifiers) and a checked
schema name, never from query input; values always travel as parameters.

Text columns (``key`` and ``str`` indexes) use the "C" collation: ordering is by code
point, the same on every server whatever its locale, and the same as SQLite's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from twofold.adapters._views import ViewRegistry, build_select
from twofold.application.views import Collection, IndexType, SortBy
from twofold.errors import QueryError

__all__ = [
    "ViewSchema",
    "active_view",
    "collection_table",
    "create_collection_sql",
    "index_value",
    "query_param",
    "upsert_sql",
]

_SQL_TYPES: dict[IndexType, str] = {
    str: 'text COLLATE "C"',
    int: "bigint",
    float: "double precision",
}
_ARRAY_TYPES: dict[IndexType, str] = {str: "text[]", int: "bigint[]", float: "float8[]"}
_INT64 = (-(2**63), 2**63 - 1)


def collection_table(schema: str, name: str, generation: int) -> str:
    """``"shop".v_orders_g3``: generation 3 of collection ``orders``, schema-qualified."""
    return f'"{schema}".v_{name}_g{generation}'


def active_view(schema: str, name: str) -> str:
    """``"shop".v_orders``: the SQL view naming the active generation's table."""
    return f'"{schema}".v_{name}'


def create_collection_sql(schema: str, collection: Collection, generation: int) -> list[str]:
    table = collection_table(schema, collection.name, generation)
    columns = "".join(f", {f} {_SQL_TYPES[t]}" for f, t in collection.indexes.items())
    statements = [
        f'CREATE TABLE IF NOT EXISTS {table} (key text COLLATE "C" PRIMARY KEY, '
        f"doc jsonb NOT NULL{columns})"
    ]
    for field in collection.indexes:
        statements.append(
            f"CREATE INDEX IF NOT EXISTS v_{collection.name}_g{generation}_{field} "
            f"ON {table} ({field}, key)"
        )
    return statements


def upsert_sql(table: str, collection: Collection) -> str:
    """One statement upserting many rows, given as one array parameter per column.

    The arrays travel in binary (``%b``): psycopg escapes text arrays with a regular
    expression per element, which costs more than the statement itself for JSON documents.
    """
    fields = tuple(collection.indexes)
    names = ", ".join(("key", "doc", *fields))
    arrays = ", ".join(
        (
            "%b::text[]",
            "%b::jsonb[]",
            *(f"%b::{_ARRAY_TYPES[collection.indexes[f]]}" for f in fields),
        )
    )
    updates = ", ".join(f"{f} = EXCLUDED.{f}" for f in ("doc", *fields))
    return (
        f"INSERT INTO {table} ({names}) SELECT * FROM unnest({arrays}) "
        f"ON CONFLICT (key) DO UPDATE SET {updates}"
    )


def index_value(kind: IndexType, value: Any) -> Any:
    """The column value for a document field: of the index's type, or None (not indexed).

    Integral floats go into int indexes and ints into float indexes; any other value of the
    wrong type (or an int outside 64 bits) is stored as NULL, so it matches no filter.
    """
    if value is None or isinstance(value, bool):
        return None
    if kind is str:
        return value if isinstance(value, str) else None
    if kind is int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, int) and _INT64[0] <= value <= _INT64[1]:
            return value
        return None
    if isinstance(value, int | float):
        return float(value)
    return None


def query_param(collection: str, field: str, kind: IndexType | None, value: Any) -> Any:
    """A query parameter for ``field``: checked against the column's type."""
    if kind is None:  # the key
        if not isinstance(value, str):
            raise QueryError(f"key of {collection!r} is a string, not {value!r}")
        return value
    coerced = index_value(kind, value)
    if coerced is None:
        raise QueryError(
            f"{collection}.{field} is indexed as {kind.__name__}; cannot compare it with {value!r}"
        )
    return coerced


class ViewSchema(ViewRegistry):
    """Which projection owns which collections, and the SQL to read them on PostgreSQL."""

    def __init__(self, schema: str) -> None:
        super().__init__()
        self.schema = schema
        self._get_sql: dict[str, str] = {}

    def registered(self, collection: Collection) -> None:
        self._get_sql[collection.name] = (
            f"SELECT doc::text FROM {active_view(self.schema, collection.name)} WHERE key = %s"
        )

    def table(self, collection: str, generation: int) -> str:
        return collection_table(self.schema, collection, generation)

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
            source=active_view(self.schema, collection),
            what=what,
            where=where,
            between=between,
            order_by=order_by,
            limit=limit,
            offset=offset,
            mark="%s",
            param=lambda field, kind, value: query_param(collection, field, kind, value),
            sort_term=_sort_term,
        )


def _sort_term(field: str, direction: str) -> str:
    # NULLs (documents without the field) sort as SQLite does: first when ascending.
    return f"{field} {direction} NULLS {'FIRST' if direction == 'ASC' else 'LAST'}"
