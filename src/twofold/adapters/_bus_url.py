"""Reading a bus URL's query options: each one typed, an unknown one refused, never ignored."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar
from urllib.parse import SplitResult, parse_qsl, urlsplit, urlunsplit

from twofold.errors import ConfigurationError

__all__ = ["BusUrl", "as_bool", "public_url"]

T = TypeVar("T")
N = TypeVar("N", int, float)


def as_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{text!r} is not true or false")


def public_url(parts: SplitResult) -> str:
    """The URL without user, password or query: safe to log and to name a checkpoint."""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class BusUrl:
    """A parsed ``scheme://host:port/path?option=value`` with typed option lookups."""

    def __init__(self, url: str, *, schemes: tuple[str, ...], options: Mapping[str, str]) -> None:
        self.url = url
        self.parts = urlsplit(url)
        if self.parts.scheme not in schemes:
            raise ConfigurationError(
                f"{public_url(self.parts)!r} is not a {' or '.join(schemes)} URL; "
                f"write {schemes[0]}://host:port"
            )
        if not self.parts.hostname:
            raise ConfigurationError(f"{url!r} names no host; write {schemes[0]}://host:port")
        self.query = dict(parse_qsl(self.parts.query, keep_blank_values=True))
        unknown = sorted(set(self.query) - set(options))
        if unknown:
            known = ", ".join(f"{k} ({v})" for k, v in sorted(options.items()))
            raise ConfigurationError(
                f"unknown option(s) {', '.join(unknown)} in {public_url(self.parts)}; "
                f"known options: {known}"
            )

    @property
    def public(self) -> str:
        return public_url(self.parts)

    def option(self, name: str, parse: Callable[[str], T], default: T) -> T:
        raw = self.query.get(name)
        if raw is None:
            return default
        try:
            return parse(raw)
        except ValueError as exc:
            raise ConfigurationError(
                f"option {name}={raw!r} of {self.public} is invalid: {exc}"
            ) from exc

    def positive(self, name: str, parse: Callable[[str], N], default: N) -> N:
        value = self.option(name, parse, default)
        if value <= 0:
            raise ConfigurationError(f"option {name} of {self.public} must be above 0")
        return value
