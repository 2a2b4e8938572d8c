"""The view cache: its settings, its key namespace, and the cache in front of a read store.

With ``settings.cache`` (``TWOFOLD_CACHE=redis://...``) ``bootstrap`` opens, through
``_open_cache``, a ``CachedViews`` in front of the read store and a ``CacheInvalidator`` its
runners hand their commits to. Keys live under a namespace per service and read store
(``<service>-<digest of the read store>``, unless the URL names one), and an epoch per
read-store generation (docs/cache.md).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from urllib.parse import parse_qsl, urlsplit

from twofold.application.app import Service
from twofold.application.cache import CacheSettings
from twofold.application.cache_invalidation import CacheInvalidator
from twofold.application.cache_views import CachedViews, owners_of
from twofold.application.caching import Caching
from twofold.application.metrics import Metrics
from twofold.application.positions import PositionTracker
from twofold.application.projections import Projection
from twofold.application.views import ReadStore
from twofold.bootstrap.schemes import _backend
from twofold.errors import ConfigurationError
from twofold.settings import Settings

_CACHE_OVERRIDES = (
    ("TWOFOLD_CACHE_TTL", "cache_ttl", "ttl"),
    ("TWOFOLD_CACHE_NOT_FOUND_TTL", "cache_not_found_ttl", "not_found_ttl"),
    ("TWOFOLD_CACHE_LOCAL", "cache_local", "local_entries"),
)


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
