"""The relays of one process: one per destination, each run while its lease is held.

``RelayHost`` is what ``twofold relay`` runs, and what ``twofold serve`` runs with
``TWOFOLD_RELAY=run``; ``bootstrap`` builds it. For each destination it waits for the
lease, builds a fresh ``Relay`` (so the checkpoint is read again: the previous holder may
have moved it), runs it until the lease is lost or the host closes, and then releases the
lease. A relay that fails unexpectedly is logged and started again after
``retry_interval``, the lease given up meanwhile so that another process may take over.

Each destination's states, as ``RelayReport.state`` shows them::

    waiting ──lease──▶ starting ──▶ running ◀──▶ retrying      (broker unavailable)
       ▲                                 │
       └──────── lease lost / failed ────┘

Processes that wait report ``waiting``, and those that run no relay (serve with
``TWOFOLD_RELAY=off``) ``elsewhere``, with the checkpoint the active relay stored, so
``/health`` shows the lag in every process; only the active one knows its breaker.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from twofold.application.metrics import Scrape
from twofold.application.ports import EventStore
from twofold.application.relay.core import Relay
from twofold.application.relay.errors import RelayNotActiveError
from twofold.application.relay.lease import RelayLease
from twofold.application.relay.store import ParkedMessage, RelayStore

__all__ = ["RelayDestination", "RelayHost", "RelayReport"]

log = logging.getLogger("twofold.relay")

_LAG_EVENTS = "Events in the log after the relay's checkpoint."
_LAG_SECONDS = "Age of the oldest event the broker has not acknowledged; 0 when caught up."
_PARKED = "Messages the broker refused for good, with the later events of their streams."
_ACTIVE = "1 in the process that relays to the destination (holds its lease)."
_BREAKER = "1 while the relay's circuit breaker is open (the broker is away)."


@dataclasses.dataclass(frozen=True, slots=True)
class RelayDestination:
    """One destination: its name, how to build its relay, and its lease."""

    destination: str
    make_relay: Callable[[], Relay]
    lease: RelayLease


@dataclasses.dataclass(frozen=True, slots=True)
class RelayReport:
    """A destination's relay as health checks and metrics show it."""

    destination: str
    active: bool
    """Whether this process holds the lease and publishes."""
    state: str
    """running, retrying (the broker away), starting; waiting (this process contends for
    the lease another one holds); elsewhere (this process runs no relay: ``twofold relay``
    or a ``twofold serve`` with TWOFOLD_RELAY=run does)."""
    checkpoint: int
    head: int
    lag_events: int
    lag_seconds: float
    parked: int
    published: int
    """Messages acknowledged since this process took the lease (0 while waiting)."""
    breaker: str | None
    """closed, open or half_open; None where this process does not run the relay."""
    last_error: str | None


