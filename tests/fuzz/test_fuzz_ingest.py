"""Fuzzing the worker's per-message path: raw bytes -> IngestStage -> bundle -> detect.

No message makes the path raise; every message is counted once, accepted or dead-lettered;
ingest accepts what the contracts accept and refuses what they refuse; and bad messages
among good traffic change no alert. Budgets: tests/fuzz/conftest.py.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.core.ingest import DeadLetter
from stream.kafka.stages import Priced
from tests.fuzz.contract import ACCEPT, FIELDS, KINDS, MAX_EVENT_BYTES, REFUSE
from tests.fuzz.strategies import Frame, Message, bad_messages, encode, judge, messages, nest, put
from tests.fuzz.traffic import GOOD, Worker, handle, identify, ingest_stage, traffic

FUZZ = settings.get_profile("fuzz")
HEAVY = settings(FUZZ, max_examples=max(FUZZ.max_examples // 5, 10))  # a 4-hour run each


def assert_judged_as_the_contracts_say(message: Message, result: Priced | DeadLetter) -> None:
    if message.verdict == ACCEPT:
        assert isinstance(result, Priced), (message, result.rejection)  # type: ignore[union-attr]
    elif message.verdict == REFUSE:
        assert isinstance(result, DeadLetter), (message, result)


@FUZZ
@given(st.lists(messages(), min_size=1, max_size=12))
def test_no_message_escapes_the_worker_path_and_each_is_counted_once(batch):
    worker = Worker()
    worker.batch([(m.kind, m.raw) for m in batch])  # bundle round trip, detect, global
    assert worker.accepted + len(worker.letters) == len(batch)
    stats = worker.stage.ingest.stats
    assert (stats.accepted.total(), stats.rejected.total()) == (
        worker.accepted,
        len(worker.letters),
    )
    for letter in worker.letters:  # the intake sends these as the dead letter's headers
        rejection = letter.rejection
        assert rejection.reason and rejection.field
        (rejection.reason + rejection.field + rejection.detail).encode()
        assert any(letter.raw in (m.raw, m.raw.rstrip(b"\r\n")) for m in batch)


@FUZZ
@given(messages())
def test_ingest_accepts_what_the_contracts_accept_and_refuses_what_they_refuse(message):
    assert_judged_as_the_contracts_say(message, handle(message.raw, message.kind))


DEPTHS = [1, 2, 64, 199, 200, 201, 995, 996, 10_000, 32_767, 32_768, 50_000]


@pytest.mark.parametrize("kind", KINDS)
def test_deep_nesting_as_any_field_or_an_extra_one_is_refused_or_ignored(kind):
    """Every field in turn, and an unknown one, holds 1..50,000 levels of arrays or
    objects, down to the deepest that fits in ingest.max_event_bytes."""
    stage = ingest_stage()
    for name in [*sorted(FIELDS[kind]), "x_extra"]:
        for shape in ("array", "object"):
            one, two = (len(encode(put(GOOD[kind], name, nest(d, shape)), Frame())) for d in (1, 2))
            deepest = 1 + (MAX_EVENT_BYTES - one) // (two - one)
            for depth in [*DEPTHS, deepest, deepest + 1]:
                pairs = put(GOOD[kind], name, nest(depth, shape))
                raw = encode(pairs, Frame())
                message = Message(kind, raw, *judge(kind, pairs, Frame(), raw))
                assert_judged_as_the_contracts_say(message, stage.handle(kind, raw, "x:0", 0))


def with_field(pairs: list, text: bytes) -> bytes:
    return encode(pairs, Frame())[:-1] + b"," + text + b"}"


def test_nesting_in_an_unknown_field_is_judged_alike_whatever_the_other_fields_hold():
    """Up to 200 levels (the model's limit) or more (the fast path's): the same either way."""
    deep = b'"x":' + nest(300, "array").text
    plain = handle(with_field(GOOD["usage"], deep))
    odd = handle(with_field([*GOOD["usage"], ("latency_ms", 1e300)], deep))  # not fast-path
    assert type(plain) is type(odd), (plain, odd)


@pytest.mark.parametrize(
    "extra", [b'"x":"\xff"', b'"k\xff":1', b'"x":["\xc3\x28"]', b'"\xed\xa0\x80":1']
)
def test_invalid_utf8_in_an_unknown_field_is_refused(extra):
    assert isinstance(handle(encode(GOOD["usage"], Frame())), Priced)
    assert isinstance(handle(with_field(GOOD["usage"], extra)), DeadLetter)


@pytest.mark.parametrize(
    ("kind", "extra"),
    [
        ("usage", b'"x":NaN'),
        ("usage", b'"x":[Infinity]'),
        ("errors", b'"x":-Infinity'),
        ("errors", b'"retry_after_s":Infinity'),
    ],
)
def test_nan_and_infinity_are_refused_wherever_they_stand(kind, extra):
    assert isinstance(handle(encode(GOOD[kind], Frame()), kind), Priced)
    assert isinstance(handle(with_field(GOOD[kind], extra), kind), DeadLetter)


@pytest.mark.parametrize(
    "extra",
    [
        b'"failed":"no"',
        b'"failed":false',
        b'"cached_input_tokens":5000',
        b'"cache_write_tokens":"x"',
    ],
)
def test_an_error_event_ignores_fields_its_contract_does_not_have(extra):
    plain = handle(encode(GOOD["errors"], Frame()), "errors")
    assert isinstance(plain, Priced)
    assert handle(with_field(GOOD["errors"], extra), "errors") == plain


# -- good traffic with bad messages among it ------------------------------------------------


@pytest.fixture(scope="module")
def clean_worker() -> Worker:
    worker = Worker().run([(kind, raw, True) for kind, raw in traffic()])
    assert not worker.letters
    assert {a.labels["alertname"] for a in worker.alerts if a.status == "firing"} == {
        "spend_spike",
        "retry_storm",
    }
    return worker


_POSITION = st.one_of(st.just(0), st.just(len(traffic())), st.integers(0, len(traffic())))
_BAD = st.lists(
    st.tuples(_POSITION, st.sampled_from(KINDS).flatmap(bad_messages)), min_size=1, max_size=8
)


@HEAVY
@given(_BAD)
def test_bad_messages_among_good_traffic_change_no_alert_of_the_worker(clean_worker, bad):
    lines = [(kind, raw, True) for kind, raw in traffic()]
    for position, message in sorted(bad, key=lambda b: b[0], reverse=True):
        lines.insert(position, (message.kind, message.raw, False))
    worker = Worker().run(lines)
    assert len(worker.letters) == len(bad)
    assert worker.accepted == clean_worker.accepted
    assert identify(worker.alerts) == identify(clean_worker.alerts)
