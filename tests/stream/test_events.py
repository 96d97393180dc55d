"""Parsing: every kind of bad input yields a structured reason, never an exception."""

import json
import sys

import jsonschema
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream.core import events
from stream.core.events import (
    Customer,
    ErrorEvent,
    EventRecord,
    Rejection,
    UsageEvent,
    _fast_record,
    parse_customer,
    parse_error,
    parse_usage,
    read_error,
    read_usage,
    to_epoch_seconds,
)
from tests.contracts import schema

GOOD = {
    "event_id": "ev-1",
    "ts": "2026-11-02T10:00:00Z",
    "customer_id": "acme",
    "endpoint": "chat",
    "provider": "openai",
    "model": "gpt-4o",
    "input_tokens": 2000,
    "output_tokens": 500,
}


def usage(**changes):
    body = {**GOOD, **changes}
    return orjson.dumps({k: v for k, v in body.items() if v is not ...})


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        ("2026-11-02T10:00:00Z", 1793613600.0),
        ("2026-11-02T11:00:00+01:00", 1793613600.0),
        ("2026-11-02T10:00:00.250Z", 1793613600.25),
        (1793613600, 1793613600.0),
        (1793613600.5, 1793613600.5),
        (1793613600000, 1793613600.0),  # epoch milliseconds
    ],
)
def test_ts_accepts_rfc3339_and_epoch_seconds_and_milliseconds(ts, expected):
    event = parse_usage(usage(ts=ts))
    assert isinstance(event, UsageEvent)
    assert event.ts == pytest.approx(expected)


def test_a_good_usage_event_keeps_every_contract_field_and_ignores_unknown_ones():
    event = parse_usage(usage(cached_input_tokens=10, attempt=2, status="timeout", extra_field=1))
    assert isinstance(event, UsageEvent)
    assert (event.cached_input_tokens, event.attempt, event.failed) == (10, 2, True)
    assert not hasattr(event, "extra_field")


def test_defaults_follow_the_contract():
    event = parse_usage(usage(input_tokens=..., output_tokens=...))
    assert (event.input_tokens, event.output_tokens, event.attempt, event.status) == (0, 0, 1, "ok")
    assert event.cost_usd is None


@pytest.mark.parametrize(
    ("raw", "reason", "field"),
    [
        (b"{not json", "json_invalid", "(root)"),
        (b'{"event_id": "\xff\xfe"}', "invalid_utf8", "(root)"),
        (b"[1, 2]", "not_an_object", "(root)"),
        (b"", "json_invalid", "(root)"),
        (usage(customer_id=...), "missing", "customer_id"),
        (usage(input_tokens="many"), "int_type", "input_tokens"),
        (usage(input_tokens="12"), "int_type", "input_tokens"),  # the contract: an integer
        (usage(input_tokens=True), "int_type", "input_tokens"),
        (usage(attempt="2"), "int_type", "attempt"),
        (usage(cost_usd="0.5"), "float_type", "cost_usd"),
        (usage(input_tokens=-5), "greater_than_equal", "input_tokens"),
        (usage(input_tokens=10**15), "less_than_equal", "input_tokens"),
        (usage(ts="yesterday"), "bad_timestamp", "ts"),
        (usage(ts="2026-11-02T10:00:00"), "bad_timestamp", "ts"),
        (usage(ts=0), "bad_timestamp", "ts"),
        (usage(ts="2100-06-01T00:00:00Z"), "bad_timestamp", "ts"),
        (usage(ts=True), "bad_timestamp", "ts"),
        (usage(event_id=""), "string_too_short", "event_id"),
        (usage(event_id="x" * 129), "string_too_long", "event_id"),
        (usage(status="exploded"), "literal_error", "status"),
        (usage(attempt=0), "greater_than_equal", "attempt"),
        (usage(cost_usd=-1), "greater_than_equal", "cost_usd"),
        (usage(tags={"a": 1}), "string_type", "tags.a"),
        (usage(tags={f"k{i}": "v" for i in range(33)}), "too_long", "tags"),
    ],
)
def test_each_kind_of_bad_usage_event_is_rejected_with_its_reason(raw, reason, field):
    result = parse_usage(raw)
    assert isinstance(result, Rejection)
    assert (result.reason, result.field) == (reason, field)
    assert result.detail


def test_error_events_need_an_error_type_from_the_contract():
    good = orjson.dumps({**GOOD, "error_type": "rate_limited", "http_status": 429})
    event = parse_error(good)
    assert isinstance(event, ErrorEvent)
    assert event.failed and event.rate_limited
    bad = parse_error(orjson.dumps({**GOOD, "error_type": "meltdown"}))
    assert isinstance(bad, Rejection) and bad.field == "error_type"
    assert parse_error(orjson.dumps(GOOD)).reason == "missing"


def test_customer_records_follow_the_contract():
    c = parse_customer(b'{"customer_id": "acme", "plan": "pro", "monthly_price_usd": 99}')
    assert isinstance(c, Customer) and c.billing_day == 1 and not c.deleted
    bad = parse_customer(
        b'{"customer_id": "acme", "plan": "pro", "monthly_price_usd": 9, "billing_day": 31}'
    )
    assert isinstance(bad, Rejection) and bad.field == "billing_day"


