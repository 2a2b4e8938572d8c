"""Typed settings, read from ``TWOFOLD_*`` environment variables (flags override them).

| variable                   | default                      | meaning                          |
|----------------------------|------------------------------|----------------------------------|
| TWOFOLD_EVENT_STORE        | sqlite:///twofold.db         | where events are stored          |
| TWOFOLD_READ_STORE         | sqlite:///twofold-views.db   | where the views are kept         |
| TWOFOLD_PROJECTIONS        | run                          | run: this process runs them; off |
| TWOFOLD_LAG_THRESHOLD      | 60                           | seconds of lag before health DOWN|
| TWOFOLD_INLINE_PROJECTIONS | (none)                       | names, or *: applied in the append|
| TWOFOLD_API_KEYS           | (none)                       | name:secret=scope+scope,...      |
| TWOFOLD_BUS                | (none)                       | broker URL(s) the relay publishes to |
| TWOFOLD_RELAY              | off                          | run: this process relays to the bus |
| TWOFOLD_CACHE              | (none)                       | redis://host:6379/0: a cache     |
| TWOFOLD_CACHE_TTL          | 300                          | seconds an answer is kept        |
| TWOFOLD_CACHE_NOT_FOUND_TTL| 5                            | seconds "no such document" is kept|
| TWOFOLD_CACHE_LOCAL        | 0                            | documents kept in each process   |
| TWOFOLD_LOG_FORMAT         | text                         | text, or json: one object a line |
| TWOFOLD_VERIFY_INTERVAL    | (off)                        | seconds between scheduled verify |

``TWOFOLD_API_KEYS``: comma-separated entries ``name:secret=scope+scope``. The secret is
what clients send (at least ``MIN_SECRET_LENGTH`` characters of visible ASCII, no comma);
the name (letters, digits, ``_.@-``) is who they are: events record it as their ``actor``.
An entry without ``name:`` is named ``key-<n>``, n its place in the list (from 1).
Scopes: ``commands`` (the write API), ``queries`` (the read API), ``admin`` (operations:
``/admin/api/`` and the ``/admin`` dashboard; without any keys they answer loopback clients
only, see docs/admin.md), ``metrics`` (``GET /metrics`` only, for a Prometheus server;
``admin`` includes it).

``TWOFOLD_CACHE``: a Redis URL (``redis://``, ``rediss://``, ``unix://``) turns on the
cache in front of the views (docs/cache.md); its query may hold the cache's other options
(``?namespace=shop&lists=posts``). ``TWOFOLD_CACHE_TTL`` and ``TWOFOLD_CACHE_NOT_FOUND_TTL``
(seconds above 0) and ``TWOFOLD_CACHE_LOCAL`` (documents kept in each process in front of
Redis; 0: none) need ``TWOFOLD_CACHE``, and say each option once (here or in the URL).
``bootstrap.check_settings`` checks them all together, one line per problem.

``TWOFOLD_BUS``: one broker URL or several, comma-separated (``nats://``, ``kafka://``,
``redis://``; their options are query parameters, see docs/relay.md); each is a destination
the relay publishes the log to, and whose scheme and options ``bootstrap.check_settings``
checks. ``TWOFOLD_RELAY=run`` makes a process run the relay (``twofold serve``; ``twofold
relay`` always does): one process per destination publishes at a time, the others wait
for its lease and take over when it dies.

``TWOFOLD_VERIFY_INTERVAL``: the process that runs the projections replays the log into a
scratch copy every that many seconds and compares it with the live views (``twofold
verify``); the last result shows in ``/health`` (DEGRADED on a divergence) and in the
logs. Off by default (unset, empty or ``off``): each run replays the whole log.

``TWOFOLD_INLINE_PROJECTIONS`` (single-database mode, PostgreSQL only): comma-separated
projection names, or ``*`` for all, applied inside each append's own transaction, so their
views are never stale; both stores must be the same PostgreSQL database and schema.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Literal

from twofold.errors import ConfigurationError
from twofold.logs import LogFormat

__all__ = ["MIN_SECRET_LENGTH", "ApiKey", "Settings"]

ProjectionMode = Literal["run", "off"]
RelayMode = Literal["run", "off"]
_SCOPES = frozenset({"commands", "queries", "admin", "metrics"})
MIN_SECRET_LENGTH = 16
"""Characters an API key's secret needs at least (a 16-character random secret of
letters and digits is about 95 bits); ``secrets.token_urlsafe(32)`` makes a good one."""
_KEY_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ApiKey:
    """One API key: the ``secret`` clients send, the ``name`` events record as their
    actor (never anything derived from the secret), and the ``scopes`` it grants."""

    name: str
    secret: str = dataclasses.field(repr=False)
    scopes: frozenset[str]

    def __post_init__(self) -> None:
        if not _KEY_NAME.fullmatch(self.name):
            raise ConfigurationError(
                f"API key name {self.name!r} must be 1 to 64 letters, digits or _.@-"
            )
        secret = self.secret
        if len(secret) < MIN_SECRET_LENGTH:
            raise ConfigurationError(
                f"API key {self.name!r}: its secret is {len(secret)} characters long, it needs "
                f"at least {MIN_SECRET_LENGTH}; make one with: python -c 'import secrets; "
                "print(secrets.token_urlsafe(32))'"
            )
        if not all("!" <= c <= "~" and c != "," for c in secret):
            raise ConfigurationError(
                f"API key {self.name!r}: its secret must be visible ASCII characters without "
                "spaces or commas, as HTTP headers carry it"
            )
        scopes = frozenset(self.scopes)
        if not scopes or not scopes <= _SCOPES:
            raise ConfigurationError(
                f"API key {self.name!r}: scopes {sorted(scopes)} must be some of "
                f"{', '.join(sorted(_SCOPES))}"
            )
        object.__setattr__(self, "scopes", scopes)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
    event_store: str = "sqlite:///twofold.db"
    read_store: str = "sqlite:///twofold-views.db"
    projections: ProjectionMode = "run"
    lag_threshold: float = 60.0
    api_keys: Sequence[ApiKey] = ()
    cache: str | None = None
    """The cache's Redis URL (None: no cache)."""
    cache_ttl: float | None = None
    """Seconds a cached answer is kept (None: the cache's default, or the URL's ``ttl``)."""
    cache_not_found_ttl: float | None = None
    """Seconds "no such document" is kept (None: the default, or the URL's)."""
    cache_local: int | None = None
    """Documents kept in each process in front of Redis (None: the default, 0, or the URL's)."""
    bus: str | None = None
    """Broker URLs, comma-separated: the relay's destinations (``bus_urls``)."""
    relay: RelayMode = "off"
    """run: this process runs the relay to every ``bus`` destination (under a lease)."""
    inline_projections: frozenset[str] = frozenset()
    """Projections applied in the append's transaction; ``{"*"}`` means all of them."""
    log_format: LogFormat = "text"
    verify_interval: float | None = None
    """Seconds between scheduled verifications in the process running projections; None:
    off."""

    def __post_init__(self) -> None:
        names = self.inline_projections
        if isinstance(names, str) or not all(isinstance(n, str) for n in names):
            raise ConfigurationError(
                f"inline_projections must be a set of projection names (or {{'*'}}), not {names!r}"
            )
        object.__setattr__(self, "inline_projections", check_inline_names(names))
        object.__setattr__(self, "api_keys", check_api_keys(self.api_keys))
        if self.relay not in ("run", "off"):
            raise ConfigurationError(f"TWOFOLD_RELAY must be 'run' or 'off', not {self.relay!r}")
        if self.bus is not None and not self.bus_urls:
            raise ConfigurationError(
                f"TWOFOLD_BUS {self.bus!r} names no broker; write a URL such as "
                "nats://host:4222, or several separated by commas, or unset it"
            )
        if self.relay == "run" and self.bus is None:
            raise ConfigurationError(
                "TWOFOLD_RELAY=run needs TWOFOLD_BUS, the broker(s) to relay to; set it, or "
                "set TWOFOLD_RELAY=off"
            )
        interval = self.verify_interval
        if interval is not None and not (
            isinstance(interval, int | float) and not isinstance(interval, bool) and interval > 0
        ):
            raise ConfigurationError(
                f"verify_interval must be a number of seconds above 0 (or None: off), not "
                f"{interval!r}"
            )

    @property
    def bus_urls(self) -> tuple[str, ...]:
        """The destinations named by ``bus``, in order, without blanks."""
        if self.bus is None:
            return ()
        return tuple(url.strip() for url in self.bus.split(",") if url.strip())

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        if "TWOFOLD_EVENT_STORE" in env:
            values["event_store"] = env["TWOFOLD_EVENT_STORE"]
        if "TWOFOLD_READ_STORE" in env:
            values["read_store"] = env["TWOFOLD_READ_STORE"]
        if "TWOFOLD_PROJECTIONS" in env:
            mode = env["TWOFOLD_PROJECTIONS"]
            if mode not in ("run", "off"):
                raise ConfigurationError(
                    f"TWOFOLD_PROJECTIONS must be 'run' or 'off', not {mode!r}"
                )
            values["projections"] = mode
        if "TWOFOLD_LAG_THRESHOLD" in env:
            raw = env["TWOFOLD_LAG_THRESHOLD"]
            try:
                threshold = float(raw)
            except ValueError:
                threshold = -1.0
            if not threshold > 0:
                raise ConfigurationError(
                    f"TWOFOLD_LAG_THRESHOLD must be a number of seconds above 0, not {raw!r}"
                )
            values["lag_threshold"] = threshold
        if env.get("TWOFOLD_API_KEYS"):
            values["api_keys"] = parse_api_keys(env["TWOFOLD_API_KEYS"])
        if env.get("TWOFOLD_CACHE"):
            values["cache"] = env["TWOFOLD_CACHE"]
        for variable, field, parse in _CACHE_OPTIONS:
            if env.get(variable, "").strip():
                values[field] = parse(variable, env[variable])
        if env.get("TWOFOLD_INLINE_PROJECTIONS", "").strip():
            values["inline_projections"] = parse_inline_projections(
                env["TWOFOLD_INLINE_PROJECTIONS"]
            )
        if env.get("TWOFOLD_BUS"):
            values["bus"] = env["TWOFOLD_BUS"]
        if "TWOFOLD_RELAY" in env:
            relay = env["TWOFOLD_RELAY"]
            if relay not in ("run", "off"):
                raise ConfigurationError(f"TWOFOLD_RELAY must be 'run' or 'off', not {relay!r}")
            values["relay"] = relay
        if "TWOFOLD_LOG_FORMAT" in env:
            log_format = env["TWOFOLD_LOG_FORMAT"]
            if log_format not in ("text", "json"):
                raise ConfigurationError(
                    f"TWOFOLD_LOG_FORMAT must be 'text' or 'json', not {log_format!r}"
                )
            values["log_format"] = log_format
        raw_interval = env.get("TWOFOLD_VERIFY_INTERVAL", "").strip()
        if raw_interval and raw_interval.lower() != "off":
            try:
                interval = float(raw_interval)
            except ValueError:
                interval = -1.0
            if not interval > 0:
                raise ConfigurationError(
                    "TWOFOLD_VERIFY_INTERVAL must be a number of seconds above 0, or off, not "
                    f"{raw_interval!r}"
                )
            values["verify_interval"] = interval
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]


