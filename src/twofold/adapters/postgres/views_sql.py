"""Table names and SQL for the PostgreSQL read store, built from collection declarations.

Identifiers come only from validated declarations (lower-case identifiers) and a checked
schema name, never from query input; values always travel as parameters.

Text columns (``key`` and ``str`` indexes) use the "C" collation: ordering is by code
point, the same on every server whatever its locale, and the same as SQLite's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from twofold.application.views import Collection, IndexType, SortBy
from twofold.errors import ConfigurationError, QueryError

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


class ViewSchema:
    """Which projection owns which collections, and the SQL to read and write them."""

    def __init__(self, schema: str) -> None:
        self.schema = schema
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
                f"SELECT doc::text FROM {active_view(self.schema, collection.name)} WHERE key = %s"
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
            c.name: (collection_table(self.schema, c.name, generation), c)
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

        def check(field: str, purpose: str) -> IndexType | None:
            if field != "key" and field not in declared.indexes:
                raise QueryError(
                    f"cannot {purpose} {collection!r} by {field!r}: it is not indexed; "
                    f"indexed fields: {', '.join(sorted({'key', *declared.indexes}))}"
                )
            return declared.indexes.get(field)

        clauses: list[str] = []
        args: list[Any] = []
        for field, value in (where or {}).items():
            kind = check(field, "filter")
            clauses.append(f"{field} = %s")
            args.append(query_param(collection, field, kind, value))
        for field, (low, high) in (between or {}).items():
            kind = check(field, "filter")
            if low is not None:
                clauses.append(f"{field} >= %s")
                args.append(query_param(collection, field, kind, low))
            if high is not None:
                clauses.append(f"{field} <= %s")
                args.append(query_param(collection, field, kind, high))
        sql = f"SELECT {what} FROM {active_view(self.schema, collection)}"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        if order_by:
            terms = []
            for field, direction in order_by:
                if direction not in ("asc", "desc"):
                    raise QueryError(f"order direction must be 'asc' or 'desc', not {direction!r}")
                check(field, "order")
                # NULLs (documents without the field) sort as SQLite does: first when ascending.
                nulls = "FIRST" if direction == "asc" else "LAST"
                terms.append(f"{field} {direction.upper()} NULLS {nulls}")
            sql += " ORDER BY " + ", ".join(terms)
        if limit is not None or offset:
            if (limit is not None and limit < 0) or offset < 0:
                raise QueryError("limit and offset must be 0 or more")
            sql += " LIMIT %s OFFSET %s"
            args.extend((limit, offset))
        return sql, args
