"""Typed settings, read from ``TWOFOLD_*`` environment variables (flags override them).

| variable                   | default                      | meaning                          |
|----------------------------|------------------------------|----------------------------------|
| TWOFOLD_EVENT_STORE        | sqlite:///twofold.db         | where events are stored          |
| TWOFOLD_READ_STORE         | sqlite:///twofold-views.db   | where the views are kept         |
| TWOFOLD_PROJECTIONS        | run                          | run: this process runs them; off |
| TWOFOLD_LAG_THRESHOLD      | 60                           | seconds of lag before health DOWN|
| TWOFOLD_INLINE_PROJECTIONS | (none)                       | names, or *: applied in the append|
| TWOFOLD_API_KEYS           | (none)                       | key=scope+scope,key2=scope       |
| TWOFOLD_CACHE, TWOFOLD_BUS | (none)                       | not implemented yet: refused     |

``TWOFOLD_CACHE`` and ``TWOFOLD_BUS`` are refused until a cache and a bus exist, so that a
setting is never silently ignored.

``TWOFOLD_INLINE_PROJECTIONS`` (single-database mode, PostgreSQL only): comma-separated
projection names, or ``*`` for all, applied inside each append's own transaction, so their
views are never stale; both stores must be the same PostgreSQL database and schema.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping
from typing import Literal

from twofold.errors import ConfigurationError

__all__ = ["Settings"]

ProjectionMode = Literal["run", "off"]
_SCOPES = frozenset({"commands", "queries", "admin"})


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
    event_store: str = "sqlite:///twofold.db"
    read_store: str = "sqlite:///twofold-views.db"
    projections: ProjectionMode = "run"
    lag_threshold: float = 60.0
    api_keys: Mapping[str, frozenset[str]] = dataclasses.field(default_factory=dict)
    cache: str | None = None
    bus: str | None = None
    inline_projections: frozenset[str] = frozenset()
    """Projections applied in the append's transaction; ``{"*"}`` means all of them."""

    def __post_init__(self) -> None:
        names = self.inline_projections
        if isinstance(names, str) or not all(isinstance(n, str) for n in names):
            raise ConfigurationError(
                f"inline_projections must be a set of projection names (or {{'*'}}), not {names!r}"
            )
        object.__setattr__(self, "inline_projections", check_inline_names(names))
        unimplemented = [
            f"TWOFOLD_{name.upper()} ({value!r})"
            for name, value in (("bus", self.bus), ("cache", self.cache))
            if value is not None
        ]
        if unimplemented:
            raise ConfigurationError(
                f"{' and '.join(unimplemented)}: not implemented yet in this version of "
                "twofold, so it would have no effect; unset it"
            )

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
        if env.get("TWOFOLD_INLINE_PROJECTIONS", "").strip():
            values["inline_projections"] = parse_inline_projections(
                env["TWOFOLD_INLINE_PROJECTIONS"]
            )
        if env.get("TWOFOLD_BUS"):
            values["bus"] = env["TWOFOLD_BUS"]
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]


def parse_api_keys(raw: str) -> dict[str, frozenset[str]]:
    """``key1=commands+queries,key2=admin`` -> {key: scopes}."""
    keys: dict[str, frozenset[str]] = {}
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, scopes_raw = item.partition("=")
        scopes = frozenset(s.strip() for s in scopes_raw.split("+") if s.strip())
        if not sep or not key or not scopes or not scopes <= _SCOPES:
            raise ConfigurationError(
                f"TWOFOLD_API_KEYS entry {item!r} must look like key=commands+queries, with "
                f"scopes among {', '.join(sorted(_SCOPES))}"
            )
        keys[key.strip()] = scopes
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
