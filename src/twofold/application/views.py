"""The read store port: collections of JSON documents, projection checkpoints, dead letters.

A view is a document (a JSON object) under a key in a named collection. A collection
declares which top-level fields are indexed; queries filter, range and order only on those
(plus ``key``), so every query a view answers is an index lookup.

Projections write through a ``ViewTransaction`` (synchronous: a batch applies in one
transaction on the store's own thread or connection, and its checkpoint commits with it).
Queries read through the async ``ViewReader``.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from twofold.records import RecordedEvent

__all__ = [
    "Collection",
    "DeadLetter",
    "ProjectionState",
    "ProjectionStatus",
    "ReadStore",
    "SortBy",
    "ViewCopy",
    "ViewReader",
    "ViewTransaction",
]

Document = dict[str, Any]
IndexType = type[str] | type[int] | type[float]


@dataclasses.dataclass(frozen=True)
class Collection:
    """A named set of documents, with the fields it indexes: ``{"status": str}``."""

    name: str
    indexes: Mapping[str, IndexType] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name.isidentifier() or not self.name.islower():
            raise ValueError(
                f"collection name {self.name!r} must be a lower-case identifier (a-z, 0-9, _)"
            )
        for field, kind in self.indexes.items():
            if not field.isidentifier() or field == "key":
                raise ValueError(f"index {field!r} of {self.name!r} must be an identifier, not key")
            if kind not in (str, int, float):
                raise ValueError(f"index {field!r} of {self.name!r} must be str, int or float")


SortBy = tuple[str, str]
"""An ordering term: (field, "asc" | "desc"); the field is an index or ``key``."""


class ViewTransaction(Protocol):
    """What a projection handler may do, inside the batch's transaction.

    ``record`` is the event being applied (its position, stream version, time).
    """

    record: RecordedEvent

    def get(self, collection: str, key: str) -> Document | None: ...

    def put(self, collection: str, key: str, document: Document) -> None: ...

    def delete(self, collection: str, key: str) -> None: ...

    def find(self, collection: str, where: Mapping[str, Any]) -> list[Document]:
        """Documents whose indexed fields equal ``where``'s values, in key order."""
        ...


class ViewReader(Protocol):
    """What a query handler may do: read the active copy of the views."""

    async def get(self, collection: str, key: str) -> Document | None: ...

    async def get_json(self, collection: str, key: str) -> bytes | None:
        """The document as stored JSON bytes, for decoding straight into a typed answer
        (or sending as it is) without building a dict first."""
        ...

    async def find(
        self,
        collection: str,
        *,
        where: Mapping[str, Any] | None = None,
        between: Mapping[str, tuple[Any, Any]] | None = None,
        order_by: Sequence[SortBy] = (),
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Document]:
        """Equality on ``where``, inclusive ranges on ``between`` (either end may be None)."""
        ...

    async def count(
        self,
        collection: str,
        *,
        where: Mapping[str, Any] | None = None,
        between: Mapping[str, tuple[Any, Any]] | None = None,
    ) -> int: ...


class ProjectionStatus(enum.Enum):
    """Where a projection's runner stands. Transitions::

        start ──▶ running ◀──────────── a batch commits ────────────┐
                   │  │                                             │
                   │  └── a handler or the store fails ──▶ retrying ┤
                   │                                          │     │
                   │       retries spent, on_error "stop"     │     │ retries spent, "park":
                   │       (failures of the store itself      ▼     │ the event and the rest
                   │       retry until they pass)         stopped   │ of its stream are parked
                   │
                   └── views of another event store, or a checkpoint
                       beyond the log's head ──▶ refused

        stopped, refused ── rebuild or reset ──▶ running

        running, retrying ── an operator pauses (the stored flag) ──▶ paused
        paused ── resumed ──▶ running (from the checkpoint where it paused)

    ``running``, ``retrying``, ``stopped`` and ``paused`` are stored with the projection, so
    every process reports them (``paused`` once the runner has stopped applying: until then
    only the request, ``ProjectionState.paused``, is); ``refused`` is found again at every
    start, by each process.
    """

    RUNNING = "running"
    RETRYING = "retrying"
    STOPPED = "stopped"
    REFUSED = "refused"
    REBUILDING = "rebuilding"
    PAUSED = "paused"


