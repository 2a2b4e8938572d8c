"""Commands and queries per second and their p99 latency, for the overview."""

from __future__ import annotations

from twofold.http.admin.schemas import Rate

__all__ = ["Figures"]

_UNMEASURED = Rate(total=None, per_second=None, p99_seconds=None)


class Figures:
    """Reads the figures the service records of itself."""

    def read(self) -> tuple[Rate, Rate, str]:
        return _UNMEASURED, _UNMEASURED, "commands and queries are not measured here"
