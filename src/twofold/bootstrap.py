"""The composition root: the only place that constructs adapters.

``bootstrap(service, settings)`` opens the stores named by the settings' URLs, builds the
codec, the buses with their middleware, and a runner per projection, and returns the App.

Projections named in ``settings.inline_projections`` (single-database mode) are prepared,
brought up to date and attached to the event store here, so the App's first append already
applies them; their runners (``InlineRunner``) only rebuild.

The relay (docs/relay.md) is wired here too: ``TWOFOLD_BUS`` names the destinations, the
scheme table opens their publishers (and, for ``twofold worker --source``, their sources),
and the event store's scheme gives the relay's store (its checkpoints, in the event store's
own database) and its lease (one relay per destination at a time). ``bootstrap`` gives the
App a ``RelayHost`` (run when ``TWOFOLD_RELAY=run``), ``bootstrap_relay`` builds one for
``twofold relay``, and ``bootstrap_bus_worker`` a read service's ``BusWorker``.

With ``settings.cache`` (``TWOFOLD_CACHE=redis://...``) the QueryBus reads through a
``CachedViews`` in front of the read store, every runner hands its commits to one
``CacheInvalidator``, and the App reports and closes the cache (``App.cache``). Keys live
under a namespace per service and read store (``<service>-<digest of the read store>``,
unless the URL names one), and an epoch per read-store generation (docs/cache.md).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from twofold.application.app import App, Service
from twofold.application.cache import CacheSettings, PositionedReader, ViewCache
from twofold.application.cache_invalidation import CacheInvalidator
from twofold.application.cache_views import CachedViews, owners_of
from twofold.application.caching import Caching
from twofold.application.commands import CommandBus
from twofold.application.coordination import Coordination, InProcess
from twofold.application.inline import InlineRunner
from twofold.application.metrics import Metrics
from twofold.application.middleware import default_middleware
from twofold.application.observe import ObserveCommands, ProjectionGauges
from twofold.application.ports import EventStore, IdempotencyStore
from twofold.application.positions import PositionTracker
from twofold.application.projections import Projection
from twofold.application.queries import QueryBus
from twofold.application.relay.core import Relay
from twofold.application.relay.host import RelayDestination, RelayHost
from twofold.application.relay.lease import InProcessLease, RelayLease
from twofold.application.relay.publisher import Publisher
from twofold.application.relay.remote import BusProjectionRunner
from twofold.application.relay.source import BusSource
from twofold.application.relay.store import RelayStore
from twofold.application.relay.worker import BusWorker
from twofold.application.repository import Repository
from twofold.application.runner import ProjectionRunner
from twofold.application.tracing import NoTracer, Tracer
from twofold.application.views import ReadStore, ViewReader
from twofold.codec import Codec
from twofold.errors import ConfigurationError
from twofold.settings import Settings

__all__ = [
    "BACKENDS",
    "Backend",
    "bootstrap",
    "bootstrap_bus_worker",
    "bootstrap_relay",
    "check_settings",
    "check_shared_projections",
    "open_event_store",
    "open_publisher",
    "open_read_store",
    "open_source",
]


def sqlite_path(url: str, setting: str) -> str:
    """``sqlite:///relative.db``, ``sqlite:////abs/path.db`` or ``sqlite://:memory:``."""
    parts = urlsplit(url)
    if parts.scheme != "sqlite":
        raise ConfigurationError(f"{setting} {url!r} is not a sqlite:// URL")
    path = url[len("sqlite://") :]
    if path.startswith("/"):
        path = path[1:]
    if not path:
        raise ConfigurationError(
            f"{setting} {url!r} names no file; use sqlite:///twofold.db (relative) or "
            "sqlite:////absolute/path.db"
        )
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    return path


# -- the openers, one per URL scheme ------------------------------------------------------


async def _memory_events(url: str) -> tuple[EventStore, IdempotencyStore]:
    from twofold.adapters.memory.event_store import InMemoryEventStore
    from twofold.adapters.memory.idempotency import InMemoryIdempotencyStore

    memory = InMemoryEventStore()
    return memory, InMemoryIdempotencyStore(memory)


