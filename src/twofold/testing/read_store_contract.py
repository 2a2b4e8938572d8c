"""The ReadStore contract: what every read store does, as tests every backend passes.

Subclass ``ReadStoreContract`` in a test module and provide a ``views`` fixture that yields
an open, empty store; pytest collects your subclass (its name starts with ``Test``)::

    class TestMyReadStore(ReadStoreContract):
        @pytest.fixture
        async def views(self, tmp_path):
            store = await MyReadStore.open(tmp_path / "views")
            yield store
            await store.close()

twofold runs it on SQLite and PostgreSQL from ``tests/contract``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from twofold.application.views import (
    Collection,
    ProjectionStatus,
    ReadStore,
    ViewTransaction,
)
from twofold.errors import (
    ConfigurationError,
    GenerationChangedError,
    QueryError,
    UnknownProjectionError,
)
from twofold.records import RecordedEvent

ORDERS = Collection("orders", indexes={"status": str, "total": float, "lines": int})
NOTES = Collection("notes")
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def record(position: int, stream: str = "s-1") -> RecordedEvent:
    return RecordedEvent(
        event_id=uuid.uuid4(),
        stream_id=stream,
        stream_version=position,
        position=position,
        type="Noted",
        schema_version=1,
        data=b'{"n": 1}',
        metadata=b"{}",
        recorded_at=T0,
    )


def put_orders(*docs: tuple[str, dict[str, Any]]) -> Any:
    def apply(tx: ViewTransaction) -> None:
        for key, doc in docs:
            tx.put("orders", key, doc)

    return apply


def order(status: str, total: float, lines: int, **more: Any) -> dict[str, Any]:
    return {"status": status, "total": total, "lines": lines, **more}


class ReadStoreContract:
    """What every ReadStore does; subclasses provide the ``views`` fixture."""

    async def test_prepare_starts_at_generation_one_and_is_idempotent(
        self, views: ReadStore
    ) -> None:
        state = await views.prepare("shop", [ORDERS, NOTES])
        assert (state.name, state.generation, state.checkpoint) == ("shop", 1, 0)
        assert state.status is ProjectionStatus.RUNNING
        await views.commit_batch(
            "shop", 1, put_orders(("a", order("new", 1.0, 1))), checkpoint=5, last_event_at=T0
        )
        again = await views.prepare("shop", [ORDERS, NOTES])
        assert (again.generation, again.checkpoint, again.last_event_at) == (1, 5, T0)
        assert await views.get("orders", "a") == order("new", 1.0, 1)
        assert [s.name for s in await views.states()] == ["shop"]

    async def test_batch_commits_views_and_checkpoint_together(self, views: ReadStore) -> None:
        await views.prepare("shop", [ORDERS])

        def apply(tx: ViewTransaction) -> None:
            tx.put("orders", "a", order("new", 10.5, 2, items=[{"sku": "pen"}]))
            tx.put("orders", "b", order("new", 1.0, 1))
            tx.delete("orders", "b")
            assert tx.get("orders", "b") is None
            assert [d["total"] for d in tx.find("orders", {"status": "new"})] == [10.5]

        await views.commit_batch("shop", 1, apply, checkpoint=7, last_event_at=T0)
        assert await views.get("orders", "a") == order("new", 10.5, 2, items=[{"sku": "pen"}])
        stored = await views.get_json("orders", "a")
        assert stored is not None and msgspec.json.decode(stored) == await views.get("orders", "a")
        assert await views.get_json("orders", "b") is None
        assert await views.get("orders", "b") is None
        assert await views.checkpoint("shop", 1) == 7

    async def test_failing_batch_writes_nothing(self, views: ReadStore) -> None:
        await views.prepare("shop", [ORDERS])
        await views.commit_batch(
            "shop", 1, put_orders(("a", order("new", 1.0, 1))), checkpoint=3, last_event_at=T0
        )

        def apply(tx: ViewTransaction) -> None:
            tx.put("orders", "a", order("paid", 1.0, 1))
            tx.put("orders", "b", order("new", 2.0, 1))
            tx.find("orders", {"status": "new"})  # flushes this collection mid-batch
            raise RuntimeError("handler bug")

        with pytest.raises(RuntimeError, match="handler bug"):
            await views.commit_batch("shop", 1, apply, checkpoint=9, last_event_at=T0)
        assert await views.get("orders", "a") == order("new", 1.0, 1)
        assert await views.get("orders", "b") is None
        assert await views.checkpoint("shop", 1) == 3

    async def test_batch_for_a_generation_no_longer_written_is_refused(
        self, views: ReadStore
    ) -> None:
        await views.prepare("shop", [ORDERS])
        with pytest.raises(GenerationChangedError):
            await views.commit_batch(
                "shop", 2, put_orders(("a", order("x", 1, 1))), checkpoint=1, last_event_at=T0
            )
        generation = await views.begin_rebuild("shop", [ORDERS])
        await views.switch("shop", generation)
        with pytest.raises(GenerationChangedError):
            await views.commit_batch(
                "shop", 1, put_orders(("a", order("x", 1, 1))), checkpoint=1, last_event_at=T0
            )
        with pytest.raises(GenerationChangedError):
            await views.checkpoint("shop", 1)
        assert await views.get("orders", "a") is None

    async def test_rebuild_fills_a_new_copy_while_the_old_serves_then_switches(
        self, views: ReadStore
    ) -> None:
        await views.prepare("shop", [ORDERS])
        await views.commit_batch(
            "shop", 1, put_orders(("old", order("new", 1, 1))), checkpoint=4, last_event_at=T0
        )
        generation = await views.begin_rebuild("shop", [ORDERS])
        assert generation == 2
        assert await views.checkpoint("shop", 2) == 0
        await views.commit_batch(
            "shop", 2, put_orders(("new", order("new", 2, 1))), checkpoint=6, last_event_at=T0
        )
        assert await views.get("orders", "old") is not None  # the old copy still serves
        assert await views.get("orders", "new") is None
        await views.switch("shop", 2)
        assert await views.get("orders", "old") is None
        assert await views.get("orders", "new") == order("new", 2, 1)
        state = await views.state("shop")
        assert (state.generation, state.checkpoint) == (2, 6)

    async def test_reset_empties_the_views_and_the_checkpoint(self, views: ReadStore) -> None:
        await views.prepare("shop", [ORDERS])
        await views.commit_batch(
            "shop", 1, put_orders(("a", order("new", 1, 1))), checkpoint=4, last_event_at=T0
        )
        await views.reset("shop", [ORDERS])
        state = await views.state("shop")
        assert state.checkpoint == 0 and await views.count("orders") == 0

    async def test_dead_letters_are_kept_per_generation_and_released(
        self, views: ReadStore
    ) -> None:
        await views.prepare("shop", [ORDERS])
        parked = [(record(2, "s-9"), "ValueError: bad"), (record(3, "s-9"), "earlier parked")]
        await views.commit_batch(
            "shop", 1, put_orders(), checkpoint=3, last_event_at=T0, parked=parked
        )
        letters = await views.dead_letters("shop", 1)
        assert [(d.position, d.stream_id, d.error) for d in letters] == [
            (2, "s-9", "ValueError: bad"),
            (3, "s-9", "earlier parked"),
        ]
        assert letters[0].record == parked[0][0]
        assert await views.dead_letters("shop", 2) == []
        await views.release_dead_letters(
            "shop", 1, put_orders(("s-9", order("fixed", 1, 1))), [2, 3]
        )
        assert await views.dead_letters("shop", 1) == []
        assert (await views.get("orders", "s-9") or {})["status"] == "fixed"

    async def test_a_pause_is_stored_and_moves_the_revision(self, views: ReadStore) -> None:
        await views.prepare("shop", [ORDERS])
        start = await views.state("shop")
        assert (start.paused, start.revision) == (False, 0)
        await views.set_paused("shop", True)
        paused = await views.state("shop")
        assert paused.paused and paused.revision > start.revision
        assert paused.status is ProjectionStatus.RUNNING  # the runner says when it stopped
        await views.set_paused("shop", False)
        resumed = await views.state("shop")
        assert not resumed.paused and resumed.revision > paused.revision
        with pytest.raises(UnknownProjectionError):
            await views.set_paused("nothing", True)

    async def test_released_dead_letters_and_switches_move_the_revision(
        self, views: ReadStore
    ) -> None:
        await views.prepare("shop", [ORDERS])
        parked = [(record(2, "s-9"), "ValueError: bad")]
        await views.commit_batch(
            "shop", 1, put_orders(), checkpoint=2, last_event_at=T0, parked=parked
        )
        before = (await views.state("shop")).revision
        await views.release_dead_letters("shop", 1, put_orders(), [2])
        released = (await views.state("shop")).revision
        assert released > before
        await views.switch("shop", await views.begin_rebuild("shop", [ORDERS]))
        assert (await views.state("shop")).revision > released

    async def test_a_copy_is_read_whole_with_its_checkpoint(self, views: ReadStore) -> None:
        await views.prepare("shop", [ORDERS, NOTES])
        await views.commit_batch(
            "shop",
            1,
            put_orders(("a", order("new", 1.5, 1)), ("b", order("paid", 2, 2, tags=["x"]))),
            checkpoint=4,
            last_event_at=T0,
        )
        live = await views.read_copy("shop")
        assert (live.projection, live.generation, live.checkpoint) == ("shop", 1, 4)
        assert live.documents == {
            "orders": {"a": order("new", 1.5, 1), "b": order("paid", 2, 2, tags=["x"])},
            "notes": {},
        }
        scratch = await views.begin_rebuild("shop", [ORDERS, NOTES])
        await views.commit_batch(
            "shop", scratch, put_orders(("c", order("new", 3, 1))), checkpoint=2, last_event_at=T0
        )
        copy = await views.read_copy("shop", scratch)
        assert (copy.generation, copy.checkpoint) == (scratch, 2)
        assert copy.documents["orders"] == {"c": order("new", 3, 1)}
        with pytest.raises(UnknownProjectionError):
            await views.read_copy("nothing")

    async def test_a_copy_that_is_not_active_is_dropped(self, views: ReadStore) -> None:
        await views.prepare("shop", [ORDERS])
        await views.commit_batch(
            "shop", 1, put_orders(("a", order("new", 1, 1))), checkpoint=4, last_event_at=T0
        )
        scratch = await views.begin_rebuild("shop", [ORDERS])
        await views.commit_batch(
            "shop",
            scratch,
            put_orders(),
            checkpoint=1,
            last_event_at=T0,
            parked=[(record(1), "ValueError: bad")],
        )
        await views.drop_copy("shop", scratch)
        with pytest.raises(GenerationChangedError):
            await views.checkpoint("shop", scratch)
        assert await views.dead_letters("shop", scratch) == []
        await views.drop_copy("shop", scratch)  # gone already: no error
        await views.drop_copy("shop", 1)  # the active copy: kept
        assert await views.get("orders", "a") == order("new", 1, 1)
        assert (await views.state("shop")).checkpoint == 4
        # The next copy starts clean, whatever number it gets.
        again = await views.begin_rebuild("shop", [ORDERS])
        assert (await views.read_copy("shop", again)).documents == {"orders": {}}

    async def test_find_filters_ranges_orders_and_pages_on_indexes(self, views: ReadStore) -> None:
        await views.prepare("shop", [ORDERS])
        docs = [
            (f"k{i:02d}", order("paid" if i % 2 else "new", float(i), i % 3)) for i in range(20)
        ]
        docs.append(("zz", {"note": "no indexed fields"}))
        await views.commit_batch("shop", 1, put_orders(*docs), checkpoint=1, last_event_at=T0)
        paid = await views.find("orders", where={"status": "paid"}, order_by=[("key", "asc")])
        assert [d["total"] for d in paid] == [float(i) for i in range(1, 20, 2)]
        ranged = await views.find(
            "orders", between={"total": (5, 9.5)}, order_by=[("total", "desc")], limit=3
        )
        assert [d["total"] for d in ranged] == [9.0, 8.0, 7.0]
        page = await views.find(
            "orders",
            where={"status": "new"},
            order_by=[("lines", "asc"), ("total", "desc")],
            limit=4,
            offset=2,
        )
        assert [(d["lines"], d["total"]) for d in page] == [
            (0, 6.0),
            (0, 0.0),
            (1, 16.0),
            (1, 10.0),
        ]
        assert await views.count("orders") == 21
        assert (
            await views.count("orders", where={"status": "new"}, between={"lines": (1, None)}) == 6
        )
        assert await views.count("orders", between={"key": ("k05", "k07")}) == 3
        unordered = await views.find("orders", order_by=[("status", "asc")], limit=1)
        assert unordered == [{"note": "no indexed fields"}], "a missing field sorts first"

    async def test_queries_only_use_declared_indexes(self, views: ReadStore) -> None:
        await views.prepare("shop", [ORDERS])
        with pytest.raises(QueryError, match="not indexed"):
            await views.find("orders", where={"customer": "ann"})
        with pytest.raises(QueryError, match="not indexed"):
            await views.find("orders", order_by=[("customer", "asc")])
        with pytest.raises(QueryError, match="direction"):
            await views.find("orders", order_by=[("status", "up")])
        with pytest.raises(QueryError, match="no collection"):
            await views.get("missing", "a")

    async def test_a_collection_belongs_to_one_projection(self, views: ReadStore) -> None:
        await views.prepare("shop", [ORDERS])
        with pytest.raises(ConfigurationError, match="belongs to projection"):
            await views.prepare("other", [ORDERS])

    async def test_status_is_recorded(self, views: ReadStore) -> None:
        await views.prepare("shop", [ORDERS])
        await views.set_status("shop", ProjectionStatus.STOPPED, "position 3: boom")
        state = await views.state("shop")
        assert (state.status, state.error) == (ProjectionStatus.STOPPED, "position 3: boom")
        with pytest.raises(UnknownProjectionError):
            await views.state("nobody")

    async def test_retry_attempts_are_recorded_with_the_status(self, views: ReadStore) -> None:
        await views.prepare("shop", [ORDERS])
        await views.set_status("shop", ProjectionStatus.RETRYING, "store away", attempts=3)
        state = await views.state("shop")
        assert (state.status, state.error, state.attempts) == (
            ProjectionStatus.RETRYING,
            "store away",
            3,
        )
        await views.set_status("shop", ProjectionStatus.RUNNING)
        assert (await views.state("shop")).attempts == 0

    async def test_parked_events_of_the_active_copy_are_counted(self, views: ReadStore) -> None:
        await views.prepare("shop", [NOTES])
        parked = [(record(2), "boom"), (record(3), "an earlier event of this stream is parked")]
        await views.commit_batch(
            "shop", 1, lambda tx: None, checkpoint=3, last_event_at=T0, parked=parked
        )
        assert (await views.state("shop")).parked == 2
        await views.release_dead_letters("shop", 1, lambda tx: None, [2])
        assert [s.parked for s in await views.states()] == [1]
        generation = await views.begin_rebuild("shop", [NOTES])
        await views.switch("shop", generation)
        assert (await views.state("shop")).parked == 0

    async def test_the_event_store_of_a_copy_is_recorded_once_it_holds_events(
        self, views: ReadStore
    ) -> None:
        await views.prepare("shop", [NOTES])
        assert (await views.state("shop")).event_store is None
        assert await views.bind_event_store("shop", 1, "store-a") == "store-a"
        # Nothing applied yet: another store may still take the copy.
        assert await views.bind_event_store("shop", 1, "store-b") == "store-b"
        await views.commit_batch("shop", 1, lambda tx: None, checkpoint=4, last_event_at=T0)
        # Now the copy holds store-b's events: it stays store-b's.
        assert await views.bind_event_store("shop", 1, "store-c") == "store-b"
        assert (await views.state("shop")).event_store == "store-b"
        generation = await views.begin_rebuild("shop", [NOTES])
        assert await views.bind_event_store("shop", generation, "store-c") == "store-c"
        await views.switch("shop", generation)
        assert (await views.state("shop")).event_store == "store-c"
        with pytest.raises(GenerationChangedError):
            await views.bind_event_store("shop", 1, "store-c")  # that copy is gone
