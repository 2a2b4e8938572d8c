"""One projection batch's view transaction on SQLite: reads through, writes behind.

Documents a batch reads or writes are kept in a dict for the length of the batch, so an
order touched by ten events of a batch is read once and written once; ``flush`` writes
every changed document with one ``executemany`` per table, just before the checkpoint.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import Any

import msgspec

from twofold.application.records import RecordedEvent
from twofold.application.views import Collection, Document
from twofold.errors import ConfigurationError

__all__ = ["SQLiteViewTransaction", "decode_record", "encode_record"]

_encode = msgspec.json.Encoder(decimal_format="string").encode
_decode = msgspec.json.Decoder().decode
_record_encoder = msgspec.msgpack.Encoder()
_record_decoder = msgspec.msgpack.Decoder(RecordedEvent)
_DELETED = object()


def encode_record(record: RecordedEvent) -> bytes:
    return _record_encoder.encode(record)


def decode_record(data: bytes) -> RecordedEvent:
    return _record_decoder.decode(data)


class SQLiteViewTransaction:
    """The ViewTransaction handed to projection handlers during one batch."""

    __slots__ = ("_cache", "_conn", "_dirty", "_tables", "record")

    record: RecordedEvent

    def __init__(self, conn: sqlite3.Connection, tables: dict[str, tuple[str, Collection]]) -> None:
        self._conn = conn
        self._tables = tables
        self._cache: dict[tuple[str, str], Any] = {}
        self._dirty: dict[str, set[str]] = {}

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
        row = self._conn.execute(f"SELECT doc FROM {table} WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        document: Document = _decode(row[0])
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
        self._flush(collection)
        clause = " AND ".join(f"{field} = ?" for field in where) or "1"
        rows = self._conn.execute(
            f"SELECT key, doc FROM {table} WHERE {clause} ORDER BY key", tuple(where.values())
        ).fetchall()
        found = []
        for key, raw in rows:
            cached = self._cache.get((collection, key))
            if cached is None:
                cached = _decode(raw)
                self._cache[(collection, key)] = cached
            found.append(cached)
        return found

    def flush(self) -> None:
        for collection in list(self._dirty):
            self._flush(collection)

    def _flush(self, collection: str) -> None:
        keys = self._dirty.pop(collection, None)
        if not keys:
            return
        table, declared = self._tables[collection]
        fields = tuple(declared.indexes)
        upserts: list[tuple[Any, ...]] = []
        deletes: list[tuple[str]] = []
        for key in keys:
            document = self._cache[(collection, key)]
            if document is _DELETED:
                deletes.append((key,))
            else:
                upserts.append((key, _encode(document), *(document.get(f) for f in fields)))
        if deletes:
            self._conn.executemany(f"DELETE FROM {table} WHERE key = ?", deletes)
        if upserts:
            marks = ", ".join("?" * (2 + len(fields)))
            self._conn.executemany(f"INSERT OR REPLACE INTO {table} VALUES ({marks})", upserts)
