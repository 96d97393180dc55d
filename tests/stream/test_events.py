"""Parsing: every kind of bad input yields a structured reason, never an exception."""

import json

import jsonschema
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream.events import (
    Customer,
    ErrorEvent,
    Rejection,
    UsageEvent,
    parse_customer,
    parse_error,
    parse_usage,
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
        (usage(input_tokens="many"), "int_parsing", "input_tokens"),
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