def test_rfc3339_without_offset_is_refused_with_a_readable_message():
    with pytest.raises(ValueError, match="offset"):
        to_epoch_seconds("2026-11-02T10:00:00")


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(raw):
    assert isinstance(parse_usage(raw), UsageEvent | Rejection)
    assert isinstance(parse_error(raw), ErrorEvent | Rejection)


@given(
    st.dictionaries(
        st.sampled_from(sorted(GOOD) + ["attempt", "tags", "cost_usd"]),
        st.one_of(st.none(), st.integers(), st.text(max_size=20), st.floats()),
    )
)
def test_the_model_accepts_exactly_what_the_contract_schema_accepts(changes):
    body = {**GOOD, **changes}
    raw = json.dumps(body).encode()
    try:
        jsonschema.validate(
            json.loads(raw), schema("usage-event"), format_checker=jsonschema.FormatChecker()
        )
        schema_ok = True
    except jsonschema.ValidationError:
        schema_ok = False
    result = parse_usage(raw)
    if schema_ok and isinstance(result, Rejection):
        # Only our plausibility limits may refuse what the schema allows.
        assert result.reason in ("bad_timestamp", "less_than_equal", "int_parsing_size"), result
    if not schema_ok:
        assert isinstance(result, Rejection), body


@pytest.mark.parametrize("field", ["request_id", "latency_ms", "tags", "http_status", "message"])
def test_null_is_refused_where_the_contract_does_not_allow_it(field):
    raw = orjson.dumps({**GOOD, "error_type": "timeout", field: None})
    result = parse_error(raw)
    assert isinstance(result, Rejection) and result.field == field
    assert isinstance(
        parse_error(orjson.dumps({**GOOD, "error_type": "timeout", "cost_usd": None})), ErrorEvent
    )


# The fast reading path (orjson and plain checks) must agree with the models: same
# accept/refuse decision, same reason, same field values. Values are drawn around every
# limit the models set, in every JSON type, so both paths get valid and invalid input.
def _text(*sizes: int) -> st.SearchStrategy[str]:
    exact = [st.text(min_size=n, max_size=n) for n in sizes]
    return st.one_of(st.text(max_size=8), *exact)


_number = st.one_of(
    st.integers(-3, 3),
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, 1, 599, 600, 1000, 1001, 10**6, 10**6 + 1, 10**8, 10**8 + 1, 2**53]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 0.5, 1.0, 2.0, 1e6, 1e6 + 0.5, 1e8, 1.5e308]),
)
_odd = st.one_of(
    st.none(),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
_any = st.one_of(_number, _odd, st.text(max_size=12))
_ts = st.one_of(
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.datetimes().map(lambda d: d.isoformat()),
    st.datetimes().map(lambda d: d.isoformat() + "Z"),
    st.floats(9e8, 5e12),
    st.integers(9 * 10**8, 5 * 10**12),
    st.sampled_from(["2026-11-02T10:00:00.250Z", "2026-11-02 10:00:00+00:00", "2026-11-02"]),
    _any,
)
_tags = st.one_of(
    st.dictionaries(_text(256, 257), _text(256, 257), max_size=3),
    st.dictionaries(st.text(max_size=4), st.one_of(st.text(max_size=4), _any), max_size=3),
    st.dictionaries(st.text(max_size=4), st.just("v"), min_size=31, max_size=34),
    _any,
)
_FIELDS = {
    "event_id": st.one_of(_text(0, 1, 128, 129), _any),
    "ts": _ts,
    "customer_id": st.one_of(_text(0, 256, 257), _any),
    "endpoint": st.one_of(_text(0, 256, 257), _any),
    "provider": st.one_of(_text(0, 64, 65), _any),
    "model": st.one_of(_text(0, 128, 129), _any),
    "input_tokens": _number,
    "output_tokens": _any,
    "cached_input_tokens": _number,
    "cache_write_tokens": _any,
    "cost_usd": _any,
    "request_id": st.one_of(_text(128, 129), _any),
    "attempt": _number,
    "latency_ms": _any,
    "tags": _tags,
    "status": st.one_of(
        st.sampled_from(["ok", "rate_limited", "timeout", "cancelled", "OK"]), _any
    ),
    "error_type": st.one_of(st.sampled_from(["rate_limited", "timeout", "other", "x"]), _any),
    "http_status": st.one_of(st.sampled_from([99, 100, 429, 599, 600, 429.0]), _any),
    "will_retry": _any,
    "retry_after_s": _any,
    "message": st.one_of(_text(2000, 2001), _any),
    "failed": _any,
    "extra": _any,
}
_GOOD_ERROR = {**GOOD, "error_type": "timeout", "http_status": 504, "will_retry": True}


@st.composite
def _event_json(draw: st.DrawFn, base: dict) -> bytes:
    body = dict(base)
    for name in draw(st.lists(st.sampled_from(sorted(_FIELDS)), max_size=4, unique=True)):
        if draw(st.booleans()) and name in body:
            del body[name]
        else:
            body[name] = draw(_FIELDS[name])
    try:
        if draw(st.integers(0, 9)):
            return orjson.dumps(body)
    except TypeError:  # integers beyond 64 bits
        pass
    return json.dumps(body).encode()  # writes those, NaN and Infinity, and spaces


def _agree(raw: bytes, model: type, parse, read, usage: bool) -> None:
    expected = parse(raw)
    fast = _fast_record(raw, usage)
    if fast is not None:  # the fast path accepted: the model must, with the same values
        assert isinstance(expected, model), (raw, expected)
        assert fast == EventRecord.of(expected)
    got = read(raw)
    if isinstance(expected, Rejection):
        assert got == expected
    else:
        assert got == EventRecord.of(expected)


_PROPERTY = settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])


