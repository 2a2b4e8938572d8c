"""The batch of one append, the common case, as one plain ``INSERT`` at the libpq level.

A process with one writer in flight sends batches of exactly one append, and then the
client's CPU per append decides the throughput. So this path skips what only a batch of
many needs:

- a plain ``INSERT ... SELECT ... RETURNING`` with the version check in its ``WHERE``
  (no plpgsql: about a third less server time per append than ``append_batch()``);
- prepared once per connection and sent with libpq's ``PQexecPrepared``, parameters and
  results in binary, encoded and decoded here (a few microseconds, against tens through
  the general adaptation machinery).

The statement keeps the readers' invariant (``_horizon``): its ``WHERE`` announces the
transaction as an appender (``_horizon.announcement``, which also gives it its xid), and a
row's position (``nextval`` in the target list) is only computed for rows that passed the
``WHERE``, so the announcement comes first. A version mismatch inserts nothing and returns
no row; the caller then asks for the actual version.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import pq, sql

from twofold.adapters.postgres._arrays import bytea_array, int_array, text_array, uuid_array
from twofold.adapters.postgres._horizon import announcement
from twofold.records import ExpectedVersion, NewEvent, StreamState

__all__ = [
    "Row",
    "SingleAppend",
    "check_result",
    "decode_rows",
    "encode_append",
    "expected_code",
    "statements",
]

_OID_INT4, _OID_INT8, _OID_TEXT, _OID_BYTEA, _OID_UUID = 23, 20, 25, 17, 2950
_OID_INT4_ARRAY, _OID_TEXT_ARRAY, _OID_BYTEA_ARRAY, _OID_UUID_ARRAY = 1007, 1009, 1001, 2951
_I4 = struct.Struct("!i")
_I8 = struct.Struct("!q")
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)

_CHECK = (
    # -1: ANY, -2: STREAM_EXISTS, otherwise the exact version (0: NO_STREAM).
    "WHERE CASE WHEN $7 = -1 THEN true WHEN $7 = -2 THEN cur.v > 0 ELSE cur.v = $7 END"
    " AND {announce} IS NOT NULL"
)
_CURRENT = (
    "(SELECT coalesce(max(stream_version), 0) AS v FROM {s}.events WHERE stream_id = $2) AS cur"
)
_ONE = (
    "INSERT INTO {s}.events AS e (position, event_id, stream_id, stream_version, type,"
    " schema_version, data, metadata)"
    " SELECT nextval({seq}), $1, $2, cur.v + 1, $3, $4, $5, $6 FROM "
    + _CURRENT
    + " "
    + _CHECK
    + " RETURNING e.position, e.stream_version, e.recorded_at"
)
# One event whose stream is known to be at version $7 or beyond (this store wrote or read
# that version: versions never go away), or $7 = 0: no read, the unique index on
# (stream_id, stream_version) alone refuses it when the stream has moved on (an error, and
# the writer looks again with _ONE). As in every append, the announcement comes before the
# position.
_KNOWN = (
    "INSERT INTO {s}.events AS e (position, event_id, stream_id, stream_version, type,"
    " schema_version, data, metadata)"
    " VALUES ((SELECT nextval({seq}) WHERE {announce} IS NOT NULL),"
    " $1, $2, ($7 + 1)::integer, $3, $4, $5, $6)"
    " RETURNING e.position, e.stream_version, e.recorded_at"
)
_MANY = (
    "INSERT INTO {s}.events AS e (position, event_id, stream_id, stream_version, type,"
    " schema_version, data, metadata)"
    " SELECT nextval({seq}), u.id, $2, cur.v + u.n, u.type, u.sv, u.data, u.meta FROM "
    + _CURRENT
    + " CROSS JOIN unnest($1::uuid[], $3::text[], $4::integer[], $5::bytea[], $6::bytea[])"
    " WITH ORDINALITY AS u(id, type, sv, data, meta, n) "
    + _CHECK
    + " RETURNING e.position, e.stream_version, e.recorded_at"
)
_VERSION = "SELECT coalesce(max(stream_version), 0) FROM {s}.events WHERE stream_id = $1"

# One row of RETURNING: (position, stream_version, recorded_at).
Row = tuple[int, int, datetime]
_BINARY = (1, 1, 1, 1, 1, 1, 1)
_ARRAYS = (0, 1, 0, 0, 0, 0, 1)  # the arrays as text (_arrays), the rest binary


def expected_code(expected: ExpectedVersion) -> int:
    """The encoding the statements read: exact versions as they are, states as negatives."""
    if expected is StreamState.ANY:
        return -1
    if expected is StreamState.STREAM_EXISTS:
        return -2
    if expected is StreamState.NO_STREAM:
        return 0
    assert isinstance(expected, int)
    return expected


def statements(
    schema: sql.Identifier, context: psycopg.abc.AdaptContext
) -> list[tuple[bytes, bytes, tuple[int, ...]]]:
    """(name, query, parameter types) of each statement to prepare on a connection."""
    seq = sql.Literal(schema.as_string(context) + ".event_position")
    announce = announcement(schema, context)
    return [
        (
            name,
            sql.SQL(template).format(s=schema, seq=seq, announce=announce).as_bytes(context),
            oids,
        )
        for name, template, oids in (
            (b"twofold_append_one", _ONE, (_OID_UUID, _OID_TEXT, _OID_TEXT, _OID_INT4,
                                           _OID_BYTEA, _OID_BYTEA, _OID_INT8)),
            (b"twofold_append_known", _KNOWN, (_OID_UUID, _OID_TEXT, _OID_TEXT, _OID_INT4,
                                               _OID_BYTEA, _OID_BYTEA, _OID_INT8)),
            (b"twofold_append_many", _MANY, (_OID_UUID_ARRAY, _OID_TEXT, _OID_TEXT_ARRAY,
                                             _OID_INT4_ARRAY, _OID_BYTEA_ARRAY,
                                             _OID_BYTEA_ARRAY, _OID_INT8)),
            (b"twofold_version", _VERSION, (_OID_TEXT,)),
        )
    ]  # fmt: skip


def encode_append(
    stream_id: str, events: Sequence[NewEvent], expected: int, *, known: bool = False
) -> tuple[bytes, list[bytes], tuple[int, ...]]:
    """(statement name, parameters, their formats) for one append; ``known``: the stream
    is known to be at version ``expected`` or beyond (see ``_KNOWN``)."""
    stream = stream_id.encode()
    if len(events) == 1:
        event = events[0]
        params = [
            event.event_id.bytes,
            stream,
            event.type.encode(),
            _I4.pack(event.schema_version),
            event.data,
            event.metadata,
            _I8.pack(expected),
        ]
        name = b"twofold_append_known" if known and expected >= 0 else b"twofold_append_one"
        return name, params, _BINARY
    params = [
        uuid_array(e.event_id for e in events).encode(),
        stream,
        text_array(e.type for e in events).encode(),
        int_array(e.schema_version for e in events).encode(),
        bytea_array(e.data for e in events).encode(),
        bytea_array(e.metadata for e in events).encode(),
        _I8.pack(expected),
    ]
    return b"twofold_append_many", params, _ARRAYS


def decode_rows(result: pq.abc.PGresult) -> list[Row]:
    """The RETURNING rows (binary), in stream version order."""
    rows = [
        (
            _I8.unpack(_value(result, row, 0))[0],
            _I4.unpack(_value(result, row, 1))[0],
            _PG_EPOCH + timedelta(microseconds=_I8.unpack(_value(result, row, 2))[0]),
        )
        for row in range(result.ntuples)
    ]
    rows.sort(key=lambda written: written[1])  # RETURNING promises no order
    return rows


class SingleAppend:
    """The statements on the writer thread's connection; ``forget`` after a reconnect."""

    def __init__(self, schema: sql.Identifier) -> None:
        self._schema = schema
        self._prepared: object = None  # the psycopg connection they were prepared on

    def prepare(self, conn: psycopg.Connection[Any]) -> None:
        if self._prepared is conn:
            return
        for name, query, oids in statements(self._schema, conn):
            check_result(conn, conn.pgconn.prepare(name, query, oids))
        self._prepared = conn

    def forget(self) -> None:
        self._prepared = None

    def append(
        self,
        conn: psycopg.Connection[Any],
        stream_id: str,
        events: Sequence[NewEvent],
        expected: int,
    ) -> list[Row]:
        """Insert the append's events; no rows when the stream's version did not match."""
        self.prepare(conn)
        name, params, formats = encode_append(stream_id, events, expected)
        return decode_rows(self._execute(conn, name, params, formats))

    def version(self, conn: psycopg.Connection[Any], stream_id: str) -> int:
        self.prepare(conn)
        result = self._execute(conn, b"twofold_version", [stream_id.encode()], (1,))
        return int(_I4.unpack(_value(result, 0, 0))[0])

    def _execute(
        self,
        conn: psycopg.Connection[Any],
        name: bytes,
        params: Sequence[bytes],
        formats: Sequence[int],
    ) -> pq.abc.PGresult:
        result = conn.pgconn.exec_prepared(name, params, formats, 1)
        if result.status == pq.ExecStatus.FATAL_ERROR and _gone(result):
            # psycopg deallocates every prepared statement of its connection after a
            # rollback or a DROP (DEALLOCATE ALL), ours included: prepare them again. Inside
            # a transaction the error aborted it, so the caller tries the batch again.
            self._prepared = None
            if conn.pgconn.transaction_status == pq.TransactionStatus.IDLE:
                self.prepare(conn)
                result = conn.pgconn.exec_prepared(name, params, formats, 1)
        check_result(conn, result)
        return result


def _gone(result: pq.abc.PGresult) -> bool:
    return result.error_field(pq.DiagnosticField.SQLSTATE) == b"26000"


def _value(result: pq.abc.PGresult, row: int, column: int) -> bytes:
    value = result.get_value(row, column)
    assert value is not None
    return value


def check_result(conn: psycopg.Connection[Any], result: pq.abc.PGresult) -> None:
    """Raise what psycopg would have raised for a failed statement."""
    if result.status in (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK):
        return
    if conn.pgconn.status != pq.ConnStatus.OK:
        message = conn.pgconn.get_error_message() or "the connection was lost"
        raise psycopg.OperationalError(f"consuming input failed: {message}")
    raise psycopg.errors.error_from_result(result, encoding=conn.info.encoding)
