"""The cache port: query answers kept in a shared cache, never older than what is stored.

A cached answer (one view document, or a list answer) is an *entry* that carries the
projection position it reflects. The cache keeps, per projection, a small *meta* record:

- ``epoch``: the key space of the entries. It changes when the read store switches to
  another generation (a rebuild), when views change without a new checkpoint (dead letters
  released), and when an invalidation was lost; entries of another epoch are never read.
- ``generation``: the read-store generation the epoch holds; an answer loaded from another
  generation is never stored.
- ``through``: every projection commit up to this position has been invalidated.

Rules every ``ViewCache`` keeps (the contract suite checks them):

1. A projection commit replaces each document it touched with a *tombstone* stamped with
   the commit's checkpoint, unless the cache holds that document at the checkpoint or past
   it; for list answers it records the checkpoint as the collection's last touch.
2. A store of an answer loaded at position ``p`` (the projection's checkpoint read in the
   same read-store snapshot as the answer) is refused as *older* when the cache holds the
   slot at a position past ``p``, when the collection was touched past ``p`` (list answers),
   or when ``p`` is below ``through`` and the cache cannot show that the document did not
   change in between (it holds nothing for it). A slow reader's stale answer therefore
   can never be stored after the commit that outdated it has been invalidated.
3. A store is refused as *moved* when the epoch or the generation changed since the
   lookup that preceded it.
4. An entry at ``p`` reflects the views up to ``max(p, through)``: a later commit that
   touched it would have replaced it. ``Lookup.fresh(need)`` serves it only that far.
5. Invalidations must arrive in order without gaps (``after`` of one is the checkpoint of
   the one before); a gap (an invalidation lost) starts a new epoch.

The cache may forget anything at any time (TTL, eviction, a restart): forgetting only
costs a read of the read store, never an older answer.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Callable, Mapping, Sequence, Set
from typing import Any, Literal, Protocol

from twofold.application.metrics import CounterChild, Metrics
from twofold.errors import ConfigurationError

__all__ = [
    "COUNTERS",
    "CacheCounter",
    "CacheMetrics",
    "CacheNotice",
    "CacheSettings",
    "CacheState",
    "CacheStatus",
    "Entry",
    "Invalidated",
    "Invalidation",
    "Listening",
    "Loaded",
    "Lookup",
    "Lost",
    "PositionedReader",
    "Reset",
    "Slot",
    "StoreOutcome",
    "Ticket",
    "ViewCache",
]


@dataclasses.dataclass(frozen=True, slots=True)
class CacheSettings:
    """How the cache behaves; every duration is in seconds.

    - ``namespace``: the service's key prefix; services sharing a Redis must differ.
    - ``ttl``: how long an answer is kept (it is replaced or removed sooner on change).
    - ``not_found_ttl``: how long "no such document" is kept (short: ids created by a
      command are often asked for before the projection wrote them).
    - ``tombstone_ttl``: how long a commit's mark of a changed document is kept.
    - ``timeout``: the longest a cache call may take before the read store answers instead.
    - ``failure_threshold``/``reset_after``: the breaker's failures in a row before it
      opens, and the seconds before it lets one request try the cache again (growing while
      trials fail, up to 30 s).
    - ``local_entries``: size of the in-process cache of single documents (0: none).
    - ``lists``: collections whose list answers (``find``, ``count``) are cached too.
    """

    namespace: str = "twofold"
    ttl: float = 300.0
    not_found_ttl: float = 5.0
    tombstone_ttl: float = 60.0
    timeout: float = 0.25
    failure_threshold: int = 3
    reset_after: float = 1.0
    local_entries: int = 0
    lists: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not self.namespace or any(c in self.namespace for c in "{}: \t\n"):
            raise ConfigurationError(
                f"cache namespace {self.namespace!r} must be a non-empty name without "
                "spaces, ':' or braces (e.g. the service's name)"
            )
        for name in ("ttl", "not_found_ttl", "tombstone_ttl", "timeout", "reset_after"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ConfigurationError(
                    f"cache {name} must be a number of seconds above 0, not {value!r}"
                )
        if self.ttl < 0.001 or self.not_found_ttl < 0.001 or self.tombstone_ttl < 0.001:
            raise ConfigurationError("cache TTLs must be at least 0.001 seconds (1 ms)")
        if not (isinstance(self.failure_threshold, int) and self.failure_threshold >= 1):
            raise ConfigurationError(
                f"cache failure_threshold must be a whole number >= 1, not "
                f"{self.failure_threshold!r}"
            )
        if not (isinstance(self.local_entries, int) and self.local_entries >= 0):
            raise ConfigurationError(
                f"cache local_entries must be a whole number >= 0 (0: no in-process cache), "
                f"not {self.local_entries!r}"
            )
        if isinstance(self.lists, str):
            raise ConfigurationError("cache lists must be a set of collection names")
        object.__setattr__(self, "lists", frozenset(self.lists))


@dataclasses.dataclass(frozen=True, slots=True)
class Slot:
    """Where an answer lives: one document (``key`` is its key), or one list answer of a
    collection (``key`` names the query; ``is_list``)."""

    projection: str
    collection: str
    key: str
    is_list: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class Entry:
    """An answer and the projection position it reflects; ``body`` None: no document."""

    body: bytes | None
    position: int


@dataclasses.dataclass(frozen=True, slots=True)
class Ticket:
    """What a lookup saw of the projection's meta; a later store must present it."""

    epoch: str
    generation: int
    through: int


