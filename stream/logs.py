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
import time
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


class RateLimit(logging.Filter):
    """Let the same warning or error (logger and message template) through at most once
    per ``every_s`` seconds; the next one that passes says how many were held back. A
    broker outage makes the Kafka clients log the same connection error many times a
    second; the log must stay readable (and small) through it. Info and debug pass.

    >>> limit = RateLimit(every_s=30.0, clock=iter([0.0, 1.0, 2.0, 31.0]).__next__)
    >>> def record():
    ...     return logging.LogRecord("aiokafka", logging.ERROR, "", 1, "down %s", ("x",), None)
    >>> [limit.filter(r) for r in (record(), record(), record())]
    [True, False, False]
    >>> last = record(); limit.filter(last), last.getMessage()
    (True, 'down x (2 similar suppressed in 31 s)')
    """

    def __init__(self, every_s: float = 30.0, clock: Any = None) -> None:
        super().__init__()
        self.every_s = every_s
        self.clock = clock or time.monotonic
        self.seen: dict[tuple[str, Any], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, record.msg)
        now = self.clock()
        first = self.seen.get(key)
        if first is not None and now - first[0] < self.every_s:
            self.seen[key] = (first[0], first[1] + 1)
            return False
        if len(self.seen) > 10_000:  # many distinct messages: forget the old windows
            self.seen.clear()
        self.seen[key] = (now, 0)
        if first is not None and first[1]:
            record.msg = f"{record.msg} ({first[1]} similar suppressed in {now - first[0]:.0f} s)"
        return True


def logging_config(level: str) -> dict[str, Any] | None:
    """A dictConfig for faust/mode: JSON lines unless stderr is a terminal (then None:
    their readable default)."""
    if sys.stderr.isatty():
        return None
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "stream.logs.JsonFormatter"}},
        "filters": {"rate_limit": {"()": "stream.logs.RateLimit"}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "filters": ["rate_limit"],
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": level.upper(), "handlers": ["default"]},
    }
