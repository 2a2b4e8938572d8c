"""The composition root: the only place that constructs adapters.

``bootstrap(service, settings)`` opens the stores named by the settings' URLs, builds the
codec, the buses with their middleware, and a runner per projection, and returns the App.

The package's modules, by what they build:

- ``schemes``: the table (``BACKENDS``) from a URL scheme to what it opens (event store,
  read store, coordination, relay store and lease, publisher, source, cache reads, cache),
  and the openers of a setting's URL (``open_event_store``, ``open_publisher``, ...).
- ``settings_check``: ``check_settings`` (every problem with the URLs, one line each) and
  ``check_shared_projections`` (``twofold worker``'s check).
- ``cache``: with ``TWOFOLD_CACHE``, the ``CachedViews`` in front of the read store and the
  ``CacheInvalidator`` the runners hand their commits to, under a key namespace per service
  and read store (docs/cache.md).
- ``relay``: the ``RelayHost`` over the ``TWOFOLD_BUS`` destinations (``bootstrap_relay``
  for ``twofold relay``) and a read service's ``BusWorker`` (``bootstrap_bus_worker``),
  docs/relay.md.
- ``inline``: single-database mode, the projections applied in the appending transaction.
- ``observability``: the metrics and the tracer.
- ``app``: ``bootstrap`` itself, wiring the above into the App.
"""

from __future__ import annotations

from twofold.bootstrap.app import bootstrap
from twofold.bootstrap.cache import cache_namespace, cache_settings
from twofold.bootstrap.inline import inline_names
from twofold.bootstrap.observability import open_metrics, open_tracer
from twofold.bootstrap.relay import bootstrap_bus_worker, bootstrap_relay
from twofold.bootstrap.schemes import (
    BACKENDS,
    Backend,
    open_event_store,
    open_publisher,
    open_read_store,
    open_source,
    sqlite_path,
)
from twofold.bootstrap.settings_check import check_settings, check_shared_projections

__all__ = [
    "BACKENDS",
    "Backend",
    "bootstrap",
    "bootstrap_bus_worker",
    "bootstrap_relay",
    "cache_namespace",
    "cache_settings",
    "check_settings",
    "check_shared_projections",
    "inline_names",
    "open_event_store",
    "open_metrics",
    "open_publisher",
    "open_read_store",
    "open_source",
    "open_tracer",
    "sqlite_path",
]
