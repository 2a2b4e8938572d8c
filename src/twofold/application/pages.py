"""Reading the log for a replay (a catch-up, a rebuild), one page ahead.

While a batch is applied and committed on the read store's side, the next page is read on
the event store's side: the two stores work at the same time instead of taking turns (on
SQLite, each on a thread of its own; on PostgreSQL, on two connections).

A page read ahead is used only if the batch before it ended where it began, which is the
case whenever the batch committed whole (parked events included). Otherwise (the
projection stopped, or another process switched generations) it is dropped, and the page
is read again from where the checkpoint stands: nothing is skipped, nothing applied twice.
"""

from __future__ import annotations

import asyncio

from twofold.application.ports import EventStore
from twofold.records import RecordedEvent

__all__ = ["PageReader"]


class PageReader:
    """``await pages.after(position)``: the page after ``position``; ``await pages.close()``
    when done (it waits for a read still under way, whose page nobody will use)."""

    def __init__(self, event_store: EventStore, size: int) -> None:
        self._event_store = event_store
        self._size = size
        self._ahead: tuple[int, asyncio.Task[list[RecordedEvent]]] | None = None

    async def after(self, position: int) -> list[RecordedEvent]:
        """Up to ``size`` events after ``position``; a full page starts reading the next."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[0] == position:
            page = await ahead[1]
        else:
            if ahead is not None:
                await _settle(ahead[1])
            page = await self._event_store.read_all(after=position, limit=self._size)
        if len(page) == self._size:  # a short page is the head: nothing to read ahead
            last = page[-1].position
            read = self._event_store.read_all(after=last, limit=self._size)
            self._ahead = (last, asyncio.ensure_future(read))
        return page

    async def close(self) -> None:
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            await _settle(ahead[1])


async def _settle(read: asyncio.Task[list[RecordedEvent]]) -> None:
    """Wait for an unused read to end (not cancelled: a read is short, and a query
    cancelled midway would cost its connection); its outcome, error or page, is dropped."""
    await asyncio.wait([read])
    if not read.cancelled():
        read.exception()  # retrieved: an error of an unused read is nobody's to report
