"""The shop on PostgreSQL, for ``bench_postgres.py``: commands through the CommandBus, and
the ``orders`` projection's rebuild against bare psycopg doing the same work.

- ``twofold.pg.create_order.c1`` / ``.c16``: create-order commands/s through the
  CommandBus with 1 and 16 clients (closed loop), events and views in PostgreSQL,
  projections off (the write side alone, as in bench_core); ``.c16.cpu_us``: the CPU
  time this process spent per command meanwhile (all its threads), which a shared
  machine's load moves much less than the rate.
- ``twofold.pg.rebuild.orders``: ``App.rebuild("orders")`` over a log of >= 20k events
  (60% orders created, 40% shipped or cancelled): events/s.
- ``bare.pg.rebuild``: bare psycopg, what the projection does by hand: read the log 500
  events at a time, decode, build the same documents, and write each batch's changed
  documents with one ``executemany`` per table plus the checkpoint, in one transaction.
  The documents are checked equal to twofold's afterwards.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import msgspec
import psycopg
from _common import Report, stopwatch
from bench_core import _timestamp, create_order, drive, seed_shop, ship_or_cancel

from twofold import Settings, bootstrap
from twofold.examples import shop

__all__ = ["ViewSizes", "bench_views"]

_decode = msgspec.json.decode
_encode = msgspec.json.Encoder(decimal_format="string").encode
_CENTS = Decimal("0.01")
CLIENTS = 16


@dataclass(frozen=True)
class ViewSizes:
    create_1: int
    create_16: int
    log_events: int


FULL_VIEWS = ViewSizes(create_1=400, create_16=3200, log_events=20_000)
QUICK_VIEWS = ViewSizes(create_1=50, create_16=400, log_events=3000)


async def bench_views(url: str, sizes: ViewSizes, report: Report) -> None:
    schema = f"bench_views_{uuid.uuid4().hex[:8]}"
    store = f"{url}?schema={schema}"
    app = await bootstrap(
        shop.SERVICE, Settings(event_store=store, read_store=store, projections="off")
    )
    try:
        async with app:
            await seed_shop(app)
            n1, n16 = sizes.create_1, sizes.create_16
            rate = await drive(app.dispatch, [create_order(i) for i in range(n1)], 1)
            report.add("twofold.pg.create_order.c1", rate, "cmd/s")
            creates = [create_order(i) for i in range(n1, n1 + n16)]
            cpu = time.process_time()
            rate = await drive(app.dispatch, creates, CLIENTS)
            cpu = time.process_time() - cpu
            report.add("twofold.pg.create_order.c16", rate, "cmd/s")
            report.add("twofold.pg.create_order.c16.cpu_us", cpu / n16 * 1e6, "µs")
            # Fill the log to its size (not measured): 60% created, 40% changed.
            orders = max(n1 + n16, int(sizes.log_events * 0.6) + 1)
            more = [create_order(i) for i in range(n1 + n16, orders)]
            await drive(app.dispatch, more, 32)
            changes = [ship_or_cancel(i) for i in range(sizes.log_events - orders)]
            await drive(app.dispatch, changes, 32)
            head = await app.event_store.head_position()
            with stopwatch() as elapsed:
                await app.rebuild("orders")
            report.add("twofold.pg.rebuild.orders", head / elapsed[0], "events/s",
                       ratio_vs="bare.pg.rebuild", note=f"{head} events")  # fmt: skip
            bare_schema = f"{schema}_bare"
            try:
                rate = await asyncio.to_thread(bare_rebuild, url, schema, bare_schema)
                report.add("bare.pg.rebuild", rate, "events/s", note=f"{head} events")
                same_documents(url, schema, bare_schema)
            finally:
                _drop(url, bare_schema)
    finally:
        _drop(url, schema)


def _drop(url: str, schema: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def same_documents(url: str, schema: str, bare: str) -> None:
    """The bare rebuild must have built exactly the documents twofold did."""
    with psycopg.connect(url) as conn:
        for ours, theirs in (("v_orders", "orders"), ("v_customer_statistics", "statistics")):
            mine: dict[str, Any] = dict(
                conn.execute(f'SELECT key, doc FROM "{schema}".{ours}').fetchall()
            )
            other: dict[str, Any] = dict(
                conn.execute(f'SELECT key, doc FROM "{bare}".{theirs}').fetchall()
            )
            assert mine == other, f"{ours}: the bare rebuild built other documents"


TABLES = {"orders": ("customer_id", "status", "created_at"), "statistics": (),
          "customers": (), "products": ()}  # fmt: skip


class _Batch:
    """One batch's documents: read through, written behind (as any careful code would)."""

    def __init__(self, conn: psycopg.Connection[Any], schema: str) -> None:
        self.conn = conn
        self.schema = schema
        self.cache: dict[str, dict[str, Any]] = {t: {} for t in TABLES}
        self.dirty: dict[str, set[str]] = {t: set() for t in TABLES}

    def get(self, table: str, key: str) -> Any:
        found = self.cache[table].get(key)
        if found is None:
            row = self.conn.execute(
                f'SELECT doc::text FROM "{self.schema}".{table} WHERE key = %s', (key,)
            ).fetchone()
            if row is not None:
                found = self.cache[table][key] = _decode(row[0])
        return found

    def put(self, table: str, key: str, doc: dict[str, Any]) -> None:
        self.cache[table][key] = doc
        self.dirty[table].add(key)

    def write(self) -> None:
        for table, fields in TABLES.items():
            if not self.dirty[table]:
                continue
            docs = self.cache[table]
            names = ", ".join(("key", "doc", *fields))
            marks = ", ".join(["%s", "%s::jsonb", *(["%s"] * len(fields))])
            updates = ", ".join(f"{f} = EXCLUDED.{f}" for f in ("doc", *fields))
            with self.conn.cursor() as cursor:
                cursor.executemany(
                    f'INSERT INTO "{self.schema}".{table} ({names}) VALUES ({marks}) '
                    f"ON CONFLICT (key) DO UPDATE SET {updates}",
                    [(key, _encode(docs[key]).decode(), *(docs[key].get(f) for f in fields))
                     for key in self.dirty[table]],
                )  # fmt: skip

    def apply(self, kind: str, version: int, data: bytes, recorded: datetime) -> None:
        get, put = self.get, self.put
        if kind == "UserCreated":
            e = _decode(data)
            put("customers", e["user_id"], {"customer_id": e["user_id"], "name": e["name"]})
        elif kind == "ProductAdded":
            e = _decode(data)
            put("products", e["product_id"], {"product_id": e["product_id"], "name": e["name"]})
        elif kind == "OrderCreated":
            e = _decode(data)
            now = _timestamp(int(recorded.timestamp() * 1_000_000))
            customer = get("customers", e["customer_id"])
            items = []
            for item in e["items"]:
                product = get("products", item["product_id"])
                items.append({"product_id": item["product_id"],
                              "product_name": product["name"] if product else None,
                              "quantity": item["quantity"], "price": item["price"]})  # fmt: skip
            put("orders", e["order_id"], {
                "order_id": e["order_id"], "customer_id": e["customer_id"],
                "customer_name": customer["name"] if customer else None,
                "status": "CREATED", "items": items, "total_amount": e["total_amount"],
                "item_count": len(items), "shipping_address": None, "tracking_number": None,
                "cancel_reason": None, "created_at": now, "updated_at": now, "version": version,
            })  # fmt: skip
            stats = get("statistics", e["customer_id"]) or {
                "customer_id": e["customer_id"], "total_orders": 0, "total_amount": "0.00",
                "average_order_amount": "0.00",
                "orders_by_status": {"CREATED": 0, "SHIPPED": 0, "CANCELLED": 0},
            }  # fmt: skip
            stats["total_orders"] += 1
            total = Decimal(stats["total_amount"]) + Decimal(e["total_amount"])
            stats["total_amount"] = format(total, "f")
            stats["average_order_amount"] = format(
                (total / stats["total_orders"]).quantize(_CENTS), "f"
            )
            stats["orders_by_status"]["CREATED"] += 1
            put("statistics", e["customer_id"], stats)
        elif kind in ("OrderShipped", "OrderCancelled"):
            e = _decode(data)
            order = get("orders", e["order_id"])
            if order is None:
                return
            status = "SHIPPED" if kind == "OrderShipped" else "CANCELLED"
            stats = get("statistics", order["customer_id"])
            if stats is not None:
                stats["orders_by_status"][order["status"]] -= 1
                stats["orders_by_status"][status] += 1
                put("statistics", order["customer_id"], stats)
            order["status"] = status
            order["updated_at"] = _timestamp(int(recorded.timestamp() * 1_000_000))
            order["version"] = version
            if status == "SHIPPED":
                order["shipping_address"] = e["shipping_address"]
                order["tracking_number"] = e["tracking_number"]
            else:
                order["cancel_reason"] = e["reason"]
            put("orders", e["order_id"], order)


