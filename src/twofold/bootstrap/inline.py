"""Single-database mode: the projections applied inline, in the appending transaction.

Projections named in ``settings.inline_projections`` are prepared, brought up to date and
attached to the event store here, so the App's first append already applies them; their
runners (``InlineRunner``) only rebuild.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from twofold.application.app import App
from twofold.application.projections import Projection
from twofold.application.runner import ProjectionRunner
from twofold.errors import ConfigurationError
from twofold.settings import Settings


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
