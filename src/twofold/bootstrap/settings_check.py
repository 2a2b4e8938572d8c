"""Checks of the settings made before anything is opened.

``check_settings`` names every problem with the stores', the bus's and the cache's
settings, one line each, in one ConfigurationError; ``check_shared_projections`` refuses to
share projections over stores other processes cannot share (``twofold worker``).
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import parse_qsl, urlsplit

from twofold.bootstrap.cache import _CACHE_OVERRIDES, cache_settings
from twofold.bootstrap.schemes import BACKENDS, _backend, _public, open_publisher, sqlite_path
from twofold.errors import ConfigurationError
from twofold.settings import Settings


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