def bare_rebuild(url: str, events: str, schema: str, batch: int = 500) -> float:
    """Rebuild the orders documents from ``events``' log into ``schema``; events/s."""
    src = psycopg.connect(url, autocommit=True)
    dst = psycopg.connect(url)
    dst.execute(f'CREATE SCHEMA "{schema}"')
    for table, fields in TABLES.items():
        columns = "".join(f', {field} text COLLATE "C"' for field in fields)
        dst.execute(f'CREATE TABLE "{schema}".{table} (key text COLLATE "C" PRIMARY KEY, '
                    f"doc jsonb NOT NULL{columns})")  # fmt: skip
        for field in fields:
            dst.execute(f'CREATE INDEX ON "{schema}".{table} ({field}, key)')
    dst.execute(f'CREATE TABLE "{schema}".checkpoint (position bigint NOT NULL)')
    dst.execute(f'INSERT INTO "{schema}".checkpoint VALUES (0)')
    dst.commit()
    count = 0
    after = 0
    with stopwatch() as elapsed:
        while True:
            rows = src.execute(
                "SELECT position, stream_version, type, data, recorded_at "
                f'FROM "{events}".events WHERE position > %s ORDER BY position LIMIT %s',
                (after, batch),
            ).fetchall()
            if not rows:
                break
            work = _Batch(dst, schema)
            with dst.transaction():
                for _position, version, kind, data, recorded in rows:
                    work.apply(kind, version, data, recorded)
                work.write()
                after = rows[-1][0]
                dst.execute(f'UPDATE "{schema}".checkpoint SET position = %s', (after,))
            count += len(rows)
    src.close()
    dst.close()
    return count / elapsed[0]