async def _sqlite_events(url: str) -> tuple[EventStore, IdempotencyStore]:
    from twofold.adapters.sqlite.event_store import SQLiteEventStore
    from twofold.adapters.sqlite.idempotency import SQLiteIdempotencyStore

    store = await SQLiteEventStore.open(sqlite_path(url, "TWOFOLD_EVENT_STORE"))
    return store, SQLiteIdempotencyStore(store)


async def _postgres_events(url: str) -> tuple[EventStore, IdempotencyStore]:
    from twofold.adapters.postgres import open_postgres_event_store

    return await open_postgres_event_store(url)


async def _sqlite_views(url: str) -> ReadStore:
    from twofold.adapters.sqlite.read_store import SQLiteReadStore

    return await SQLiteReadStore.open(sqlite_path(url, "TWOFOLD_READ_STORE"))


async def _postgres_views(url: str) -> ReadStore:
    from twofold.adapters.postgres import open_postgres_read_store

    return await open_postgres_read_store(url)


def _sqlite_coordination(url: str, views: ReadStore, retry: float) -> Coordination:
    path = sqlite_path(url, "TWOFOLD_READ_STORE")
    if path == ":memory:":
        return InProcess()  # views in this process's memory: nobody else can share them
    from twofold.adapters.sqlite.coordination import FileLockCoordination

    return FileLockCoordination(path, retry_interval=retry)


def _sqlite_cache_reads(views: ReadStore) -> PositionedReader:
    from twofold.adapters.sqlite.cache_reads import SQLitePositionedReader
    from twofold.adapters.sqlite.read_store import SQLiteReadStore

    assert isinstance(views, SQLiteReadStore)
    return SQLitePositionedReader(views)


def _postgres_cache_reads(views: ReadStore) -> PositionedReader:
    from twofold.adapters.postgres.cache_reads import PostgresPositionedReader
    from twofold.adapters.postgres.read_store import PostgresReadStore

    assert isinstance(views, PostgresReadStore)
    return PostgresPositionedReader(views)


def _redis_cache_settings(url: str) -> tuple[str, CacheSettings]:
    try:
        from twofold.adapters.redis.cache import settings_from_url
    except ImportError as error:
        raise ConfigurationError(
            f"TWOFOLD_CACHE {url!r} needs the Redis client: pip install 'twofold[redis]' ({error})"
        ) from None
    return settings_from_url(url)


def _redis_cache(url: str, settings: CacheSettings) -> ViewCache:
    from twofold.adapters.redis.cache import RedisViewCache

    return RedisViewCache.open(url, settings)


def _postgres_coordination(url: str, views: ReadStore, retry: float) -> Coordination:
    from twofold.adapters.postgres.projections.coordination import LeaseCoordination
    from twofold.adapters.postgres.read_store import PostgresReadStore

    assert isinstance(views, PostgresReadStore)
    return LeaseCoordination(views, retry_interval=retry)


async def _memory_relay_store(url: str, events: EventStore) -> RelayStore:
    from twofold.adapters.memory.relay_store import MemoryRelayStore

    return MemoryRelayStore()


async def _sqlite_relay_store(url: str, events: EventStore) -> RelayStore:
    from twofold.adapters.sqlite.relay_store import SQLiteRelayStore

    path = sqlite_path(url, "TWOFOLD_EVENT_STORE")
    if path == ":memory:":
        raise ConfigurationError(
            "the relay keeps its checkpoints beside the events, which sqlite://:memory: "
            "cannot share; use sqlite:///events.db"
        )
    return await SQLiteRelayStore.open(path)


async def _postgres_relay_store(url: str, events: EventStore) -> RelayStore:
    from twofold.adapters.postgres.relay_store import open_postgres_relay_store

    return await open_postgres_relay_store(url)


def _memory_relay_lease(url: str, destination: str, retry: float) -> RelayLease:
    return InProcessLease()  # events in this process's memory: nobody else can relay them


