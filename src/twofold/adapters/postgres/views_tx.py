"""One projection batch's view transaction on PostgreSQL: reads through, writes behind.

Synchronous (psycopg ``Connection``): handlers are synchronous, and a batch runs on a thread
of its own. The caller owns the transaction::

    tx = PostgresViewTransaction(conn, schema.tables_for(projection, generation))
    with conn.transaction():
        apply(tx)        # handlers: tx.get / put / delete / find, tx.record
        tx.flush()       # one upsert and one delete statement per changed table
        ...              # the checkpoint, in the same transaction

Documents are read through and written behind (``_view_tx``); ``flush`` writes a
collection's changed documents with one ``INSERT ... SELECT FROM unnest(arrays) ON
CONFLICT`` (one round trip, whatever the number of rows) and one DELETE.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
import psycopg

from twofold.adapters._view_tx import CachedViewTransaction
from twofold.adapters.postgres.views_sql import index_value, query_param, upsert_sql
from twofold.application.views import Collection, Document

__all__ = ["PostgresViewTransaction", "decode_document", "encode_document"]

_encode = msgspec.json.Encoder(decimal_format="string").encode
_decode = msgspec.json.Decoder().decode


def encode_document(document: Document) -> str:
    """A document as JSON text, for a ``jsonb`` parameter."""
    return _encode(document).decode()


def decode_document(text: str | bytes) -> Document:
    document: Document = _decode(text)
    return document


class PostgresViewTransaction(CachedViewTransaction):
    """The ViewTransaction on a synchronous psycopg connection (see ``_view_tx``).

    ``tables`` maps each collection the projection declares to ``(table, declaration)``,
    where ``table`` is the schema-qualified SQL name of the generation being written
    (``ViewSchema.tables_for`` or ``views_sql.collection_table`` builds it).
    """

    __slots__ = ("_conn",)

    def __init__(
        self, conn: psycopg.Connection[Any], tables: dict[str, tuple[str, Collection]]
    ) -> None:
        super().__init__(tables)
        self._conn = conn

    def _read_one(self, table: str, key: str) -> str | None:
        row = self._conn.execute(
            f"SELECT doc::text FROM {table} WHERE key = %s", (key,), prepare=True
        ).fetchone()
        return None if row is None else str(row[0])

    def _read_where(
        self, collection: str, table: str, declared: Collection, where: Mapping[str, Any]
    ) -> list[tuple[str, str]]:
        args = [
            query_param(collection, field, declared.indexes[field], value)
            for field, value in where.items()
        ]
        clause = " AND ".join(f"{field} = %s" for field in where) or "true"
        rows = self._conn.execute(
            f"SELECT key, doc::text FROM {table} WHERE {clause} ORDER BY key", args
        ).fetchall()
        return [(key, raw) for key, raw in rows]

    def _write(
        self,
        table: str,
        declared: Collection,
        upserts: list[tuple[str, Document]],
        deletes: list[str],
    ) -> None:
        kinds = tuple(declared.indexes.values())
        fields = tuple(declared.indexes)
        columns: list[list[Any]] = [[] for _ in fields]
        for _, document in upserts:
            for column, field, kind in zip(columns, fields, kinds, strict=True):
                column.append(index_value(kind, document.get(field)))
        if deletes:
            self._conn.execute(f"DELETE FROM {table} WHERE key = ANY(%b::text[])", (deletes,))
        if upserts:
            keys = [key for key, _ in upserts]
            documents = [encode_document(document) for _, document in upserts]
            self._conn.execute(upsert_sql(table, declared), (keys, documents, *columns))
