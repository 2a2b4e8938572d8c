"""Where a store lives: twofold's ``schema`` parameter in a libpq URL, and its rules.

At the bottom of the package (it imports nothing of it), so that every module may use it.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from twofold.errors import ConfigurationError

__all__ = ["DEFAULT_SCHEMA", "check_schema_name", "split_schema"]

DEFAULT_SCHEMA = "twofold"
_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def check_schema_name(schema: str) -> str:
    if not isinstance(schema, str) or not _SCHEMA_NAME.fullmatch(schema):
        raise ConfigurationError(
            f"schema {schema!r} is not a plain PostgreSQL name; use letters, digits and "
            "underscores (at most 63), starting with a letter or underscore"
        )
    return schema


def split_schema(url: str) -> tuple[str, str]:
    """``(url for libpq, schema)``: takes twofold's ``schema`` parameter out of the URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ConfigurationError(
            f"{url!r} is not a PostgreSQL URL; write postgresql://user@host:5432/database"
        )
    query = parse_qsl(parts.query, keep_blank_values=True)
    schemas = [value for key, value in query if key == "schema"]
    rest = [(key, value) for key, value in query if key != "schema"]
    schema = check_schema_name(schemas[-1]) if schemas else DEFAULT_SCHEMA
    return urlunsplit(parts._replace(query=urlencode(rest))), schema
