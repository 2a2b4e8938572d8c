"""What the SQL view transactions share: reads through, writes behind.

Documents a batch reads or writes are kept in a dict for the length of the batch, so an
order touched by ten events of a batch is read once and written once; ``flush`` writes each
changed collection's documents at once, just before the checkpoint. A store's subclass says
how to read one document, how to read by indexed fields, and how to write a collection's
changes (``_read_one``, ``_read_where``, ``_write``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from twofold.application.views import Collection, Document
from twofold.errors import ConfigurationError
from twofold.records import RecordedEvent

__all__ = ["CachedViewTransaction"]

_decode = msgspec.json.Decoder().decode
_DELETED = object()


class CachedViewTransaction:
    """The ViewTransaction handed to projection handlers during one batch.

    ``tables`` maps each collection the projection declares to ``(table, declaration)``,
    the SQL name of the generation being written. Nothing is written until ``flush``; the
    caller runs it inside the batch's transaction, before the checkpoint.
    """

    __slots__ = ("_cache", "_dirty", "_tables", "record")

    record: RecordedEvent

    def __init__(self, tables: dict[str, tuple[str, Collection]]) -> None:
        self._tables = tables
        self._cache: dict[tuple[str, str], Any] = {}
        self._dirty: dict[str, set[str]] = {}

    # -- what a store says ----------------------------------------------------------------

    def _read_one(self, table: str, key: str) -> str | bytes | None:
        """The stored JSON of ``key``, or None."""
        raise NotImplementedError

    def _read_where(
        self, collection: str, table: str, declared: Collection, where: Mapping[str, Any]
    ) -> Sequence[tuple[str, str | bytes]]:
        """(key, stored JSON) of the documents whose indexed fields equal ``where``, by key."""
        raise NotImplementedError

    def _write(
        self,
        table: str,
        declared: Collection,
        upserts: list[tuple[str, Document]],
        deletes: list[str],
    ) -> None:
        """Store ``upserts`` (key, document) and remove ``deletes``; keys come sorted."""
        raise NotImplementedError

    # -- the ViewTransaction --------------------------------------------------------------

    def _table(self, collection: str) -> tuple[str, Collection]:
        found = self._tables.get(collection)
        if found is None:
            raise ConfigurationError(
                f"collection {collection!r} is not one of this projection's collections "
                f"({', '.join(sorted(self._tables))}); declare it in `collections`"
            )
        return found

    def get(self, collection: str, key: str) -> Document | None:
        cached = self._cache.get((collection, key), None)
        if cached is not None:
            return None if cached is _DELETED else cached
        table, _ = self._table(collection)
        raw = self._read_one(table, key)
        if raw is None:
            return None
        document: Document = _decode(raw)
        self._cache[(collection, key)] = document
        return document

    def put(self, collection: str, key: str, document: Document) -> None:
        self._table(collection)
        self._cache[(collection, key)] = document
        self._dirty.setdefault(collection, set()).add(key)

    def delete(self, collection: str, key: str) -> None:
        self._table(collection)
        self._cache[(collection, key)] = _DELETED
        self._dirty.setdefault(collection, set()).add(key)

    def find(self, collection: str, where: Mapping[str, Any]) -> list[Document]:
        table, declared = self._table(collection)
        for field in where:
            if field not in declared.indexes:
                raise ConfigurationError(
                    f"cannot find in {collection!r} by {field!r}: it is not indexed"
                )
        self._flush(collection)  # what this batch changed counts
        found = []
        for key, raw in self._read_where(collection, table, declared, where):
            cached = self._cache.get((collection, key))
            if cached is None:
                cached = _decode(raw)
                self._cache[(collection, key)] = cached
            found.append(cached)
        return found

    def flush(self) -> None:
        """Write every changed document; the caller commits (or rolls back) after."""
        for collection in list(self._dirty):
            self._flush(collection)

    def _flush(self, collection: str) -> None:
        keys = self._dirty.pop(collection, None)
        if not keys:
            return
        upserts: list[tuple[str, Document]] = []
        deletes: list[str] = []
        for key in sorted(keys):  # a stable order: concurrent writers lock rows alike
            document = self._cache[(collection, key)]
            if document is _DELETED:
                deletes.append(key)
            else:
                upserts.append((key, document))
        table, declared = self._tables[collection]
        self._write(table, declared, upserts, deletes)