def _sqlite_relay_lease(url: str, destination: str, retry: float) -> RelayLease:
    from twofold.adapters.sqlite.relay_lease import FileRelayLease

    path = sqlite_path(url, "TWOFOLD_EVENT_STORE")
    return FileRelayLease(path, destination, retry_interval=retry)


def _postgres_relay_lease(url: str, destination: str, retry: float) -> RelayLease:
    from twofold.adapters.postgres import split_schema
    from twofold.adapters.postgres.relay_lease import PostgresRelayLease

    conninfo, schema = split_schema(url)
    return PostgresRelayLease(
        conninfo, schema=schema, destination=destination, retry_interval=retry
    )


def _nats_publisher(url: str) -> Publisher:
    from twofold.adapters.nats import open_nats_publisher

    return open_nats_publisher(url)


def _kafka_publisher(url: str) -> Publisher:
    from twofold.adapters.kafka import open_kafka_publisher

    return open_kafka_publisher(url)


def _redis_publisher(url: str) -> Publisher:
    from twofold.adapters.redis_streams import open_redis_publisher

    return open_redis_publisher(url)


def _nats_source(url: str) -> BusSource:
    from twofold.adapters.nats.source import open_nats_source

    return open_nats_source(url)


def _kafka_source(url: str) -> BusSource:
    from twofold.adapters.kafka.source import open_kafka_source

    return open_kafka_source(url)


def _redis_source(url: str) -> BusSource:
    from twofold.adapters.redis_streams.source import open_redis_source

    return open_redis_source(url)


@dataclasses.dataclass(frozen=True)
class Backend:
    """What one URL scheme opens: an event store, a read store, and the coordination of
    the processes that share such a read store; beside an event store, the relay's store
    and lease; a broker's publisher (a relay destination) and source (for a bus worker);
    beside a read store, the reads of its views with their positions (for a cache in front
    of them); a cache (``cache_settings`` parses the cache URL's options, ``cache`` opens
    it)."""

    events: Callable[[str], Awaitable[tuple[EventStore, IdempotencyStore]]] | None = None
    views: Callable[[str], Awaitable[ReadStore]] | None = None
    coordination: Callable[[str, ReadStore, float], Coordination] | None = None
    relay_store: Callable[[str, EventStore], Awaitable[RelayStore]] | None = None
    relay_lease: Callable[[str, str, float], RelayLease] | None = None
    publisher: Callable[[str], Publisher] | None = None
    source: Callable[[str], BusSource] | None = None
    extra: str | None = None
    """The optional dependency (``pip install 'twofold[extra]'``) the adapter needs."""
    cache_reads: Callable[[ReadStore], PositionedReader] | None = None
    cache_settings: Callable[[str], tuple[str, CacheSettings]] | None = None
    cache: Callable[[str, CacheSettings], ViewCache] | None = None


_POSTGRES = Backend(
    _postgres_events,
    _postgres_views,
    _postgres_coordination,
    _postgres_relay_store,
    _postgres_relay_lease,
    extra="postgres",
    cache_reads=_postgres_cache_reads,
)
_REDIS = Backend(
    publisher=_redis_publisher,
    source=_redis_source,
    extra="redis",
    cache_settings=_redis_cache_settings,
    cache=_redis_cache,
)
BACKENDS: dict[str, Backend] = {
    "memory": Backend(
        events=_memory_events, relay_store=_memory_relay_store, relay_lease=_memory_relay_lease
    ),
    "sqlite": Backend(
        _sqlite_events,
        _sqlite_views,
        _sqlite_coordination,
        _sqlite_relay_store,
        _sqlite_relay_lease,
        cache_reads=_sqlite_cache_reads,
    ),
    "postgresql": _POSTGRES,
    "postgres": _POSTGRES,
    "nats": Backend(publisher=_nats_publisher, source=_nats_source, extra="nats"),
    "kafka": Backend(publisher=_kafka_publisher, source=_kafka_source, extra="kafka"),
    "redis": _REDIS,
    "rediss": _REDIS,
    "unix": Backend(cache_settings=_redis_cache_settings, cache=_redis_cache, extra="redis"),
}
"""URL scheme -> what it opens; consulted once, by ``bootstrap``."""


