"""One projection batch's view transaction on PostgreSQL: reads through, writes behind.

Synchronous (psycopg ``Connection``): handlers are synchronous, and a batch runs on a thread
of its own. The caller owns the transaction::

    tx = PostgresViewTransaction(conn, schema.tables_for(projection, generation))
    with conn.transaction():
        apply(tx)        # handlers: tx.get / put / delete / find, tx.record
        tx.flush()       # one upsert and one delete statement per changed table
        ...              # the checkpoint, in the same transaction

Documents a batch reads or writes are kept in a dict for the length of the batch, so an
order touched by ten events of a batch is read once and written once; ``flush`` writes
every changed document with one ``INSERT ... SELECT FROM unnest(arrays) ON CONFLICT``
per table (one round trip, whatever the number of rows).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
import psycopg

from twofold.adapters.postgres.views_sql import index_value, query_param, upsert_sql
from twofold.application.records import RecordedEvent
from twofold.application.views import Collection, Document
from twofold.errors import ConfigurationError

__all__ = ["PostgresViewTransaction", "decode_document", "encode_document"]

_encode = msgspec.json.Encoder(decimal_format="string").encode
_decode = msgspec.json.Decoder().decode
_DELETED = object()


def encode_document(document: Document) -> str:
    """A document as JSON text, for a ``jsonb`` parameter."""
    return _encode(document).decode()


def decode_document(text: str | bytes) -> Document:
    document: Document = _decode(text)
    return document


class PostgresViewTransaction:
    """The ViewTransaction handed to projection handlers during one batch.

    ``tables`` maps each collection the projection declares to ``(table, declaration)``,
    where ``table`` is the schema-qualified SQL name of the generation being written
    (``ViewSchema.tables_for`` or ``views_sql.collection_table`` builds it). Nothing is
    written until ``flush``; call it inside the transaction, before the checkpoint.
    """

    __slots__ = ("_cache", "_conn", "_dirty", "_tables", "record")

    record: RecordedEvent

    def __init__(
        self, conn: psycopg.Connection[Any], tables: dict[str, tuple[str, Collection]]
    ) -> None:
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
        row = self._conn.execute(
            f"SELECT doc::text FROM {table} WHERE key = %s", (key,), prepare=True
        ).fetchone()
        if row is None:
            return None
        document = decode_document(row[0])
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
        args = []
        for field, value in where.items():
            kind = declared.indexes.get(field)
            if kind is None:
                raise ConfigurationError(
                    f"cannot find in {collection!r} by {field!r}: it is not indexed"
                )
            args.append(query_param(collection, field, kind, value))
        self._flush(collection)
        clause = " AND ".join(f"{field} = %s" for field in where) or "true"
        rows = self._conn.execute(
            f"SELECT key, doc::text FROM {table} WHERE {clause} ORDER BY key", args
        ).fetchall()
        found = []
        for key, raw in rows:
            cached = self._cache.get((collection, key))
            if cached is None:
                cached = decode_document(raw)
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
        table, declared = self._tables[collection]
        kinds = tuple(declared.indexes.values())
        fields = tuple(declared.indexes)
        upserted: list[str] = []
        documents: list[str] = []
        columns: list[list[Any]] = [[] for _ in fields]
        deleted: list[str] = []
        for key in sorted(keys):  # a stable order: concurrent writers lock rows alike
            document = self._cache[(collection, key)]
            if document is _DELETED:
                deleted.append(key)
                continue
            upserted.append(key)
            documents.append(encode_document(document))
            for column, field, kind in zip(columns, fields, kinds, strict=True):
                column.append(index_value(kind, document.get(field)))
        if deleted:
            self._conn.execute(f"DELETE FROM {table} WHERE key = ANY(%b::text[])", (deleted,))
        if upserted:
            self._conn.execute(upsert_sql(table, declared), (upserted, documents, *columns))
