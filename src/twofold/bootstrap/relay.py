"""The relay and the bus worker (docs/relay.md).

``TWOFOLD_BUS`` names the destinations; the scheme table opens their publishers (and, for
``twofold worker --source``, their sources), and the event store's scheme gives the relay's
store (its checkpoints, in the event store's own database) and its lease (one relay per
destination at a time). ``_relay_host`` builds the ``RelayHost`` ``bootstrap`` gives the
App (run when ``TWOFOLD_RELAY=run``), ``bootstrap_relay`` one for ``twofold relay``, and
``bootstrap_bus_worker`` a read service's ``BusWorker``.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

from twofold.application.app import Service
from twofold.application.commands import CommandBus
from twofold.application.metrics import Metrics
from twofold.application.ports import EventStore
from twofold.application.positions import PositionTracker
from twofold.application.queries import QueryBus
from twofold.application.relay.core import Relay
from twofold.application.relay.host import RelayDestination, RelayHost
from twofold.application.relay.remote import BusProjectionRunner
from twofold.application.relay.worker import BusWorker
from twofold.application.repository import Repository
from twofold.application.tracing import Tracer
from twofold.bootstrap.observability import open_tracer
from twofold.bootstrap.schemes import (
    _backend,
    open_event_store,
    open_publisher,
    open_read_store,
    open_source,
)
from twofold.bootstrap.settings_check import check_settings
from twofold.codec import Codec
from twofold.errors import ConfigurationError
from twofold.settings import Settings


async def _relay_host(
    settings: Settings,
    event_store: EventStore,
    retry_interval: float,
    metrics: Metrics | None = None,
    tracer: Tracer | None = None,
) -> RelayHost:
    """A RelayHost over ``event_store`` for every ``TWOFOLD_BUS`` destination (not started);
    it closes its relay store when it closes."""
    url = settings.event_store
    backend = _backend("TWOFOLD_EVENT_STORE", url, "events")
    if backend.relay_store is None or backend.relay_lease is None:
        raise ConfigurationError(f"TWOFOLD_EVENT_STORE {url!r} cannot be relayed")
    store = await backend.relay_store(url, event_store)
    try:
        destinations: list[RelayDestination] = []
        for bus_url in settings.bus_urls:
            name = open_publisher(bus_url).destination

            def make_relay(bus_url: str = bus_url) -> Relay:
                return Relay(
                    event_store, open_publisher(bus_url), store, metrics=metrics, tracer=tracer
                )

            lease = backend.relay_lease(url, name, retry_interval)
            destinations.append(RelayDestination(name, make_relay, lease))
        host = RelayHost(
            destinations, event_store=event_store, store=store, retry_interval=retry_interval
        )
    except BaseException:
        await store.close()
        raise
    host.on_close(store.close)
    return host


async def bootstrap_relay(
    settings: Settings, *, retry_interval: float = 1.0, metrics: Metrics | None = None
) -> RelayHost:
    """What ``twofold relay`` runs: the relays of every ``TWOFOLD_BUS`` destination over
    the event store the settings name (not started; ``close`` closes the stores).
    ``metrics``: where the relays record (they report their gauges to it at each read)."""
    check_settings(settings)
    if not settings.bus_urls:
        raise ConfigurationError(
            "twofold relay needs TWOFOLD_BUS, the broker(s) to publish to, such as "
            "nats://127.0.0.1:4222 (several separated by commas)"
        )
    if not retry_interval > 0:
        raise ConfigurationError(
            f"the retry interval must be above 0 seconds, not {retry_interval}"
        )
    if urlsplit(settings.event_store).scheme == "memory":
        raise ConfigurationError(
            "twofold relay runs in a process of its own, which cannot see a memory:// event "
            "store; use sqlite:///file.db or postgresql://..., or run the relay inside "
            "twofold serve (TWOFOLD_RELAY=run)"
        )
    event_store, idempotency = await open_event_store(settings.event_store)
    try:
        host = await _relay_host(settings, event_store, retry_interval, metrics, open_tracer())
    except BaseException:
        await event_store.close()
        raise
    close_idempotency = getattr(idempotency, "close", None)
    if close_idempotency is not None:
        host.on_close(close_idempotency)
    host.on_close(event_store.close)
    if metrics is not None:
        metrics.on_scrape(host.report_metrics)
    return host


async def bootstrap_bus_worker(
    service: Service, settings: Settings, *, source: str, group: str | None = None
) -> BusWorker:
    """What ``twofold worker --source URL`` runs: ``service``'s projections fed from the
    broker at ``source`` into ``TWOFOLD_READ_STORE`` (the event store is not used). Each
    projection reads with the consumer group ``<group>-<projection>`` (``group``: the
    URL's ``group`` option, else the service's name)."""
    check_settings(settings)
    _backend("--source", source, "source")
    codec = Codec(service.events)
    if service.configure_codec is not None:
        service.configure_codec(codec)
    projections = service.projection_instances()
    if group is None:
        group = dict(parse_qsl(urlsplit(source).query)).get("group") or service.name
    sources = [open_source(source, group=f"{group}-{p.name}") for p in projections]
    read_store = await open_read_store(settings.read_store)
    positions = PositionTracker()
    tracer = open_tracer()
    runners = [
        BusProjectionRunner(
            projection,
            source=bus,
            read_store=read_store,
            codec=codec,
            positions=positions,
            tracer=tracer,
        )
        for projection, bus in zip(projections, sources, strict=True)
    ]
    # The service's query handlers answer from these views; its commands go nowhere (a
    # read service writes no events): they are registered on a bus over no store.
    from twofold.adapters.memory.event_store import InMemoryEventStore

    commands = CommandBus(Repository(InMemoryEventStore(), codec))
    queries = QueryBus(read_store, positions)
    service.register(commands, queries)
    worker = BusWorker(runners=runners, read_store=read_store, positions=positions,
                       queries=queries)  # fmt: skip
    worker.on_close(read_store.close)
    for bus in sources:
        worker.on_close(bus.close)
    return worker