def _backend(setting: str, url: str, role: str) -> Backend:
    scheme = urlsplit(url).scheme
    backend = BACKENDS.get(scheme)
    if backend is None or getattr(backend, role) is None:
        known = sorted(name for name, b in BACKENDS.items() if getattr(b, role) is not None)
        what = f"unknown scheme {scheme!r}" if backend is None else f"{scheme}:// holds no {role}"
        raise ConfigurationError(
            f"{setting} {url!r}: {what}; use one of {', '.join(s + '://' for s in known)}"
        )
    return backend


def check_settings(settings: Settings) -> None:
    """Every problem with the stores' and the bus's URLs, one line each, in one
    ConfigurationError. A bus URL's options are checked by building its publisher (which
    connects to nothing)."""
    problems: list[str] = []
    for setting, url, role in (
        ("TWOFOLD_EVENT_STORE", settings.event_store, "events"),
        ("TWOFOLD_READ_STORE", settings.read_store, "views"),
    ):
        try:
            _backend(setting, url, role)
        except ConfigurationError as error:
            problems.append(str(error))
    destinations: dict[str, str] = {}
    for url in settings.bus_urls:
        try:
            destination = open_publisher(url).destination
        except ConfigurationError as error:
            problems.append(_one_line(error))
            continue
        if destination in destinations:
            problems.append(
                f"TWOFOLD_BUS names the destination {destination} twice "
                f"({destinations[destination]!r} and {_public(url)!r}); name each once"
            )
        destinations[destination] = _public(url)
    problems.extend(_cache_problems(settings))
    if problems:
        raise ConfigurationError("\n".join(problems))


def _one_line(error: ConfigurationError) -> str:
    text = str(error)
    return text if text.startswith("TWOFOLD_BUS") else f"TWOFOLD_BUS: {text}"


def _public(url: str) -> str:
    parts = urlsplit(url)
    return url if parts.password is None else url.replace(f":{parts.password}@", ":***@", 1)


def open_publisher(url: str) -> Publisher:
    """The publisher a ``TWOFOLD_BUS`` URL names (not connected yet)."""
    backend = _backend("TWOFOLD_BUS", url, "publisher")
    assert backend.publisher is not None
    return _needing(backend, "TWOFOLD_BUS", url, backend.publisher)


def open_source(url: str, *, group: str | None = None) -> BusSource:
    """The source ``twofold worker --source`` reads; ``group`` replaces the URL's."""
    backend = _backend("--source", url, "source")
    assert backend.source is not None
    if group is not None:
        parts = urlsplit(url)
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "group"]
        url = urlunsplit(parts._replace(query=urlencode([*query, ("group", group)])))
    return _needing(backend, "--source", url, backend.source)


T = TypeVar("T")


def _needing(backend: Backend, setting: str, url: str, opener: Callable[[str], T]) -> T:
    try:
        return opener(url)
    except ImportError as error:
        raise ConfigurationError(
            f"{setting} {_public(url)!r} needs a package that is not installed ({error.name}); "
            f"pip install 'twofold[{backend.extra}]'"
        ) from error


_CACHE_OVERRIDES = (
    ("TWOFOLD_CACHE_TTL", "cache_ttl", "ttl"),
    ("TWOFOLD_CACHE_NOT_FOUND_TTL", "cache_not_found_ttl", "not_found_ttl"),
    ("TWOFOLD_CACHE_LOCAL", "cache_local", "local_entries"),
)


