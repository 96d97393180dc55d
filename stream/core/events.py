"""Event models: usage events, error events and customer records, as the contracts define them.

The contracts in ``shared/contracts`` are the source of truth; these pydantic models agree
with them and add only what parsing needs (``ts`` is normalised to epoch seconds).
``parse_usage`` / ``parse_error`` / ``parse_customer`` never raise: they return the model or
a :class:`Rejection` naming the field and the problem, so bad input can go to a dead-letter
topic with its reason while the stream goes on.

>>> parse_usage(b'{"event_id":"e1","ts":"2026-11-02T10:00:00Z","customer_id":"acme",'
...             b'"endpoint":"chat","provider":"openai","model":"gpt-4o","input_tokens":10}').ts
1793613600.0
>>> parse_usage(b'{"event_id":"e1","ts":1793613600000}')
Rejection(reason='missing', field='customer_id', detail='Field required')
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

# Events stamped outside this window are producer bugs (unset clocks, ms read as s), not
# traffic; letting one through would drag the event-time watermark decades away.
TS_MIN = 946_684_800.0  # 2000-01-01T00:00:00Z
TS_MAX = 4_102_444_800.0  # 2100-01-01T00:00:00Z
# Numbers above this are epoch milliseconds (the contract's rule).
EPOCH_MS_THRESHOLD = 1e11
# Larger token counts in one attempt are corrupt counters, not calls: no model takes them.
MAX_TOKENS_PER_EVENT = 100_000_000



def _json_int(value: Any) -> Any:
    """A JSON integer as the contracts read it: an int, or a number with no fraction
    (``12.0``); a string or a bool stays what it is, for the strict int to refuse."""
    if type(value) is float and value.is_integer():
        return int(value)
    return value


JsonInt = Annotated[int, BeforeValidator(_json_int)]
Tokens = Annotated[JsonInt, Field(ge=0, le=MAX_TOKENS_PER_EVENT)]
# Optional fields the contracts do not allow to be null are typed without None and default
# to None: absent means None, an explicit null is refused (no Python validator per field,
# which would cost a call per event on the hot path).
Tags = Annotated[dict[str, Annotated[str, Field(max_length=256)]], Field(max_length=32)]

UsageStatus = Literal["ok", "rate_limited", "timeout", "server_error", "client_error", "cancelled"]
ErrorType = Literal[
    "rate_limited", "timeout", "server_error", "overloaded", "client_error", "network", "other"
]


def to_epoch_seconds(value: Any) -> float:
    """Event time as epoch seconds from an RFC 3339 string (with offset) or epoch s / ms."""
    if isinstance(value, bool):
        raise ValueError("ts must be an RFC 3339 string or epoch seconds, not a boolean")
    if isinstance(value, int | float):
        seconds = value / 1000.0 if value > EPOCH_MS_THRESHOLD else float(value)
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"ts {value[:40]!r} is not an RFC 3339 date-time") from None
        if parsed.tzinfo is None:
            raise ValueError(f"ts {value[:40]!r} has no UTC offset (RFC 3339 requires one)")
        seconds = parsed.timestamp()
    else:
        raise ValueError("ts must be an RFC 3339 string or epoch seconds")
    if not TS_MIN <= seconds < TS_MAX:
        raise ValueError(f"ts {value!r} is outside 2000-01-01..2100-01-01")
    return seconds


class _Event(BaseModel):
    """Fields shared by usage and error events."""

    # strict: a JSON string is never read as a number or a bool ("12" is not 12), as the
    # contracts say; ints still read as floats where a float is asked for.
    model_config = ConfigDict(extra="ignore", str_max_length=4096, strict=True)

    event_id: Annotated[str, Field(min_length=1, max_length=128)]
    ts: float
    customer_id: Annotated[str, Field(min_length=1, max_length=256)]
    endpoint: Annotated[str, Field(min_length=1, max_length=256)]
    provider: Annotated[str, Field(min_length=1, max_length=64)]
    model: Annotated[str, Field(min_length=1, max_length=128)]
    input_tokens: Tokens = 0
    output_tokens: Tokens = 0
    cost_usd: Annotated[float, Field(ge=0, le=1e6, allow_inf_nan=False)] | None = None
    request_id: Annotated[str, Field(max_length=128)] = None  # type: ignore[assignment]
    attempt: Annotated[JsonInt, Field(ge=1, le=1000)] = 1
    latency_ms: Annotated[float, Field(ge=0, allow_inf_nan=False)] = None  # type: ignore[assignment]
    tags: Tags = None  # type: ignore[assignment]

    @field_validator("ts", mode="before")
    @classmethod
    def _ts(cls, value: Any) -> float:
        return to_epoch_seconds(value)


class UsageEvent(_Event):
    """One LLM API call attempt that returned a response (contracts/usage-event)."""

    cached_input_tokens: Tokens = 0
    cache_write_tokens: Tokens = 0
    status: UsageStatus = "ok"

    @property
    def failed(self) -> bool:
        return self.status not in ("ok", "cancelled")

    @property
    def rate_limited(self) -> bool:
        return self.status == "rate_limited"


class ErrorEvent(_Event):
    """One LLM API call attempt that failed (contracts/error-event)."""

    error_type: ErrorType
    http_status: Annotated[JsonInt, Field(ge=100, le=599)] = None  # type: ignore[assignment]
    will_retry: bool = None  # type: ignore[assignment]
    retry_after_s: Annotated[float, Field(ge=0)] = None  # type: ignore[assignment]
    message: Annotated[str, Field(max_length=2000)] = None  # type: ignore[assignment]

    # Not fields: the error contract has none of these, so input cannot set them (an
    # unknown field is ignored, as everywhere). Pricing and counting read them.
    @property
    def cached_input_tokens(self) -> int:
        return 0

    @property
    def cache_write_tokens(self) -> int:
        return 0

    @property
    def failed(self) -> bool:
        return True

    @property
    def rate_limited(self) -> bool:
        return self.error_type == "rate_limited"


class Customer(BaseModel):
    """What a customer pays (contracts/customer); key = customer_id on the customers topic."""

    model_config = ConfigDict(extra="ignore", strict=True)

    customer_id: Annotated[str, Field(min_length=1, max_length=256)]
    plan: Annotated[str, Field(min_length=1, max_length=64)]
    monthly_price_usd: Annotated[float, Field(ge=0, allow_inf_nan=False)]
    billing_day: Annotated[JsonInt, Field(ge=1, le=28)] = 1
    margin_target: Annotated[float, Field(ge=-1, le=1)] = None  # type: ignore[assignment]
    budget_usd: Annotated[float, Field(ge=0)] = None  # type: ignore[assignment]
    deleted: bool = False


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why an input was refused: a short reason code, the field path and a readable detail."""

    reason: str
    field: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"reason": self.reason, "field": self.field, "detail": self.detail}

    @classmethod
    def of_exception(cls, exc: BaseException) -> Rejection:
        """An input refused because handling it raised: named by the exception's type.

        >>> Rejection.of_exception(RecursionError("too deep"))
        Rejection(reason='RecursionError', field='(root)', detail='too deep')
        """
        return cls(type(exc).__name__, "(root)", str(exc)[:300])