def _seconds(variable: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0.001):
        raise ConfigurationError(
            f"{variable} must be a number of seconds of at least 0.001, not {raw!r}"
        )
    return value


def _entries(variable: str, raw: str) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        value = -1
    if value < 0:
        raise ConfigurationError(
            f"{variable} must be a whole number of documents, 0 or more (0: no in-process "
            f"cache), not {raw!r}"
        )
    return value


_CACHE_OPTIONS: tuple[tuple[str, str, Callable[[str, str], float | int]], ...] = (
    ("TWOFOLD_CACHE_TTL", "cache_ttl", _seconds),
    ("TWOFOLD_CACHE_NOT_FOUND_TTL", "cache_not_found_ttl", _seconds),
    ("TWOFOLD_CACHE_LOCAL", "cache_local", _entries),
)


def parse_api_keys(raw: str) -> tuple[ApiKey, ...]:
    """``ops:secret1=admin,secret2=commands+queries`` -> the keys; an entry without a name
    is named ``key-<n>``, n its place in the list (from 1)."""
    keys: list[ApiKey] = []
    entries = [item.strip() for item in raw.split(",") if item.strip()]
    for place, item in enumerate(entries, 1):
        named, sep, scopes_raw = item.rpartition("=")
        scopes = frozenset(s.strip() for s in scopes_raw.split("+") if s.strip())
        name, colon, secret = named.partition(":")
        if not colon:
            name, secret = f"key-{place}", named
        if not sep or not secret or not scopes:
            raise ConfigurationError(
                f"TWOFOLD_API_KEYS entry {place} must look like name:secret=commands+queries "
                f"(scopes among {', '.join(sorted(_SCOPES))})"
            )
        try:
            keys.append(ApiKey(name=name.strip(), secret=secret.strip(), scopes=scopes))
        except ConfigurationError as error:
            raise ConfigurationError(f"TWOFOLD_API_KEYS entry {place}: {error}") from None
    return tuple(keys)