def _cache_problems(settings: Settings) -> list[str]:
    """What is wrong with the cache's settings, one line each (none without a cache)."""
    url = settings.cache
    if url is None:
        return [
            f"{variable} needs TWOFOLD_CACHE (a redis:// URL); set it, or unset {variable}"
            for variable, field, _ in _CACHE_OVERRIDES
            if getattr(settings, field) is not None
        ]
    try:
        _backend("TWOFOLD_CACHE", url, "cache")
    except ConfigurationError as error:
        return [str(error)]
    problems: list[str] = []
    in_url = {key for key, _ in parse_qsl(urlsplit(url).query, keep_blank_values=True)}
    for variable, field, option in _CACHE_OVERRIDES:
        if getattr(settings, field) is not None and option in in_url:
            problems.append(f"TWOFOLD_CACHE sets {option} and {variable} sets it too; say it once")
    try:
        cache_settings(settings, namespace="twofold")
    except ConfigurationError as error:
        problems.append(str(error))
    views = BACKENDS.get(urlsplit(settings.read_store).scheme)
    if views is not None and views.views is not None and views.cache_reads is None:
        problems.append(
            f"TWOFOLD_CACHE: the read store {settings.read_store.split('://')[0]}:// has no "
            "cache reads; put the views in sqlite:// or postgresql://, or unset TWOFOLD_CACHE"
        )
    return problems


def cache_settings(settings: Settings, *, namespace: str) -> tuple[str, CacheSettings]:
    """The cache's connection URL and its settings: the URL's options, then the
    ``TWOFOLD_CACHE_*`` settings; ``namespace`` unless the URL names one."""
    assert settings.cache is not None
    parse = _backend("TWOFOLD_CACHE", settings.cache, "cache").cache_settings
    assert parse is not None
    url, parsed = parse(settings.cache)
    in_url = {key for key, _ in parse_qsl(urlsplit(settings.cache).query)}
    changes: dict[str, object] = {} if "namespace" in in_url else {"namespace": namespace}
    for _, field, option in _CACHE_OVERRIDES:
        value = getattr(settings, field)
        if value is not None:
            changes[option] = value
    try:
        return url, dataclasses.replace(parsed, **changes)  # type: ignore[arg-type]
    except ConfigurationError as error:
        raise ConfigurationError(f"TWOFOLD_CACHE: {error}") from None


def cache_namespace(service: str, read_store: str) -> str:
    """The default key prefix: the service's name and a digest of its read store's place
    (services, or copies of one service over other stores, sharing a Redis differ)."""
    place = read_store
    if urlsplit(read_store).scheme == "sqlite" and not read_store.startswith("sqlite://:"):
        place = "sqlite://" + os.path.abspath(read_store[len("sqlite:///") :])
    digest = hashlib.sha256(place.encode()).hexdigest()[:10]
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", service)[:40] or "app"
    return f"{name}-{digest}"


async def open_event_store(url: str) -> tuple[EventStore, IdempotencyStore]:
    opener = _backend("TWOFOLD_EVENT_STORE", url, "events").events
    assert opener is not None
    return await opener(url)


async def open_read_store(url: str) -> ReadStore:
    opener = _backend("TWOFOLD_READ_STORE", url, "views").views
    assert opener is not None
    return await opener(url)


def open_metrics() -> Metrics:
    """Prometheus metrics: this process's own, or with ``PROMETHEUS_MULTIPROC_DIR`` set
    (``twofold serve --workers N`` sets it), every worker's added up."""
    from twofold.adapters.prometheus import PrometheusMetrics

    return PrometheusMetrics()


def open_tracer() -> Tracer:
    """OpenTelemetry's tracer when the ``otel`` extra is installed; otherwise none."""
    try:
        from twofold.adapters.otel import OpenTelemetryTracer
    except ImportError:
        return NoTracer()
    return OpenTelemetryTracer()


