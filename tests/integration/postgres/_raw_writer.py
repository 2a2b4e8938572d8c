"""A writer that calls ``append_batch()`` inside a transaction it holds open on purpose.

Used by the visibility tests, in the test's process and as a separate process::

    python _raw_writer.py URL SCHEMA TRANSACTIONS SEED

prints one JSON line: the event ids it committed. Every transaction sleeps a random while
*inside* the transaction (after taking its positions, before committing), and about one in
ten rolls back, leaving a gap in the positions.
"""

from __future__ import annotations

import json
import random
import sys
import time
import uuid
from typing import Any

import psycopg
from psycopg import sql


def append_query(schema: str) -> sql.Composed:
    return sql.SQL(
        "SELECT ok, actual, e_pos FROM {}.append_batch(%s::text[], %s::bigint[],"
        " %s::integer[], %s::uuid[], %s::text[], %s::text[], %s::integer[], %s::bytea[],"
        " %s::bytea[])"
    ).format(sql.Identifier(schema))


def append_params(stream_id: str, count: int) -> tuple[list[uuid.UUID], tuple[Any, ...]]:
    """One append of ``count`` events to ``stream_id`` with expected version ANY."""
    ids = [uuid.uuid4() for _ in range(count)]
    return ids, (
        [stream_id],
        [-1],
        [count],
        ids,
        [stream_id] * count,
        ["Raw"] * count,
        [1] * count,
        [b"{}"] * count,
        [b"{}"] * count,
    )


def run(url: str, schema: str, transactions: int, seed: int) -> list[str]:
    rnd = random.Random(seed)
    query = append_query(schema)
    committed: list[str] = []
    with psycopg.connect(url) as conn:
        for _ in range(transactions):
            ids, params = append_params(f"raw-{seed}-{rnd.randrange(20)}", rnd.randint(1, 3))
            conn.execute(query, params)
            time.sleep(rnd.random() * 0.004)
            if rnd.random() < 0.1:
                conn.rollback()
            else:
                conn.commit()
                committed.extend(str(i) for i in ids)
    return committed


if __name__ == "__main__":
    url, schema, transactions, seed = sys.argv[1:5]
    print(json.dumps(run(url, schema, int(transactions), int(seed))))
