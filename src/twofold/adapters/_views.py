"""What the SQL read stores share: who owns which collection, and how a query becomes SQL.

Identifiers come only from validated declarations (lower-case identifiers), never from
query input; values always travel as parameters. Each backend says how a table is named,
how a parameter is marked, how a value is checked and how a sort term is written.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from twofold.application.views import Collection, IndexType, SortBy
from twofold.errors import ConfigurationError, QueryError

__all__ = ["ViewRegistry", "build_select"]


class ViewRegistry:
    """Which projection owns which collections; a collection has exactly one owner."""

    def __init__(self) -> None:
        self._collections: dict[str, Collection] = {}
        self._owner: dict[str, str] = {}
        self._by_projection: dict[str, tuple[Collection, ...]] = {}

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
            self.registered(collection)
        self._by_projection[projection] = tuple(collections)

    def registered(self, collection: Collection) -> None:
        """Called for each collection registered (to prepare its SQL)."""

    def table(self, collection: str, generation: int) -> str:
        raise NotImplementedError

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
            c.name: (self.table(c.name, generation), c)
            for c in self._by_projection.get(projection, ())
        }


def build_select(
    declared: Collection,
    *,
    source: str,
    what: str,
    where: Mapping[str, Any] | None,
    between: Mapping[str, tuple[Any, Any]] | None,
    order_by: Sequence[SortBy],
    limit: int | None,
    offset: int,
    mark: str,
    no_limit: Any = None,
    param: Callable[[str, IndexType | None, Any], Any] = lambda field, kind, value: value,
    sort_term: Callable[[str, str], str] = lambda field, direction: f"{field} {direction}",
) -> tuple[str, list[Any]]:
    """SELECT ``what`` FROM ``source``: equality on ``where``, inclusive ``between`` ranges
    (either end may be None), ``order_by`` and paging, on indexed fields and ``key`` only."""
    name = declared.name

    def check(field: str, purpose: str) -> IndexType | None:
        if field != "key" and field not in declared.indexes:
            raise QueryError(
                f"cannot {purpose} {name!r} by {field!r}: it is not indexed; "
                f"indexed fields: {', '.join(sorted({'key', *declared.indexes}))}"
            )
        return declared.indexes.get(field)

    clauses: list[str] = []
    args: list[Any] = []
    for field, value in (where or {}).items():
        kind = check(field, "filter")
        clauses.append(f"{field} = {mark}")
        args.append(param(field, kind, value))
    for field, (low, high) in (between or {}).items():
        kind = check(field, "filter")
        if low is not None:
            clauses.append(f"{field} >= {mark}")
            args.append(param(field, kind, low))
        if high is not None:
            clauses.append(f"{field} <= {mark}")
            args.append(param(field, kind, high))
    sql = f"SELECT {what} FROM {source}"
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    if order_by:
        terms = []
        for field, direction in order_by:
            if direction not in ("asc", "desc"):
                raise QueryError(f"order direction must be 'asc' or 'desc', not {direction!r}")
            check(field, "order")
            terms.append(sort_term(field, direction.upper()))
        sql += " ORDER BY " + ", ".join(terms)
    if limit is not None or offset:
        if (limit is not None and limit < 0) or offset < 0:
            raise QueryError("limit and offset must be 0 or more")
        sql += f" LIMIT {mark} OFFSET {mark}"
        args.extend((no_limit if limit is None else limit, offset))
    return sql, args