@dataclasses.dataclass(frozen=True, slots=True)
class ProjectionState:
    """Where a projection stands: active generation, checkpoint, status."""

    name: str
    generation: int
    checkpoint: int
    status: ProjectionStatus
    error: str | None = None
    """Why it retries or stopped; while events are parked, the last parking's error."""
    updated_at: datetime | None = None
    last_event_at: datetime | None = None
    """``recorded_at`` of the last event applied: how fresh the views are."""
    attempts: int = 0
    """Failed attempts in a row while ``retrying``; 0 otherwise."""
    parked: int = 0
    """Events of the active copy in the dead letters."""
    event_store: str | None = None
    """The identity of the event store the active copy is built from (None: not yet
    recorded, as in views written before twofold recorded it)."""
    paused: bool = False
    """An operator paused it (``ReadStore.set_paused``): its runner applies nothing until
    resumed, whichever process runs it."""
    revision: int = 0
    """Grows with every change made to the projection from outside its runner (pause,
    resume, dead letters released or skipped, a copy switched): a runner that sees it move
    reloads what it keeps in memory."""


@dataclasses.dataclass(frozen=True, slots=True)
class DeadLetter:
    """An event a projection parked: it failed, or an earlier event of its stream did."""

    projection: str
    position: int
    stream_id: str
    error: str
    parked_at: datetime
    record: RecordedEvent


@dataclasses.dataclass(frozen=True, slots=True)
class ViewCopy:
    """Every document of one copy of a projection's views, with the checkpoint they
    reflect, read in one snapshot (``ReadStore.read_copy``)."""

    projection: str
    generation: int
    checkpoint: int
    documents: dict[str, dict[str, Document]]
    """collection name -> key -> document."""


ApplyBatch = Callable[[ViewTransaction], None]


class ReadStore(ViewReader, Protocol):
    """Views plus the bookkeeping of the projections that write them.

    Every ``commit_batch`` writes the views, the checkpoint and any dead letters in ONE
    transaction, and only if ``generation`` is still the one being written (the active one,
    or the one a rebuild fills); otherwise it raises GenerationChangedError and writes nothing.
    """

    async def prepare(self, projection: str, collections: Sequence[Collection]) -> ProjectionState:
        """Create the projection's bookkeeping and its active tables if missing."""
        ...

    async def state(self, projection: str) -> ProjectionState: ...

    async def states(self) -> list[ProjectionState]: ...

    async def commit_batch(
        self,
        projection: str,
        generation: int,
        apply: ApplyBatch,
        *,
        checkpoint: int,
        last_event_at: datetime | None,
        parked: Sequence[tuple[RecordedEvent, str]] = (),
    ) -> None: ...

    async def set_status(
        self,
        projection: str,
        status: ProjectionStatus,
        error: str | None = None,
        *,
        attempts: int = 0,
    ) -> None: ...

    async def bind_event_store(self, projection: str, generation: int, identity: str) -> str:
        """Record that copy ``generation`` is built from the event store ``identity``,
        unless another one is recorded for a copy that holds events already (checkpoint
        above 0); return the identity recorded now."""
        ...

    async def begin_rebuild(self, projection: str, collections: Sequence[Collection]) -> int:
        """Create empty tables for a new generation (checkpoint 0) and return its number."""
        ...

    async def checkpoint(self, projection: str, generation: int) -> int: ...

    async def switch(self, projection: str, generation: int) -> None:
        """Make ``generation`` the active copy, atomically, and drop the old one."""
        ...

    async def reset(self, projection: str, collections: Sequence[Collection]) -> None:
        """Empty the views and set the checkpoint to 0 (a rebuild without blue/green)."""
        ...

    async def set_paused(self, projection: str, paused: bool) -> None:
        """Store an operator's pause (or resume) of ``projection`` and move its revision;
        the process that runs it notices (``ProjectionState.paused``)."""
        ...

    async def read_copy(self, projection: str, generation: int | None = None) -> ViewCopy:
        """Every document of copy ``generation`` (None: the active one) and its checkpoint,
        read in one snapshot: the documents are exactly those at that checkpoint."""
        ...

    async def drop_copy(self, projection: str, generation: int) -> None:
        """Drop copy ``generation`` (its tables, checkpoint and dead letters) unless it is
        the active one; a copy that is gone already is no error."""
        ...

    async def dead_letters(self, projection: str, generation: int) -> list[DeadLetter]: ...

    async def release_dead_letters(
        self,
        projection: str,
        generation: int,
        apply: ApplyBatch,
        positions: Sequence[int],
    ) -> None:
        """Apply ``apply`` and delete the given dead letters in one transaction (an
        ``apply`` that does nothing skips them), and move the projection's revision."""
        ...

    def rejects(self, error: BaseException) -> bool:
        """Whether ``error``, raised by ``commit_batch``, is this store refusing what the
        batch wrote (it would refuse it again), rather than failing itself. The runner then
        finds the event that wrote it and applies its failure policy to it."""
        ...

    async def close(self) -> None: ...