@dataclasses.dataclass(frozen=True, slots=True)
class Lookup:
    """A lookup's result: the entry held for the slot (None: nothing, or a tombstone) and
    the meta it was read with (``touched``: the collection's last touch, for lists)."""

    slot: Slot
    entry: Entry | None
    ticket: Ticket
    touched: int = 0

    def fresh(self, need: int) -> Entry | None:
        """The entry if it reflects the views at ``need`` or later (rule 4), stamped with
        the position it reflects; None otherwise."""
        entry = self.entry
        if entry is None or (self.slot.is_list and self.touched > entry.position):
            return None
        reflects = max(entry.position, self.ticket.through)
        if reflects < need:
            return None
        return entry if reflects == entry.position else Entry(entry.body, reflects)


class StoreOutcome(enum.Enum):
    STORED = "stored"
    OLDER = "older"
    """Refused: the cache knows of a change past the answer's position."""
    MOVED = "moved"
    """Refused: the epoch or generation changed since the lookup."""


@dataclasses.dataclass(frozen=True, slots=True)
class Loaded:
    """An answer read from the read store with the projection's checkpoint and generation,
    both read in the same snapshot as the answer. ``body`` None: no such document."""

    body: bytes | None
    position: int
    generation: int


class PositionedReader(Protocol):
    """Reads answers together with the position they reflect (adapters per read store)."""

    async def load_json(self, projection: str, collection: str, key: str) -> Loaded:
        """One document's stored JSON (as ``ViewReader.get_json`` answers it)."""
        ...

    async def load_find(
        self,
        projection: str,
        collection: str,
        *,
        where: Mapping[str, Any] | None = None,
        between: Mapping[str, tuple[Any, Any]] | None = None,
        order_by: Sequence[tuple[str, str]] = (),
        limit: int | None = None,
        offset: int = 0,
    ) -> Loaded:
        """``ViewReader.find``'s documents as one JSON array."""
        ...

    async def load_count(
        self,
        projection: str,
        collection: str,
        *,
        where: Mapping[str, Any] | None = None,
        between: Mapping[str, tuple[Any, Any]] | None = None,
    ) -> Loaded:
        """``ViewReader.count`` as a JSON number."""
        ...


@dataclasses.dataclass(frozen=True, slots=True)
class Invalidation:
    """One projection commit of the active generation, for the cache: positions
    ``after`` (exclusive) to ``checkpoint`` (inclusive), and the documents it touched,
    ``{collection: {key, ...}}``."""

    projection: str
    generation: int
    after: int
    checkpoint: int
    documents: Mapping[str, Set[str]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True)
class Listening:
    """The cache's notices reach this process from now on (after a start or a reconnect)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Lost:
    """Notices may have been missed (the connection broke): trust nothing local."""


@dataclasses.dataclass(frozen=True, slots=True)
class Invalidated:
    """An invalidation was applied in the cache (in epoch ``epoch``)."""

    projection: str
    epoch: str
    after: int
    checkpoint: int
    documents: Mapping[str, Set[str]]


@dataclasses.dataclass(frozen=True, slots=True)
class Reset:
    """The projection's entries were abandoned; a new epoch starts, through ``checkpoint``."""

    projection: str
    epoch: str
    generation: int
    checkpoint: int


