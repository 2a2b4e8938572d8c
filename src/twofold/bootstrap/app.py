"""``bootstrap(service, settings)``: the App, built from the settings' URLs.

It checks the settings, opens the stores named by the URLs, builds the codec, the buses
with their middleware, a runner per projection and the coordination of the processes that
share the read store, and gives the App its cache (``cache.py``), relays (``relay.py``) and
inline projections (``inline.py``).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from twofold.application.app import App, Service
from twofold.application.caching import Caching
from twofold.application.commands import CommandBus
from twofold.application.coordination import Coordination, InProcess
from twofold.application.inline import InlineRunner
from twofold.application.middleware import default_middleware
from twofold.application.observe import ObserveCommands, ProjectionGauges
from twofold.application.positions import PositionTracker
from twofold.application.queries import QueryBus
from twofold.application.repository import Repository
from twofold.application.runner import ProjectionRunner
from twofold.application.tracing import Tracer
from twofold.application.views import ReadStore, ViewReader
from twofold.bootstrap.cache import _open_cache
from twofold.bootstrap.inline import _attach_inline, _check_inline_urls, inline_names
from twofold.bootstrap.observability import open_metrics, open_tracer
from twofold.bootstrap.relay import _relay_host
from twofold.bootstrap.schemes import _backend, open_event_store, open_read_store
from twofold.bootstrap.settings_check import check_settings
from twofold.codec import Codec
from twofold.errors import ConfigurationError
from twofold.settings import Settings


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


def _coordination(settings: Settings, views: ReadStore, retry_interval: float) -> Coordination:
    """By the read store's scheme; in this process alone when the events are in memory
    (no other process can append to them or run projections over them)."""
    if urlsplit(settings.event_store).scheme == "memory":
        return InProcess()
    url = settings.read_store
    make = _backend("TWOFOLD_READ_STORE", url, "views").coordination
    return InProcess() if make is None else make(url, views, retry_interval)
