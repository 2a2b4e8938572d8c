"""PostgreSQL array literals built directly, for the append's hot path.

psycopg adapts a Python list by inspecting its elements to choose a type, every call; for
a batch of one append that costs more client time than the rest of the append. These
functions write the array's text form instead, and the query casts it (``%s::bytea[]``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

__all__ = ["bytea_array", "int_array", "text_array", "uuid_array"]


def text_array(values: Iterable[str]) -> str:
    # Inside double quotes only backslash and the quote itself need escaping. NUL cannot
    # occur: the store refuses it in stream ids and types before they get here.
    return (
        "{"
        + ",".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values)
        + "}"
    )


def int_array(values: Iterable[int]) -> str:
    return "{" + ",".join(str(int(v)) for v in values) + "}"


def uuid_array(values: Iterable[uuid.UUID]) -> str:
    return "{" + ",".join(str(v) for v in values) + "}"


def bytea_array(values: Iterable[bytes]) -> str:
    # Each element in bytea's hex form (\x...), its backslash escaped for the array.
    return "{" + ",".join('"\\\\x' + v.hex() + '"' for v in values) + "}"