async def bootstrap(
    service: Service,
    settings: Settings | None = None,
    *,
    retry_interval: float = 1.0,
    tracer: Tracer | None = None,
) -> App:
    """Build the App for ``service`` from ``settings`` (default: the environment).

    ``retry_interval``: seconds between a waiting process's attempts to take over the
    projections (a lock or lease another process holds). ``tracer``: where spans go
    (default: OpenTelemetry's global tracer provider, when the ``otel`` extra is installed).
    """
    settings = settings if settings is not None else Settings.from_env()
    check_settings(settings)
    if not retry_interval > 0:
        raise ConfigurationError(
            f"the retry interval must be above 0 seconds, not {retry_interval}"
        )
    metrics = open_metrics()
    tracer = tracer if tracer is not None else open_tracer()
    codec = Codec(service.events)
    if service.configure_codec is not None:
        service.configure_codec(codec)
    projections = service.projection_instances()
    inline = inline_names(settings, projections)
    if inline:
        _check_inline_urls(settings)
    event_store, idempotency = await open_event_store(settings.event_store)
    try:
        read_store = await open_read_store(settings.read_store)
    except BaseException:
        await event_store.close()
        raise
    repository = Repository(event_store, codec, metrics=metrics, tracer=tracer)
    commands = CommandBus(
        repository,
        middleware=[ObserveCommands(metrics, tracer), *default_middleware(idempotency)],
    )
    positions = PositionTracker()
    caching: Caching | None = None
    views: ViewReader = read_store
    if settings.cache is not None:
        try:
            caching = await _open_cache(
                settings, service, read_store, projections, positions, metrics
            )
        except BaseException:
            await read_store.close()
            await event_store.close()
            raise
        views = caching.views
    queries = QueryBus(
        views, positions, head=event_store.head_position, metrics=metrics, tracer=tracer
    )
    service.register(commands, queries)
    invalidator = None if caching is None else caching.invalidator
    runners: list[ProjectionRunner] = []
    for projection in projections:
        if projection.name in inline:
            runners.append(
                InlineRunner(
                    projection,
                    event_store=event_store,
                    read_store=read_store,
                    codec=codec,
                    positions=positions,
                    switch=event_store.switch_inline,  # type: ignore[attr-defined]
                    metrics=metrics,
                    tracer=tracer,
                )
            )
        else:
            runners.append(
                ProjectionRunner(
                    projection,
                    event_store=event_store,
                    read_store=read_store,
                    codec=codec,
                    positions=positions,
                    invalidator=invalidator,
                    metrics=metrics,
                    tracer=tracer,
                )
            )
    metrics.on_scrape(
        ProjectionGauges(event_store, read_store, lambda: [runner.name for runner in runners])
    )
    app = App(
        service=service,
        codec=codec,
        event_store=event_store,
        read_store=read_store,
        commands=commands,
        queries=queries,
        positions=positions,
        runners=runners,
        idempotency=idempotency,
        run_projections=settings.projections == "run",
        coordination=_coordination(settings, read_store, retry_interval),
        settings=settings,
        metrics=metrics,
        tracer=tracer,
        cache=caching,
    )
    app.on_close(event_store.close)
    app.on_close(read_store.close)
    close_idempotency = getattr(idempotency, "close", None)
    if close_idempotency is not None:
        app.on_close(close_idempotency)
    if settings.bus_urls:
        try:
            app.relays = await _relay_host(settings, event_store, retry_interval, metrics, tracer)
        except BaseException:
            await app.close()
            raise
        app.run_relay = settings.relay == "run"
        metrics.on_scrape(app.relays.report_metrics)
    if caching is not None:
        app.on_close(caching.close)  # before the stores (closers run last registered first)
    if inline:
        try:
            await _attach_inline(app, settings, [r for r in runners if r.name in inline])
        except BaseException:
            await app.close()
            raise
    return app


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


async def _open_cache(
    settings: Settings,
    service: Service,
    read_store: ReadStore,
    projections: list[Projection],
    positions: PositionTracker,
    metrics: Metrics,
) -> Caching:
    """The cache in front of ``read_store``, as ``settings.cache`` says."""
    url, options = cache_settings(
        settings, namespace=cache_namespace(service.name, settings.read_store)
    )
    reads = _backend("TWOFOLD_READ_STORE", settings.read_store, "views").cache_reads
    opener = _backend("TWOFOLD_CACHE", url, "cache").cache
    assert reads is not None and opener is not None
    cache = opener(url, options)
    views = CachedViews(
        read_store,
        reads(read_store),
        cache,
        owners=owners_of(projections),
        settings=options,
        positions=positions,
    )
    await views.start()  # the in-process cache's notices (with local_entries)
    views.metrics.record_to(metrics)
    return Caching(views, CacheInvalidator(cache, metrics=views.metrics))


