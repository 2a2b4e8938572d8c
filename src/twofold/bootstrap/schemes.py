"""The scheme table: which URL scheme opens which adapter.

``BACKENDS`` maps a URL scheme (memory, sqlite, postgresql, nats, kafka, redis, unix) to a
``Backend``: its event store, read store, coordination, relay store and lease, publisher and
source, cache reads and cache. The openers here import their adapter only when called, so a
missing optional dependency is named (``pip install 'twofold[extra]'``) when its scheme is
used. ``open_event_store``, ``open_read_store``, ``open_publisher`` and ``open_source`` open
what a setting's URL names.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from twofold.application.cache import CacheSettings, PositionedReader, ViewCache
from twofold.application.coordination import Coordination, InProcess
from twofold.application.ports import EventStore, IdempotencyStore
from twofold.application.relay.lease import InProcessLease, RelayLease
from twofold.application.relay.publisher import Publisher
from twofold.application.relay.source import BusSource
from twofold.application.relay.store import RelayStore
from twofold.application.views import ReadStore
from twofold.errors import ConfigurationError


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


async def open_event_store(url: str) -> tuple[EventStore, IdempotencyStore]:
    opener = _backend("TWOFOLD_EVENT_STORE", url, "events").events
    assert opener is not None
    return await opener(url)


async def open_read_store(url: str) -> ReadStore:
    opener = _backend("TWOFOLD_READ_STORE", url, "views").views
    assert opener is not None
    return await opener(url)
