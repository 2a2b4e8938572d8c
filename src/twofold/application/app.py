"""A user's service, declared as data (``Service``), and its running form (``App``).

``Service`` says what the application is: its events, how to register its command and
query handlers, its projections. ``twofold.bootstrap`` turns it into an ``App`` wired to
the stores the settings name; nothing else constructs adapters.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable, Collection, Sequence
from types import TracebackType
from typing import Any, TypeVar

from twofold.application.caching import Caching
from twofold.application.commands import CommandBus, CommandResult
from twofold.application.coordination import Coordination, InProcess
from twofold.application.failure import CircuitBreaker
from twofold.application.metrics import Metrics, NoMetrics
from twofold.application.operations import Operations
from twofold.application.ports import EventStore, IdempotencyStore
from twofold.application.positions import PositionTracker
from twofold.application.projections import Projection
from twofold.application.queries import DEFAULT_TIMEOUT, QueryBus
from twofold.application.relay.host import RelayHost, RelayReport
from twofold.application.relay.store import ParkedMessage
from twofold.application.repository import Repository
from twofold.application.runner import ProjectionRunner
from twofold.application.tracing import NoTracer, Tracer
from twofold.application.views import DeadLetter, ReadStore
from twofold.codec import Codec
from twofold.domain.messages import Command, Event, Metadata, Query
from twofold.errors import ConfigurationError, UnknownProjectionError
from twofold.settings import Settings

__all__ = ["App", "Service"]

R = TypeVar("R")
log = logging.getLogger("twofold.app")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Service:
    """What an application is, as plain data.

    - ``register(commands, queries)`` registers its handlers on the two buses;
    - ``projections``: the projection classes (or instances) that build its views;
    - ``events``: every event class (those the aggregates and projections name are found
      anyway; list the rest here);
    - ``configure_codec``: optional, to add upcasters.
    """

    name: str = "app"
    register: Callable[[CommandBus, QueryBus], None]
    projections: Sequence[type[Projection] | Projection] = ()
    events: Sequence[type[Event]] = ()
    configure_codec: Callable[[Codec], None] | None = None

    def projection_instances(self) -> list[Projection]:
        return [p() if isinstance(p, type) else p for p in self.projections]


class App:
    """A running service: stores, buses and projection runners, started and stopped together."""

    def __init__(
        self,
        *,
        service: Service,
        codec: Codec,
        event_store: EventStore,
        read_store: ReadStore,
        commands: CommandBus,
        queries: QueryBus,
        positions: PositionTracker,
        runners: Sequence[ProjectionRunner],
        idempotency: IdempotencyStore | None = None,
        run_projections: bool = True,
        coordination: Coordination | None = None,
        settings: Settings | None = None,
        metrics: Metrics | None = None,
        tracer: Tracer | None = None,
        cache: Caching | None = None,
    ) -> None:
        self.service = service
        self.codec = codec
        self.event_store = event_store
        self.read_store = read_store
        self.commands = commands
        self.queries = queries
        self.positions = positions
        self.runners = {runner.name: runner for runner in runners}
        self.idempotency = idempotency
        self.run_projections = run_projections
        self.coordination: Coordination = coordination if coordination is not None else InProcess()
        self.settings = settings if settings is not None else Settings()
        """What the app was built from (bootstrap's settings)."""
        self.metrics: Metrics = metrics if metrics is not None else NoMetrics()
        """Where the service's figures are recorded (``twofold.application.metrics``);
        ``GET /metrics`` shows them."""
        self.tracer: Tracer = tracer if tracer is not None else NoTracer()
        """Spans of commands, appends, queries and projections (``application.tracing``)."""
        self.cache = cache
        """The cache in front of the views (None: queries read the read store), for health
        and figures; bootstrap wires it into the QueryBus and the runners."""
        self._closers: list[Callable[[], Any]] = []
        self.relays: RelayHost | None = None
        """The relays to ``TWOFOLD_BUS``'s destinations (bootstrap sets it), or None."""
        self.run_relay = False
        """Whether ``start`` contends for the relays' leases (``TWOFOLD_RELAY=run``)."""
        self._operations: Operations | None = None
        self._breakers: dict[str, CircuitBreaker] = {}
        self._verifier: asyncio.Task[None] | None = None

    def add_breaker(self, name: str, breaker: CircuitBreaker) -> None:
        """Show ``breaker`` (around an external call: a bus, a cache) in health and metrics."""
        self._breakers[name] = breaker

    @property
    def breakers(self) -> dict[str, CircuitBreaker]:
        """This process's circuit breakers by name: one per projection runner around the
        stores it reaches (``stores:<projection>``), then those added with ``add_breaker``."""
        found = {f"stores:{name}": runner.breaker for name, runner in sorted(self.runners.items())}
        found.update(self._breakers)
        return found

    @property
    def repository(self) -> Repository:
        return self.commands.repository

    def on_close(self, closer: Callable[[], Any]) -> None:
        """Call ``closer`` (sync or async) when the app closes, last registered first."""
        self._closers.append(closer)

    async def start(self, *, projections: Collection[str] | None = None) -> None:
        """Prepare every projection, then join the processes sharing the read store
        (``coordination``): when ``run_projections``, run or contend for ``projections``
        (default: every one not applied inline); otherwise only follow their checkpoints."""
        for runner in self.runners.values():
            await runner.start()
        names: list[str] = []
        if self.run_projections:
            wanted = list(projections) if projections is not None else list(self.runners)
            for name in wanted:
                self.runner(name)  # an unknown name fails here
            names = [name for name in wanted if not self.positions.is_inline(name)]
        await self.coordination.start(self, run=names)
        if self.relays is not None and self.run_relay:
            await self.relays.start()
        interval = self.settings.verify_interval
        if self.run_projections and interval is not None and self._verifier is None:
            self._verifier = asyncio.create_task(
                self.operations.verify_every(interval), name="scheduled-verify"
            )

    @property
    def runs_projections(self) -> bool:
        """Whether this process applies some projection now."""
        return any(self.coordination.runs(name) for name in self.runners)

    async def attended(self, projection: str) -> bool:
        """Whether some process (this one or another) applies ``projection`` now."""
        return await self.coordination.attended(projection)

    async def close(self) -> None:
        if self._verifier is not None:
            self._verifier.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._verifier
            self._verifier = None
        # The projections and relays stop first: no commit follows the stores' closing.
        if self.relays is not None:
            await self.relays.close()
        await self.coordination.close()
        for closer in reversed(self._closers):
            outcome = closer()
            if asyncio.iscoroutine(outcome):
                await outcome
        self._closers.clear()

    async def __aenter__(self) -> App:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- the two verbs --------------------------------------------------------------------

    async def dispatch(
        self,
        command: Command,
        metadata: Metadata | None = None,
        *,
        idempotency_key: str | None = None,
        expected_version: int | None = None,
    ) -> CommandResult:
        return await self.commands.dispatch(
            command, metadata, idempotency_key=idempotency_key, expected_version=expected_version
        )

    async def ask(
        self, query: Query[R], *, min_position: int | None = None, timeout: float = DEFAULT_TIMEOUT
    ) -> R:
        return await self.queries.ask(query, min_position=min_position, timeout=timeout)

    async def ask_json(
        self,
        query: Query[Any],
        *,
        min_position: int | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> bytes | None:
        """The answer's JSON from the query's JSON handler (QueryBus.ask_json)."""
        return await self.queries.ask_json(query, min_position=min_position, timeout=timeout)

    # -- operations -----------------------------------------------------------------------

    def runner(self, name: str) -> ProjectionRunner:
        runner = self.runners.get(name)
        if runner is None:
            raise UnknownProjectionError(name, list(self.runners))
        return runner

    async def wait_for_projections(
        self, position: int | None = None, timeout: float = 10.0
    ) -> None:
        """Wait until every projection reached ``position`` (default: the head of the log)."""
        if position is None:
            position = await self.event_store.head_position()
        await self.positions.wait(list(self.runners), position, timeout)

    async def rebuild(self, name: str, progress: Callable[[int, int], None] | None = None) -> int:
        """Replay the whole log into a fresh copy of ``name``'s views, then switch to it
        (blue/green); it also ends a stop or a refusal. Returns the new checkpoint.

        ``progress(done, total)``: called after every batch (``ProjectionRunner.rebuild``)."""
        return await self.runner(name).rebuild(progress)

    @property
    def operations(self) -> Operations:
        """Every operation on this app (status, rebuild, pause, dead letters, streams,
        verify): what the CLI and the admin API call."""
        if self._operations is None:
            self._operations = Operations(self)
        return self._operations

    # -- dead letters ---------------------------------------------------------------------
    # From any process over the same stores: the one running the projection takes a
    # release made elsewhere when it sees the projection's revision move (Operations).

    async def dead_letters(self, projection: str | None = None) -> list[DeadLetter]:
        """The parked events of one projection, or of every one, in log order by projection."""
        names = [projection] if projection is not None else sorted(self.runners)
        letters: list[DeadLetter] = []
        for name in names:
            letters.extend(await self.runner(name).dead_letters())
        return letters

    async def retry_dead_letters(self, projection: str, *, stream_id: str | None = None) -> int:
        """Apply ``projection``'s parked events again (all, or one stream's), in order;
        return how many applied. A stream that still fails stays parked."""
        return await self.runner(projection).retry_dead_letters(stream_id)

    async def skip_dead_letters(
        self,
        projection: str,
        *,
        stream_id: str | None = None,
        positions: Collection[int] | None = None,
    ) -> int:
        """Drop ``projection``'s parked events without applying them (all, one stream's,
        or those at ``positions``); return how many were dropped."""
        return await self.runner(projection).skip_dead_letters(stream_id, positions)

    # -- the relay ------------------------------------------------------------------------
    # Retry and skip in the process that relays to the destination (it holds the lease).

    def _relays(self) -> RelayHost:
        if self.relays is None:
            raise ConfigurationError(
                "this app has no relay: set TWOFOLD_BUS to the broker(s) to publish to"
            )
        return self.relays

    async def relay_status(self) -> list[RelayReport]:
        """Each destination's relay: lag in events and seconds, state, breaker, parked."""
        return [] if self.relays is None else await self.relays.reports()

    async def relay_dead_letters(self, destination: str | None = None) -> list[ParkedMessage]:
        """Messages the broker refused for good, with the later events of their streams."""
        return await self._relays().parked(destination)

    async def retry_relay_dead_letters(
        self, destination: str, *, stream_id: str | None = None
    ) -> int:
        """Publish ``destination``'s parked messages again, in order; return how many went."""
        return await self._relays().retry(destination, stream_id=stream_id)

    async def skip_relay_dead_letters(
        self, destination: str, *, stream_id: str | None = None
    ) -> int:
        """Give up ``destination``'s parked messages (skip markers go in their place)."""
        return await self._relays().skip(destination, stream_id=stream_id)