def check_shared_projections(settings: Settings, projections: Sequence[str] | None) -> None:
    """Refuse, before anything is opened, to share projections over views that other
    processes cannot share, or to run some projections of a SQLite store (its one lock
    covers them all). ``twofold worker`` asks this first."""
    views = urlsplit(settings.read_store).scheme
    private = views == "sqlite" and sqlite_path(settings.read_store, "TWOFOLD_READ_STORE") in (
        ":memory:",
    )
    if urlsplit(settings.event_store).scheme == "memory" or private or views not in BACKENDS:
        raise ConfigurationError(
            "twofold worker shares projections through a lock on a SQLite file (one host) "
            "or PostgreSQL leases; set TWOFOLD_EVENT_STORE and TWOFOLD_READ_STORE to "
            "sqlite:///file.db or postgresql://... "
            f"({settings.event_store!r} and {settings.read_store!r} cannot be shared with "
            "other processes)"
        )
    if views == "sqlite" and projections:
        raise ConfigurationError(
            "on a SQLite read store one process runs every projection (it holds the file's "
            "lock), so --projection cannot choose some; leave it out, or use a PostgreSQL "
            "read store, whose projections are leased one by one"
        )


def _coordination(settings: Settings, views: ReadStore, retry_interval: float) -> Coordination:
    """By the read store's scheme; in this process alone when the events are in memory
    (no other process can append to them or run projections over them)."""
    if urlsplit(settings.event_store).scheme == "memory":
        return InProcess()
    url = settings.read_store
    make = _backend("TWOFOLD_READ_STORE", url, "views").coordination
    return InProcess() if make is None else make(url, views, retry_interval)


def inline_names(settings: Settings, projections: list[Projection]) -> frozenset[str]:
    """The projections to apply inline: ``settings.inline_projections``, ``*`` expanded."""
    wanted = settings.inline_projections
    known = [p.name for p in projections]
    if "*" in wanted:
        return frozenset(known)
    unknown = sorted(wanted - set(known))
    if unknown:
        raise ConfigurationError(
            f"TWOFOLD_INLINE_PROJECTIONS names {', '.join(map(repr, unknown))}, which this "
            f"service does not declare; its projections are {', '.join(known) or '(none)'}"
        )
    return wanted


def _check_inline_urls(settings: Settings) -> None:
    schemes = {urlsplit(settings.event_store).scheme, urlsplit(settings.read_store).scheme}
    if not schemes <= {"postgresql", "postgres"}:
        raise ConfigurationError(
            "projections applied inline (TWOFOLD_INLINE_PROJECTIONS) need the event store and "
            "the read store in one PostgreSQL database and schema: set TWOFOLD_EVENT_STORE and "
            "TWOFOLD_READ_STORE to the same postgresql://...?schema=... URL, or empty "
            f"TWOFOLD_INLINE_PROJECTIONS (now: {settings.event_store.split('://')[0]}:// and "
            f"{settings.read_store.split('://')[0]}://)"
        )


async def _attach_inline(app: App, settings: Settings, runners: list[ProjectionRunner]) -> None:
    """Single-database mode: prepare, catch up and attach each inline projection."""
    from twofold.adapters.postgres import PostgresEventStore, PostgresReadStore
    from twofold.adapters.postgres.inline import InlineProjection, check_single_database

    await check_single_database(settings.event_store, settings.read_store)
    store, views = app.event_store, app.read_store
    assert isinstance(store, PostgresEventStore) and isinstance(views, PostgresReadStore)
    for runner in runners:
        await runner.start()  # bookkeeping and tables of the active copy
        await runner.catch_up()  # the bulk, in batches, before appends hold the lock
        await store.attach_inline(
            InlineProjection(
                runner.name,
                handlers=runner.projection.bind(app.codec),
                codec=app.codec,
                views=views.views,
            )
        )
        app.positions.mark_inline(runner.name)