class RelayHost:
    """Runs the relay of each destination whose lease this process holds."""

    def __init__(
        self,
        destinations: Sequence[RelayDestination],
        *,
        event_store: EventStore,
        store: RelayStore,
        retry_interval: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        names = [d.destination for d in destinations]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"destination {', '.join(twice)} is named twice")
        self.destinations = {d.destination: d for d in destinations}
        self.event_store = event_store
        self.store = store
        self.retry_interval = retry_interval
        self._clock = clock
        self._active: dict[str, Relay] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._changed = asyncio.Event()
        self._closers: list[Callable[[], Any]] = []
        self._contending = False

    def on_close(self, closer: Callable[[], Any]) -> None:
        """Call ``closer`` (sync or async) after the relays stopped, last registered first."""
        self._closers.append(closer)

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Contend for every destination's lease; relay those held, in the background."""
        self._contending = True
        for destination in self.destinations.values():
            await self.store.prepare(destination.destination)
            task = asyncio.create_task(
                self._run_leased(destination), name=f"relay-{destination.destination}"
            )
            self._tasks.append(task)

    async def close(self) -> None:
        """Stop every relay (checkpoints stored), release the leases, then run the closers."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        self._contending = False
        for closer in reversed(self._closers):
            outcome = closer()
            if asyncio.iscoroutine(outcome):
                await outcome
        self._closers.clear()

    def active(self) -> list[str]:
        """The destinations this process relays to now."""
        return sorted(self._active)

    async def wait_active(self, destination: str) -> None:
        """Return once this process relays to ``destination``."""
        while destination not in self._active:
            self._changed.clear()
            await self._changed.wait()

    async def _run_leased(self, destination: RelayDestination) -> None:
        name = destination.destination
        while True:
            log.info("process %d takes or waits for the lease on %s", os.getpid(), name)
            await destination.lease.acquire()
            relay: Relay | None = None
            try:
                relay = destination.make_relay()
                await relay.start()
                log.info("process %d relays to %s", os.getpid(), name)
                self._active[name] = relay
                self._changed.set()
                running = asyncio.create_task(relay.run(), name=f"relay-run-{name}")
                lost = asyncio.create_task(destination.lease.lost(), name=f"relay-lease-{name}")
                try:
                    done, _ = await asyncio.wait(
                        {running, lost}, return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    for task in (running, lost):
                        task.cancel()
                    for task in (running, lost):
                        with contextlib.suppress(BaseException):
                            await task
                if lost in done:
                    log.warning("process %d lost the lease on %s; it waits", os.getpid(), name)
                elif running.exception() is not None:
                    log.error("relay to %s failed", name, exc_info=running.exception())
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("relay to %s failed", name)
            finally:
                self._active.pop(name, None)
                if relay is not None:
                    with contextlib.suppress(Exception):
                        await relay.close()
                await destination.lease.release()
            await asyncio.sleep(self.retry_interval)

    # -- reports --------------------------------------------------------------------------

    async def report_metrics(self, scrape: Scrape) -> None:
        """Scrape-time gauges (``Metrics.on_scrape``): each destination's lag, parked
        messages, whether this process relays to it, and its breaker where it does."""
        for report in await self.reports():
            labels = {"destination": report.destination}
            scrape.gauge("twofold_relay_lag_events", _LAG_EVENTS, report.lag_events, labels)
            scrape.gauge("twofold_relay_lag_seconds", _LAG_SECONDS, report.lag_seconds, labels)
            scrape.gauge("twofold_relay_parked_messages", _PARKED, report.parked, labels)
            scrape.gauge("twofold_relay_active", _ACTIVE, float(report.active), labels)
            if report.breaker is not None:
                open_ = 1.0 if report.breaker == "open" else 0.0
                scrape.gauge("twofold_relay_breaker_open", _BREAKER, open_, labels)

    async def reports(self) -> list[RelayReport]:
        """Every destination's relay: this process's status, or the stored checkpoint."""
        reports: list[RelayReport] = []
        for name in self.destinations:
            relay = self._active.get(name)
            if relay is not None:
                status = await relay.status()
                reports.append(
                    RelayReport(
                        destination=name,
                        active=True,
                        state=status.state.value,
                        checkpoint=status.checkpoint,
                        head=status.head,
                        lag_events=status.lag_events,
                        lag_seconds=round(status.lag_seconds, 3),
                        parked=status.parked,
                        published=status.published,
                        breaker=status.breaker.state.value,
                        last_error=status.last_error,
                    )
                )
                continue
            checkpoint = await self.store.checkpoint(name)
            head = await self.event_store.head_position()
            lag_seconds = 0.0
            if head > checkpoint.position:
                page = await self.event_store.read_all(after=checkpoint.position, limit=1)
                if page:
                    lag_seconds = max(0.0, self._clock() - page[0].recorded_at.timestamp())
            reports.append(
                RelayReport(
                    destination=name,
                    active=False,
                    state="waiting" if self._contending else "elsewhere",
                    checkpoint=checkpoint.position,
                    head=head,
                    lag_events=max(0, head - checkpoint.position),
                    lag_seconds=round(lag_seconds, 3),
                    parked=len(await self.store.parked(name)),
                    published=0,
                    breaker=None,
                    last_error=None,
                )
            )
        return reports

    # -- parked messages (the relay's dead letters) ---------------------------------------

    async def parked(self, destination: str | None = None) -> list[ParkedMessage]:
        """Parked messages of one destination or of all, each destination in position order."""
        names = [self._known(destination)] if destination is not None else list(self.destinations)
        letters: list[ParkedMessage] = []
        for name in names:
            letters.extend(await self.store.parked(name))
        return letters

    async def retry(self, destination: str, *, stream_id: str | None = None) -> int:
        """Publish ``destination``'s parked messages again (all, or one stream's), in order;
        return how many went. Only in the process that relays to it."""
        return await self._relay(destination).retry(stream_id)

    async def skip(self, destination: str, *, stream_id: str | None = None) -> int:
        """Give up ``destination``'s parked messages, sending skip markers in their place;
        return how many. Only in the process that relays to it."""
        return await self._relay(destination).skip(stream_id)

    def _known(self, destination: str) -> str:
        if destination not in self.destinations:
            raise RelayNotActiveError(destination, self.active())
        return destination

    def _relay(self, destination: str) -> Relay:
        relay = self._active.get(self._known(destination))
        if relay is None:
            raise RelayNotActiveError(destination, self.active())
        return relay