Event = UsageEvent | ErrorEvent


def _rejection(raw: bytes | str, exc: ValidationError) -> Rejection:
    first = exc.errors(include_url=False)[0]
    field = ".".join(str(part) for part in first["loc"]) or "(root)"
    reason = first["type"]
    detail = str(first["msg"])[:300]
    if reason == "json_invalid" and isinstance(raw, bytes):
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as bad:
            return Rejection("invalid_utf8", "(root)", f"not UTF-8 at byte {bad.start}")
    elif reason == "model_type":
        reason, detail = "not_an_object", "expected a JSON object"
    elif reason == "value_error" and field == "ts":
        reason = "bad_timestamp"
    return Rejection(reason=reason, field=field, detail=detail)


# pydantic-core's JSON reader takes NaN and Infinity, which JSON does not have; a message
# that may hold them is read by a strict reader first (the model path is the rare one).
_NOT_JSON = re.compile(rb"NaN|Infinity")


def _parse(model: type[BaseModel], raw: bytes | str) -> Any:
    # pydantic-core's own JSON parser validates in one pass: measured ~25% faster here
    # than orjson.loads followed by model_validate.
    data = raw.encode(errors="surrogatepass") if isinstance(raw, str) else raw
    if _NOT_JSON.search(data):
        try:
            msgspec.json.decode(data)
        except (msgspec.DecodeError, RecursionError) as exc:
            if b"NaN" in data or b"Infinity" in data:
                detail = f"not JSON (NaN and Infinity are not JSON numbers): {exc}"[:300]
                return Rejection("json_invalid", "(root)", detail)
        except ValueError:
            pass  # not UTF-8: the model says so
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        return _rejection(raw, exc)


