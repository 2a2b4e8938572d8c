"""Logs: plain text by default, or one JSON object per line (``TWOFOLD_LOG_FORMAT=json``).

Each JSON line carries ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``, and the
``request_id`` and ``correlation_id`` of the HTTP request being answered, when there is one
(``X-Request-Id`` is accepted from the client or made up, and echoed in the answer; the
correlation id is ``X-Correlation-Id``, else the request id). An exception adds ``error``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from contextvars import ContextVar
from typing import Any, Literal

__all__ = [
    "JsonFormatter",
    "LogFormat",
    "correlation_id",
    "log_config",
    "request_id",
]

LogFormat = Literal["text", "json"]

request_id: ContextVar[str | None] = ContextVar("twofold_request_id", default=None)
correlation_id: ContextVar[str | None] = ContextVar("twofold_correlation_id", default=None)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": request_id.get(),
            "correlation_id": correlation_id.get(),
        }
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def log_config(format: LogFormat, level: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for the process (uvicorn takes it as ``log_config``):
    twofold's, uvicorn's and the root logger, all in ``format``."""
    if format == "json":
        formatter: dict[str, Any] = {"()": "twofold.logs.JsonFormatter"}
    else:
        formatter = {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    handler = {
        "class": "logging.StreamHandler",
        "formatter": "twofold",
        "stream": "ext://sys.stderr",
    }
    level = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"twofold": formatter},
        "handlers": {"stderr": handler},
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {
            name: {"handlers": [], "level": level, "propagate": True}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "twofold")
        },
    }
