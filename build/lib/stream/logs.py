"""Structured logs: one JSON object per line when stderr is not a terminal.

>>> import logging
>>> record = logging.LogRecord("spendwatch", logging.INFO, "", 1, "alert %s", ("firing",), None)
>>> record.created = 1793613600.0
>>> JsonFormatter().format(record)
'{"ts":"2026-11-02T10:00:00.000Z","level":"info","logger":"spendwatch","msg":"alert firing"}'
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg"[, "exc"]}`` per record (never secrets: the
    settings hold them as SecretStr, which prints as stars)."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC)
        body: dict[str, Any] = {
            "ts": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            body["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(body).decode()


def logging_config(level: str) -> dict[str, Any] | None:
    """A dictConfig for faust/mode: JSON lines unless stderr is a terminal (then None:
    their readable default)."""
    if sys.stderr.isatty():
        return None
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "stream.logs.JsonFormatter"}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": level.upper(), "handlers": ["default"]},
    }
