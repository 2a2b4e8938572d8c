"""The composition root: the only place that constructs adapters.

``bootstrap(service, settings)`` opens the stores named by the settings' URLs, builds the
codec, the buses with their middleware, and a runner per projection, and returns the App.

Projections named in ``settings.inline_projections`` (single-database mode) are prepared,
brought up to date and attached to the event store here, so the App's first append already
applies them; their runners (``InlineRunner``) only rebuild.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from twofold.application.app import App, Service
from twofold.application.commands import CommandBus
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

__all__ = ["bootstrap", "open_event_store", "open_read_store"]


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


async def open_event_store(url: str) -> tuple[EventStore, IdempotencyStore]:
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        from twofold.adapters.memory.event_store import InMemoryEventStore
        from twofold.adapters.memory.idempotency import InMemoryIdempotencyStore

        memory = InMemoryEventStore()
        return memory, InMemoryIdempotencyStore(memory)
    if scheme == "sqlite":
        from twofold.adapters.sqlite.event_store import SQLiteEventStore
        from twofold.adapters.sqlite.idempotency import SQLiteIdempotencyStore

        store = await SQLiteEventStore.open(sqlite_path(url, "TWOFOLD_EVENT_STORE"))
        return store, SQLiteIdempotencyStore(store)
    if scheme in ("postgresql", "postgres"):
        from twofold.adapters.postgres import open_postgres_event_store

        return await open_postgres_event_store(url)
    raise ConfigurationError(
        f"TWOFOLD_EVENT_STORE {url!r}: unknown scheme {scheme!r}; use sqlite:///file.db, "
        "postgresql://host/db or memory://"
    )


async def open_read_store(url: str) -> ReadStore:
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        from twofold.adapters.sqlite.read_store import SQLiteReadStore

        return await SQLiteReadStore.open(sqlite_path(url, "TWOFOLD_READ_STORE"))
    if scheme in ("postgresql", "postgres"):
        from twofold.adapters.postgres import open_postgres_read_store

        return await open_postgres_read_store(url)
    raise ConfigurationError(
        f"TWOFOLD_READ_STORE {url!r}: unknown scheme {scheme!r}; use sqlite:///views.db or "
        "postgresql://host/db"
    )


async def bootstrap(service: Service, settings: Settings | None = None) -> App:
    """Build the App for ``service`` from ``settings`` (default: the environment)."""
    settings = settings if settings is not None else Settings.from_env()
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