CacheNotice = Listening | Lost | Invalidated | Reset


class ViewCache(Protocol):
    """A shared cache that keeps the rules in this module's docstring."""

    async def lookup(self, slot: Slot, *, epoch: str | None = None) -> Lookup:
        """The entry held for ``slot`` and the projection's meta, in one atomic read.

        ``epoch`` is the caller's guess of the projection's epoch (the last ticket's); an
        adapter whose keys depend on it may use it and must read again when it was wrong.
        """
        ...

    async def store(
        self, slot: Slot, entry: Entry, *, ticket: Ticket, generation: int
    ) -> StoreOutcome:
        """Store ``entry`` (loaded from ``generation``) if the rules allow it."""
        ...

    async def invalidate(self, invalidation: Invalidation) -> None:
        """Apply one commit's invalidation (rules 1 and 5)."""
        ...

    async def reset(
        self, projection: str, generation: int, checkpoint: int, *, force: bool = False
    ) -> None:
        """Abandon the projection's entries: the active copy is now ``generation`` at
        ``checkpoint`` (after a switch, or after views changed without a checkpoint).

        A reset to an older generation than the cache holds is ignored (a late caller),
        unless ``force``: the caller is the projection's only runner and knows its store
        (a read store made anew starts at a lower generation than the cache remembers)."""
        ...

    async def watch(self, notify: Callable[[CacheNotice], None]) -> None:
        """Deliver notices of every process's invalidations to ``notify`` until ``close``:
        ``Listening`` when they start reaching this process, ``Lost`` when some may be
        missed. Returns once watching has started (not necessarily listening yet)."""
        ...

    async def close(self) -> None: ...


class CacheState(enum.Enum):
    UP = "UP"
    DEGRADED = "DEGRADED"
    """The cache is away or behind: answers come from the read store, slower, still right.
    A cache never makes the service DOWN."""


@dataclasses.dataclass(frozen=True, slots=True)
class CacheStatus:
    state: CacheState
    detail: str


CacheCounter = Literal[
    "hits",
    "local_hits",
    "misses",
    "loads",
    "stores",
    "refused_older",
    "invalidations",
    "fallbacks",
    "errors",
]


COUNTERS: dict[CacheCounter, str] = {
    "hits": "Answers served by the shared cache.",
    "local_hits": "Answers served by the in-process cache.",
    "misses": "Lookups that found nothing usable (then loaded from the read store).",
    "loads": "Reads of the read store made for the cache (one per key when many miss at once).",
    "stores": "Answers stored in the shared cache.",
    "refused_older": "Stores refused: the cache knew of a newer state (or of another copy).",
    "invalidations": "Projection commits invalidated in the cache by this process.",
    "fallbacks": "Reads answered by the read store: the cache failed or its breaker was open.",
    "errors": "Cache calls that failed (timeouts included).",
}
"""The counters of ``CacheMetrics``, and what each counts."""


@dataclasses.dataclass
class CacheMetrics:
    """Counters since this process started; ``add`` moves one, and its Prometheus
    counter ``twofold_cache_<name>_total`` too once ``record_to`` bound them."""

    hits: int = 0
    local_hits: int = 0
    misses: int = 0
    loads: int = 0
    stores: int = 0
    refused_older: int = 0
    invalidations: int = 0
    fallbacks: int = 0
    errors: int = 0

    def __post_init__(self) -> None:
        self._children: dict[str, CounterChild] = {}

    def add(self, counter: CacheCounter) -> None:
        setattr(self, counter, getattr(self, counter) + 1)
        child = self._children.get(counter)
        if child is not None:
            child.inc()

    def record_to(self, metrics: Metrics) -> None:
        """Count in ``metrics`` too (from now on), one counter per field."""
        for name, documentation in COUNTERS.items():
            self._children[name] = metrics.counter(
                f"twofold_cache_{name}_total", documentation
            ).labels()

    def as_dict(self) -> dict[str, int]:
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