def check_api_keys(keys: Iterable[ApiKey]) -> tuple[ApiKey, ...]:
    """The keys, if every name and every secret is used once."""
    keys = tuple(keys)
    if not all(isinstance(key, ApiKey) for key in keys):
        raise ConfigurationError("api_keys must be ApiKey(name=..., secret=..., scopes=...)")
    names = [key.name for key in keys]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ConfigurationError(
            f"API key names must differ: {', '.join(twice)} is used twice (an entry without "
            "a name is named key-<its place in the list>)"
        )
    if len({key.secret for key in keys}) < len(keys):
        raise ConfigurationError("two API keys have the same secret; give each its own")
    return keys


def parse_inline_projections(raw: str) -> frozenset[str]:
    """``orders,users`` -> {"orders", "users"}; ``*`` -> {"*"} (every projection)."""
    names = frozenset(item.strip() for item in raw.split(",") if item.strip())
    return check_inline_names(names, raw)


def check_inline_names(names: Iterable[str], raw: str | None = None) -> frozenset[str]:
    names = frozenset(names)
    shown = repr(raw) if raw is not None else repr(sorted(names))
    if "*" in names and len(names) > 1:
        raise ConfigurationError(
            f"TWOFOLD_INLINE_PROJECTIONS {shown}: write either * (every projection) or a "
            "comma-separated list of names, not both"
        )
    bad = sorted(n for n in names if n != "*" and not (n.isidentifier() and n.islower()))
    if bad:
        raise ConfigurationError(
            f"TWOFOLD_INLINE_PROJECTIONS {shown}: {', '.join(map(repr, bad))} is not a "
            "projection name; list lower-case projection names separated by commas "
            "(e.g. orders,users), or * for every projection"
        )
    return names
