"""The composition root: the only place that constructs adapters.

``bootstrap(service, settings)`` opens the stores named by the settings' URLs, builds the
codec, the buses with their middleware, and a runner per projection, and returns the App.

Projections named in ``settings.inline_projections`` (single-database mode) are prepared,
brought up to date and attached to the event store here, so the App's first append already
applies them; their runners (``InlineRunner``) only rebuild.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from twofold.application.app import App, Service
from twofold.application.commands import CommandBus
from twofold.application.coordination import Coordination, InProcess
from twofold.application.inline import InlineRunner
from twofold.application.middleware import default_middleware
from twofold.application.ports import EventStore, IdempotencyStore
from twofold.application.positions import PositionTracker
from twofold.application.projections import Projection
from twofold.application.queries import QueryBus
from twofold.application.repository import Repository
from twofold.application.runner import ProjectionRunner
from twofold.application.views import ReadStore
from twofold.codec import Codec
from twofold.errors import ConfigurationError
from twofold.settings import Settings

__all__ = [
    "BACKENDS",
    "Backend",
    "bootstrap",
    "check_settings",
    "check_shared_projections",
    "open_event_store",
    "open_read_store",
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


def _postgres_coordination(url: str, views: ReadStore, retry: float) -> Coordination:
    from twofold.adapters.postgres.coordination import LeaseCoordination
    from twofold.adapters.postgres.read_store import PostgresReadStore

    assert isinstance(views, PostgresReadStore)
    return LeaseCoordination(views, retry_interval=retry)


@dataclasses.dataclass(frozen=True)
class Backend:
    """What one URL scheme opens: an event store, a read store, and the coordination of
    the processes that share such a read store."""

    events: Callable[[str], Awaitable[tuple[EventStore, IdempotencyStore]]] | None = None
    views: Callable[[str], Awaitable[ReadStore]] | None = None
    coordination: Callable[[str, ReadStore, float], Coordination] | None = None


_POSTGRES = Backend(_postgres_events, _postgres_views, _postgres_coordination)
BACKENDS: dict[str, Backend] = {
    "memory": Backend(events=_memory_events),
    "sqlite": Backend(_sqlite_events, _sqlite_views, _sqlite_coordination),
    "postgresql": _POSTGRES,
    "postgres": _POSTGRES,
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
    """Every problem with the stores' URLs, one line each, in one ConfigurationError."""
    problems: list[str] = []
    for setting, url, role in (
        ("TWOFOLD_EVENT_STORE", settings.event_store, "events"),
        ("TWOFOLD_READ_STORE", settings.read_store, "views"),
    ):
        try:
            _backend(setting, url, role)
        except ConfigurationError as error:
            problems.append(str(error))
    if problems:
        raise ConfigurationError("\n".join(problems))


async def open_event_store(url: str) -> tuple[EventStore, IdempotencyStore]:
    opener = _backend("TWOFOLD_EVENT_STORE", url, "events").events
    assert opener is not None
    return await opener(url)


async def open_read_store(url: str) -> ReadStore:
    opener = _backend("TWOFOLD_READ_STORE", url, "views").views
    assert opener is not None
    return await opener(url)


async def bootstrap(
    service: Service, settings: Settings | None = None, *, retry_interval: float = 1.0
) -> App:
    """Build the App for ``service`` from ``settings`` (default: the environment).

    ``retry_interval``: seconds between a waiting process's attempts to take over the
    projections (a lock or lease another process holds).
    """
    settings = settings if settings is not None else Settings.from_env()
    check_settings(settings)
    if not retry_interval > 0:
        raise ConfigurationError(
            f"the retry interval must be above 0 seconds, not {retry_interval}"
        )
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
    repository = Repository(event_store, codec)
    commands = CommandBus(repository, middleware=default_middleware(idempotency))
    positions = PositionTracker()
    queries = QueryBus(read_store, positions, head=event_store.head_position)
    service.register(commands, queries)
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
                )
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
    )
    app.on_close(event_store.close)
    app.on_close(read_store.close)
    close_idempotency = getattr(idempotency, "close", None)
    if close_idempotency is not None:
        app.on_close(close_idempotency)
    if inline:
        try:
            await _attach_inline(app, settings, [r for r in runners if r.name in inline])
        except BaseException:
            await app.close()
            raise
    return app


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
