"""The in-process cache: the hottest single documents, in front of the shared cache.

Each process keeps at most ``max_entries`` documents (least recently used go first). It is
kept exact by the shared cache's notices (``ViewCache.watch``), which reach every process:

- per projection it tracks a *watermark* ``(epoch, through)``: the shared cache's epoch,
  and the last commit whose invalidation this process has seen, with no gap before it;
- a notice that a commit touched a document drops it here; a notice with a gap (its
  ``after`` is past the watermark) or of another epoch drops the projection's documents
  and forgets the watermark, until a lookup of the shared cache gives a new baseline;
- a document is kept only if it reflects the watermark or later, and is served as
  reflecting ``max(its position, through)``, like an entry of the shared cache;
- while notices may be missed (``Lost``: the connection broke), nothing is kept or served.

A baseline (``sync``) comes from a lookup of the shared cache that started while notices
were reaching this process, so every commit invalidated after that lookup's read arrives
here as a notice.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections import OrderedDict

from twofold.application.cache import (
    CacheNotice,
    Entry,
    Invalidated,
    Listening,
    Lost,
    Reset,
    Slot,
    Ticket,
)

__all__ = ["LocalCache"]


@dataclasses.dataclass(slots=True)
class _Watermark:
    epoch: str
    through: int


class LocalCache:
    """A bounded LRU of single documents, invalidated by the shared cache's notices."""

    def __init__(self, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError("a LocalCache holds at least one entry")
        self.max_entries = max_entries
        self._entries: OrderedDict[Slot, tuple[Entry, str]] = OrderedDict()
        self._marks: dict[str, _Watermark] = {}
        self._periods = itertools.count(1)
        self._period: int | None = None
        self._waiters: list[tuple[str, int, asyncio.Future[None]]] = []
        self._listening = asyncio.Event()

    # -- what callers use -----------------------------------------------------------------

    @property
    def listening(self) -> int | None:
        """An id of the current listening period (None: notices may be missed). A lookup
        notes it before it starts and hands it to ``sync``."""
        return self._period

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, slot: Slot, need: int) -> Entry | None:
        held = self._entries.get(slot)
        if held is None:
            return None
        entry, epoch = held
        mark = self._marks.get(slot.projection)
        if mark is None or mark.epoch != epoch:
            return None
        reflects = max(entry.position, mark.through)
        if reflects < need:
            return None
        self._entries.move_to_end(slot)
        return entry if reflects == entry.position else Entry(entry.body, reflects)

    def put(self, slot: Slot, entry: Entry, epoch: str) -> None:
        """Keep ``entry`` (an answer of epoch ``epoch``) if it is at the watermark or past it."""
        mark = self._marks.get(slot.projection)
        if mark is None or mark.epoch != epoch or entry.position < mark.through:
            return
        self._entries[slot] = (entry, epoch)
        self._entries.move_to_end(slot)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def sync(self, projection: str, ticket: Ticket, period: int | None) -> None:
        """Take a baseline from a lookup that began in listening period ``period``."""
        if period is None or period != self._period:
            return
        mark = self._marks.get(projection)
        if mark is not None and mark.epoch == ticket.epoch:
            return  # notices keep it; the lookup may be ahead of notices still in flight
        self._drop(projection)
        self._marks[projection] = _Watermark(ticket.epoch, ticket.through)
        self._wake()

    async def ready(self) -> None:
        """Return once notices reach this process."""
        await self._listening.wait()

    def through(self, projection: str) -> int | None:
        mark = self._marks.get(projection)
        return None if mark is None else mark.through

    async def reached(self, projection: str, position: int) -> None:
        """Return once this process has seen the invalidations up to ``position``."""
        mark = self._marks.get(projection)
        if mark is not None and mark.through >= position:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((projection, position, future))
        try:
            await future
        finally:
            self._waiters = [w for w in self._waiters if w[2] is not future]

    # -- notices --------------------------------------------------------------------------

    def notice(self, notice: CacheNotice) -> None:
        if isinstance(notice, Listening):
            self._clear()
            self._period = next(self._periods)
            self._listening.set()
        elif isinstance(notice, Lost):
            self._clear()
            self._period = None
            self._listening.clear()
        elif isinstance(notice, Reset):
            self._drop(notice.projection)
            if self._period is not None:
                self._marks[notice.projection] = _Watermark(notice.epoch, notice.checkpoint)
        elif isinstance(notice, Invalidated):
            self._invalidated(notice)
        self._wake()

    def _invalidated(self, notice: Invalidated) -> None:
        mark = self._marks.get(notice.projection)
        if mark is None:
            return  # nothing kept for it (no baseline yet)
        if mark.epoch != notice.epoch or notice.after > mark.through:
            self._drop(notice.projection)
            del self._marks[notice.projection]
            return
        for collection, keys in notice.documents.items():
            for key in keys:
                self._entries.pop(Slot(notice.projection, collection, key), None)
        if notice.checkpoint > mark.through:
            mark.through = notice.checkpoint

    def _drop(self, projection: str) -> None:
        for slot in [s for s in self._entries if s.projection == projection]:
            del self._entries[slot]

    def _clear(self) -> None:
        self._entries.clear()
        self._marks.clear()

    def _wake(self) -> None:
        for projection, position, future in self._waiters:
            mark = self._marks.get(projection)
            if mark is not None and mark.through >= position and not future.done():
                future.set_result(None)
