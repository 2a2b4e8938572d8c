"""JSON log lines carry the request and correlation ids of the request being answered."""

from __future__ import annotations

import json
import logging
import logging.config

import pytest

from twofold.logs import JsonFormatter, correlation_id, log_config, request_id


def record(message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("twofold.test", logging.WARNING, __file__, 1, message, args, None)


def test_json_line_has_time_level_logger_message_and_the_ids() -> None:
    token = request_id.set("req-1")
    other = correlation_id.set("corr-9")
    try:
        line = JsonFormatter().format(record("hello %s", "there"))
    finally:
        request_id.reset(token)
        correlation_id.reset(other)
    parsed = json.loads(line)
    assert parsed["level"] == "warning" and parsed["logger"] == "twofold.test"
    assert parsed["message"] == "hello there"
    assert (parsed["request_id"], parsed["correlation_id"]) == ("req-1", "corr-9")
    assert parsed["time"].endswith("+00:00") and "\n" not in line


def test_json_line_outside_a_request_has_null_ids_and_the_error() -> None:
    try:
        raise ValueError("broken")
    except ValueError:
        import sys

        failing = logging.LogRecord(
            "twofold", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    parsed = json.loads(JsonFormatter().format(failing))
    assert parsed["request_id"] is None and parsed["correlation_id"] is None
    assert "ValueError: broken" in parsed["error"]


def test_log_config_in_json_writes_json_lines(capsys: pytest.CaptureFixture[str]) -> None:
    logging.config.dictConfig(log_config("json", "info"))
    try:
        logging.getLogger("twofold.something").info("started %d", 3)
        logging.getLogger("uvicorn.error").info("listening")
    finally:
        logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})
        logging.getLogger().handlers.clear()
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(line["logger"], line["message"]) for line in lines] == [
        ("twofold.something", "started 3"),
        ("uvicorn.error", "listening"),
    ]