def parse_usage(raw: bytes | str) -> UsageEvent | Rejection:
    """A usage event from JSON bytes, or why it was refused."""
    result: UsageEvent | Rejection = _parse(UsageEvent, raw)
    return result


def parse_error(raw: bytes | str) -> ErrorEvent | Rejection:
    """An error event from JSON bytes, or why it was refused."""
    result: ErrorEvent | Rejection = _parse(ErrorEvent, raw)
    return result


@dataclass(slots=True)
class EventRecord:
    """What the pipeline uses of a validated usage or error event, in a light record.

    ``failed`` and ``rate_limited`` are the events' properties, resolved once. Money in
    USD, ``ts`` in epoch seconds, as on the models.
    """

    event_id: str
    ts: float
    customer_id: str
    endpoint: str
    provider: str
    model: str
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    cost_usd: float | None
    attempt: int
    failed: bool
    rate_limited: bool

    @classmethod
    def of(cls, event: UsageEvent | ErrorEvent) -> EventRecord:
        return cls(
            event.event_id,
            event.ts,
            event.customer_id,
            event.endpoint,
            event.provider,
            event.model,
            event.input_tokens,
            event.output_tokens,
            event.cached_input_tokens,
            event.cache_write_tokens,
            event.cost_usd,
            event.attempt,
            event.failed,
            event.rate_limited,
        )


def read_usage(raw: bytes | str) -> EventRecord | Rejection:
    """A usage event's record from JSON bytes, or why it was refused (as :func:`parse_usage`).

    >>> read_usage(b'{"event_id":"e1","ts":1793613600,"customer_id":"acme","endpoint":"chat",'
    ...            b'"provider":"openai","model":"gpt-4o","status":"rate_limited"}').rate_limited
    True
    """
    record = _fast_record(raw, True)
    if record is not None:
        return record
    event = parse_usage(raw)
    return event if isinstance(event, Rejection) else EventRecord.of(event)


def read_error(raw: bytes | str) -> EventRecord | Rejection:
    """An error event's record from JSON bytes, or why it was refused (as :func:`parse_error`)."""
    record = _fast_record(raw, False)
    if record is not None:
        return record
    event = parse_error(raw)
    return event if isinstance(event, Rejection) else EventRecord.of(event)


# The fast path below decodes the common, well-formed shape with msgspec, whose structs
# below check types and limits in C; it only ever accepts, never refuses: anything it is
# not sure of (a missing or odd field, a number where pydantic would coerce, a JSON quirk
# msgspec refuses) returns None, and the pydantic model decides, with its exact reason.
# The structs are never looser than the models (where they differ they are stricter, e.g.
# tag names up to 256 characters, numbers below 2**53); tests/stream/test_events.py checks
# that both paths agree on random input.
# status -> (failed, rate_limited), as UsageEvent's properties say.
_STATUSES: dict[str, tuple[bool, bool]] = {
    status: (status not in ("ok", "cancelled"), status == "rate_limited")
    for status in UsageStatus.__args__  # type: ignore[attr-defined]
}
_EXACT = 2.0**53  # numbers below this convert between int and float exactly
# Names repeat from event to event: one shared str per name keeps the keys of detector
# state from holding a copy per bucket (pydantic-core's parser shares short strings the
# same way) and their hashes computed once. Bounded: cleared when full.
_NAMES: dict[str, str] = {}
_MAX_NAMES = 1 << 16


# The models' limits as msgspec constraints (see _Event, UsageEvent, ErrorEvent).
_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
_Name = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
_Provider = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
_Short = Annotated[str, msgspec.Meta(max_length=128)]
_Tag = Annotated[str, msgspec.Meta(max_length=256)]
_Message = Annotated[str, msgspec.Meta(max_length=2000)]
_Tokens = Annotated[int, msgspec.Meta(ge=0, le=MAX_TOKENS_PER_EVENT)]
_Plain = Annotated[float, msgspec.Meta(ge=0, lt=_EXACT)]