@_PROPERTY
@given(_event_json(GOOD))
def test_reading_a_usage_event_fast_agrees_with_the_model(raw):
    _agree(raw, UsageEvent, parse_usage, read_usage, True)


@_PROPERTY
@given(_event_json(_GOOD_ERROR))
def test_reading_an_error_event_fast_agrees_with_the_model(raw):
    _agree(raw, ErrorEvent, parse_error, read_error, False)


@given(st.binary(max_size=300))
def test_reading_arbitrary_bytes_agrees_with_the_model(raw):
    _agree(raw, UsageEvent, parse_usage, read_usage, True)
    _agree(raw, ErrorEvent, parse_error, read_error, False)


@st.composite
def _spliced(draw: st.DrawFn) -> bytes:
    """A good error event (a usage event too: it has every usage field) with a slice of
    its bytes replaced by arbitrary bytes: often still an event, often not."""
    good = orjson.dumps(_GOOD_ERROR)
    start = draw(st.integers(0, len(good)))
    end = draw(st.integers(start, min(len(good), start + 12)))
    return good[:start] + draw(st.binary(max_size=12)) + good[end:]


@_PROPERTY
@given(_spliced())
def test_reading_a_good_event_with_bytes_spliced_in_agrees_with_the_model(raw):
    _agree(raw, UsageEvent, parse_usage, read_usage, True)
    _agree(raw, ErrorEvent, parse_error, read_error, False)


@pytest.mark.parametrize(
    "unknown",
    [b'"x\x80":1', b'"x":"\x80"'],
    ids=["in an unknown field's name", "in an unknown field's value"],
)
def test_invalid_utf8_in_an_unknown_field_is_refused_on_both_paths(unknown):
    raw = _BASE + b"," + unknown + b"}"
    assert parse_usage(raw).reason == "invalid_utf8"
    _agree(raw, UsageEvent, parse_usage, read_usage, True)


def test_the_agreement_check_fails_when_the_fast_path_accepts_what_the_model_refuses(
    monkeypatch,
):
    accepts_anything = read_usage(orjson.dumps(GOOD))
    assert isinstance(accepts_anything, EventRecord)
    for module in (events, sys.modules[__name__]):
        monkeypatch.setattr(module, "_fast_record", lambda raw, usage: accepts_anything)
    with pytest.raises(AssertionError):
        _agree(b"\xff not json", UsageEvent, parse_usage, read_usage, True)


_BASE = orjson.dumps(GOOD)[:-1]  # without the closing brace: fields appended below


@pytest.mark.parametrize(
    "raw",
    [
        _BASE + b',"event_id":"again"}',  # a repeated name: the last one wins on both paths
        _BASE + b',"input_tokens":5,"input_tokens":7}',
        _BASE + b',"ts":"2026-11-02T10:00:00.1234567Z"}',  # more than microseconds
        _BASE + b',"ts":"2026-11-02T10:00:00,5Z"}',
        _BASE + b',"ts":1793613600.0}',
        _BASE + b',"attempt":1e0}',
        _BASE + b',"input_tokens":true}',
        _BASE + b',"cost_usd":1}',
        _BASE + b',"latency_ms":1e400}',
        _BASE + b',"x":[{"y":"\\ud800"}]}',  # a lone surrogate, even in an unknown field
        orjson.dumps({**GOOD, "event_id": "\U0001f600" * 128}),  # lengths in characters
        orjson.dumps({**GOOD, "event_id": "\U0001f600" * 129}),
        orjson.dumps({**GOOD, "customer_id": "\u00e9" * 257}),
        orjson.dumps({**GOOD, "tags": {"k" * 300: "v"}}),
    ],
)
def test_edge_cases_read_fast_agree_with_the_model(raw):
    _agree(raw, UsageEvent, parse_usage, read_usage, True)


def test_well_formed_events_take_the_fast_path():
    usage_raw = orjson.dumps({**GOOD, "attempt": 2, "status": "rate_limited", "tags": {"a": "b"}})
    record = _fast_record(usage_raw, True)
    assert record is not None and (record.failed, record.rate_limited) == (True, True)
    assert record == EventRecord.of(parse_usage(usage_raw))
    error_raw = orjson.dumps({**_GOOD_ERROR, "cost_usd": 1, "message": "slow"})
    assert read_error(error_raw) == EventRecord.of(parse_error(error_raw))
    assert read_error(error_raw).cost_usd == 1.0
