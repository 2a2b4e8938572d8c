"""One projection batch's view transaction on SQLite (``_view_tx``): ``flush`` writes a
collection's changed documents with one ``executemany`` per table."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import Any

import msgspec

from twofold.adapters._view_tx import CachedViewTransaction
from twofold.application.views import Collection, Document
from twofold.records import RecordedEvent

__all__ = ["SQLiteViewTransaction", "decode_record", "encode_record"]

_encode = msgspec.json.Encoder(decimal_format="string").encode
_record_encoder = msgspec.msgpack.Encoder()
_record_decoder = msgspec.msgpack.Decoder(RecordedEvent)


def encode_record(record: RecordedEvent) -> bytes:
    return _record_encoder.encode(record)


def decode_record(data: bytes) -> RecordedEvent:
    return _record_decoder.decode(data)


class SQLiteViewTransaction(CachedViewTransaction):
    """The ViewTransaction on a SQLite connection (see ``_view_tx``)."""

    __slots__ = ("_conn",)

    def __init__(self, conn: sqlite3.Connection, tables: dict[str, tuple[str, Collection]]) -> None:
        super().__init__(tables)
        self._conn = conn

    def _read_one(self, table: str, key: str) -> bytes | None:
        row = self._conn.execute(f"SELECT doc FROM {table} WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def _read_where(
        self, collection: str, table: str, declared: Collection, where: Mapping[str, Any]
    ) -> list[tuple[str, bytes]]:
        clause = " AND ".join(f"{field} = ?" for field in where) or "1"
        rows = self._conn.execute(
            f"SELECT key, doc FROM {table} WHERE {clause} ORDER BY key", tuple(where.values())
        ).fetchall()
        return [(key, bytes(raw)) for key, raw in rows]

    def _write(
        self,
        table: str,
        declared: Collection,
        upserts: list[tuple[str, Document]],
        deletes: list[str],
    ) -> None:
        fields = tuple(declared.indexes)
        if deletes:
            self._conn.executemany(f"DELETE FROM {table} WHERE key = ?", [(k,) for k in deletes])
        if upserts:
            marks = ", ".join("?" * (2 + len(fields)))
            self._conn.executemany(
                f"INSERT OR REPLACE INTO {table} VALUES ({marks})",
                [(key, _encode(doc), *(doc.get(f) for f in fields)) for key, doc in upserts],
            )
