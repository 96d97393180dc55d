"""The fuzz suite's oracle: what the contracts make of a message.

A message is ``accept`` (a valid event the stream must count), ``refuse`` (it must become
a dead letter) or ``either`` (JSON the contracts allow but an implementation may refuse:
numbers beyond float range, very deep nesting, lenient date forms). The verdict comes
from the JSON Schemas the package ships, the plausibility limits the event models
document (the ts window, token, cost and attempt caps) and ingest's settings (size, how
far ahead of the clock a timestamp may be), never from the code under test.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import jsonschema

from stream.core.events import EPOCH_MS_THRESHOLD, MAX_TOKENS_PER_EVENT, TS_MAX, TS_MIN
from stream.settings import IngestSettings
from tests.contracts import schema

ACCEPT, REFUSE, EITHER = "accept", "refuse", "either"

INGEST = IngestSettings()
MAX_EVENT_BYTES = INGEST.max_event_bytes
SKEW_S = INGEST.max_future_skew_s

T0 = 1793577600.0  # 2026-11-02T00:00:00Z: the fuzz traffic starts here ...
NOW = T0 + 4 * 3600  # ... and ends here; the worker's wall clock in these tests

FUTURE = "ts too far ahead of the clock"

KINDS = ("usage", "errors")
_VALIDATORS = {
    "usage": jsonschema.Draft202012Validator(schema("usage-event")),
    "errors": jsonschema.Draft202012Validator(schema("error-event")),
}
FIELDS = {kind: dict(v.schema["properties"]) for kind, v in _VALIDATORS.items()}
REQUIRED = {kind: tuple(v.schema["required"]) for kind, v in _VALIDATORS.items()}
# Caps the models (stream.core.events._Event) put on numbers the schemas leave open.
_CAPS = {
    "input_tokens": MAX_TOKENS_PER_EVENT,
    "output_tokens": MAX_TOKENS_PER_EVENT,
    "cached_input_tokens": MAX_TOKENS_PER_EVENT,
    "cache_write_tokens": MAX_TOKENS_PER_EVENT,
    "cost_usd": 1e6,
    "attempt": 1000,
}
# JSON Schema's date-time: RFC 3339's date-time production.
_RFC3339 = re.compile(r"\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)", re.ASCII)
# NaN, Infinity and -Infinity are not JSON: a message with one is refused.
NAN_LITERAL = "NaN or Infinity, not JSON"


def judge_body(kind: str, body: Any) -> tuple[str, str]:
    """The verdict on a parsed message ``body`` for topic ``kind``, and why."""
    if not isinstance(body, dict):
        return REFUSE, "not an object"
    error = next(iter(_VALIDATORS[kind].iter_errors(body)), None)
    if error is not None:
        return REFUSE, f"schema: {'.'.join(map(str, error.path))} {error.message[:80]}"
    for name, cap in _CAPS.items():
        value = body.get(name)
        if value is not None and value > cap:
            return REFUSE, f"{name} above the models' cap {cap}"
    verdict, why = judge_ts(body["ts"])
    if verdict != ACCEPT:
        return verdict, why
    if any(len(name) > 256 for name in body.get("tags", {})):
        return EITHER, "a tag name longer than 256 (the contract sets no limit)"
    return ACCEPT, "valid"


def judge_ts(ts: Any) -> tuple[str, str]:
    """The verdict on a ``ts`` the schema let through (a string or a number >= 0)."""
    if isinstance(ts, str):
        try:
            parsed = datetime.fromisoformat(ts)
        except ValueError:
            # RFC 3339 allows a leap second; Python's reader does not.
            return (
                (EITHER, "ts: RFC 3339 Python cannot read")
                if _RFC3339.fullmatch(ts)
                else (
                    REFUSE,
                    "ts: not RFC 3339",
                )
            )
        if parsed.tzinfo is None:
            return REFUSE, "ts: no UTC offset"
        try:
            seconds = parsed.timestamp()
        except (OverflowError, ValueError):
            return REFUSE, "ts: beyond any date"
        lenient = _RFC3339.fullmatch(ts) is None
    else:
        try:
            seconds = ts / 1000.0 if ts > EPOCH_MS_THRESHOLD else float(ts)
        except OverflowError:  # an integer beyond float range
            return REFUSE, "ts beyond any date"
        lenient = False
    if not TS_MIN <= seconds < TS_MAX:
        return REFUSE, "ts outside 2000..2100"
    ahead = seconds - NOW
    if ahead > SKEW_S + 1:
        return REFUSE, FUTURE
    if ahead > SKEW_S - 1:
        return EITHER, "ts at the future-skew limit"
    if lenient:
        return EITHER, "ts: a date form beyond RFC 3339"
    return ACCEPT, "valid"


def judge_bytes(kind: str, raw: bytes) -> tuple[str, str]:
    """The verdict on arbitrary bytes (parsed here with Python's strict JSON reader)."""
    if not raw:
        return REFUSE, "empty"
    if len(raw) > MAX_EVENT_BYTES:
        return REFUSE, "too large"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return REFUSE, "not UTF-8"
    if not text.lstrip(" \t\r\n").startswith("{"):
        return REFUSE, "not an object"
    constants: list[str] = []  # NaN, Infinity, -Infinity: not JSON
    try:
        body = json.loads(text, parse_constant=lambda name: constants.append(name) or float(name))
    except RecursionError:
        return EITHER, "nested deeper than Python's reader follows"
    except ValueError as exc:  # JSONDecodeError, more than 4,300 digits
        return (
            (EITHER, "an integer too long to read")
            if "digits" in str(exc)
            else (
                REFUSE,
                "not JSON",
            )
        )
    if _has_lone_surrogate(body):
        return REFUSE, "a lone surrogate"
    verdict, why = judge_body(kind, body)
    if constants:
        return REFUSE, NAN_LITERAL
    if verdict == ACCEPT and _has_infinity(body):
        return EITHER, "a number beyond float range"
    return verdict, why


def _walk(body: Any) -> Iterator[Any]:
    """Every value and key in ``body`` (without recursion: bodies nest deep)."""
    stack = [body]
    while stack:
        value = stack.pop()
        yield value
        if isinstance(value, dict):
            stack.extend(value)
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)


def _has_lone_surrogate(body: Any) -> bool:
    for value in _walk(body):
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return True
    return False


def _has_infinity(body: Any) -> bool:
    return any(isinstance(v, float) and v in (float("inf"), float("-inf")) for v in _walk(body))