class _Wire(msgspec.Struct, gc=False):
    """The fields both event kinds share."""

    event_id: _Id
    ts: str | int | float
    customer_id: _Name
    endpoint: _Name
    provider: _Provider
    model: _Id
    input_tokens: _Tokens = 0
    output_tokens: _Tokens = 0
    cost_usd: Annotated[float, msgspec.Meta(ge=0, le=1e6)] | None = None
    request_id: _Short = ""
    attempt: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 1
    latency_ms: _Plain = 0.0
    tags: Annotated[dict[_Tag, _Tag], msgspec.Meta(max_length=32)] = {}


class _UsageWire(_Wire, gc=False):
    cached_input_tokens: _Tokens = 0
    cache_write_tokens: _Tokens = 0
    status: UsageStatus = "ok"


class _ErrorWire(_Wire, gc=False):
    error_type: ErrorType = None  # type: ignore[assignment]  # None: absent, ask the model
    http_status: Annotated[int, msgspec.Meta(ge=100, le=599)] = 0
    will_retry: bool = False
    retry_after_s: _Plain = 0.0
    message: _Message = ""


_MODEL_DEPTH = 200  # pydantic-core's JSON recursion limit
_USAGE_WIRE = msgspec.json.Decoder(_UsageWire)
_ERROR_WIRE = msgspec.json.Decoder(_ErrorWire)


def _fast_record(raw: bytes | str, usage: bool) -> EventRecord | None:
    """The record if ``raw`` (a usage event if ``usage``, else an error event) has the plain
    well-formed shape; None: ask the model."""
    # The model's reader follows nesting to 200 levels, msgspec's further: where there
    # could be more, the model decides, so both paths judge the same message alike.
    if isinstance(raw, bytes):
        if raw.count(b"[") + raw.count(b"{") > _MODEL_DEPTH:
            return None
    elif raw.count("[") + raw.count("{") > _MODEL_DEPTH:
        return None
    # msgspec skips an unknown field without checking its UTF-8; the model refuses such
    # a message (invalid_utf8). Only non-ASCII input needs the check, and is rare.
    if type(raw) is bytes and not raw.isascii():
        try:
            raw.decode()
        except UnicodeDecodeError:
            return None
    try:
        wire: _UsageWire | _ErrorWire = (_USAGE_WIRE if usage else _ERROR_WIRE).decode(raw)
    except (msgspec.DecodeError, ValueError, RecursionError):
        # ValueError: not UTF-8; RecursionError: nesting deeper than msgspec follows (the
        # model's parser refuses it with its own reason, json_invalid)
        return None
    ts = wire.ts
    # The common RFC 3339 form read inline; every other form as the model reads it.
    if type(ts) is str:
        try:
            parsed = datetime.fromisoformat(ts)
        except ValueError:
            return None
        if parsed.tzinfo is None:
            return None
        ts = parsed.timestamp()
        if not TS_MIN <= ts < TS_MAX:
            return None
    else:
        try:
            ts = to_epoch_seconds(ts)
        except ValueError:
            return None
    if isinstance(wire, _UsageWire):
        failed, rate_limited = _STATUSES[wire.status]
        cached, written = wire.cached_input_tokens, wire.cache_write_tokens
    else:
        error_type = wire.error_type
        if error_type is None:
            return None
        cached = written = 0
        failed, rate_limited = True, error_type == "rate_limited"
    names = _NAMES
    if len(names) >= _MAX_NAMES:
        names.clear()
    customer_id = wire.customer_id
    endpoint = wire.endpoint
    provider = wire.provider
    model = wire.model
    return EventRecord(
        wire.event_id,
        ts,
        names.setdefault(customer_id, customer_id),
        names.setdefault(endpoint, endpoint),
        names.setdefault(provider, provider),
        names.setdefault(model, model),
        wire.input_tokens,
        wire.output_tokens,
        cached,
        written,
        wire.cost_usd,
        wire.attempt,
        failed,
        rate_limited,
    )


def parse_customer(raw: bytes | str) -> Customer | Rejection:
    """A customer record from JSON bytes, or why it was refused."""
    result: Customer | Rejection = _parse(Customer, raw)
    return result
