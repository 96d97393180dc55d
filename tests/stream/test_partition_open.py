"""A partition opens decoding only the records with something open (stream.kafka.state.opening).

A restarted worker's table holds every customer's record; the partition needs, as it
opens, the customers with an open episode (judged every bucket), open rows (buckets not
closed yet) or a cost_shift step being summed. Every other record stays bytes until its
customer is used again, and then decodes to the same state.
"""

from __future__ import annotations

import orjson

from stream.core.events import Customer
from stream.kafka.stages import PartitionDetect, Priced
from stream.kafka.state import (
    NOT_DETECTORS,
    PARTITION_PREFIX,
    CustomerStates,
    decode,
    needs_opening,
    opening,
)
from stream.settings import Settings

T0 = 1_793_577_600.0  # 2026-11-02T00:00:00Z
HOURS = 8


def event(n: int, minute: int, customer: str, tokens: int) -> Priced:
    """A call of ``tokens`` input tokens at gpt-4o's $2.50 a million."""
    return Priced(
        "usage", f"e{n}", T0 + minute * 60 + 1, customer, "chat", "openai", "gpt-4o",
        1, False, False, tokens * 2.5e-6, "usage:0", n, tokens, 100, 0,
    )  # fmt: skip


def table_after_a_day_of(spend: dict[str, list[int]]) -> dict[bytes, bytes]:
    """Customers' records as the worker flushes them: ``spend[c][m]`` input tokens at
    minute m (0: no call), buckets closed up to the last minute, open rows saved."""
    table: dict[bytes, bytes] = {}
    states = CustomerStates(table)
    known = {c: Customer(customer_id=c, plan="pro", monthly_price_usd=100.0) for c in spend}
    now = [0.0]
    detect = PartitionDetect(Settings(), known.get, states, 0, 1, clock=lambda: now[0])
    n = 0
    for minute in range(HOURS * 60):
        now[0] = float(minute)
        for customer, tokens in spend.items():
            if tokens[minute]:
                n += 1
                detect.add(event(n, minute, customer, tokens[minute]))
        detect.close_due()
        detect.save_open_rows()
        states.flush()
    return table


def something_open(raw: bytes) -> bool:
    record = decode(raw)
    return any(s.episode is not None for s in record.values()) or bool(
        record.keys() & set(NOT_DETECTORS)
    )


def test_only_records_with_something_open_are_decoded_and_the_rest_read_the_same_later():
    minutes = HOURS * 60
    spend = {
        "busy": [2000 + 50 * (m % 7) for m in range(minutes)],
        # steady, then $1,200/h for the last 20 minutes: over the absolute limit, an open spike
        "spiking": [2000 + 50 * (m % 5) if m < minutes - 20 else 8_000_000 for m in range(minutes)],
        # spent for the first hours, nothing in the last two: nothing open
        "quiet": [3000 + 40 * (m % 3) if m < minutes - 120 else 0 for m in range(minutes)],
        "gone": [1500 if m < 60 else 0 for m in range(minutes)],
    }
    table = table_after_a_day_of(spend)
    records = {k: v for k, v in table.items() if not k.startswith(PARTITION_PREFIX)}
    assert set(records) == {b"busy", b"spiking", b"quiet", b"gone"}
    assert something_open(records[b"spiking"]) and something_open(records[b"busy"])
    assert not something_open(records[b"quiet"]) and not something_open(records[b"gone"])
    # The marks never miss a record with something open, and skip the two quiet ones.
    assert {k for k, v in records.items() if needs_opening(v)} == {b"busy", b"spiking"}
    assert {k for k, _ in opening(table.items(), 0, 1)} == {b"busy", b"spiking"}
    episode = decode(records[b"spiking"])["spike_customer"].episode
    assert episode is not None
    # Loaded as a partition opens: the spiking customer's key is judged every bucket; a
    # quiet customer's record is decoded when first used, to the state it holds.
    states = CustomerStates(table)
    active = states.load(iter(opening(table.items(), 0, 1)))
    assert "spiking" in active["spike_customer"]
    assert set(states.cache) == {"busy", "spiking"}
    assert states.record("quiet").keys() == decode(records[b"quiet"]).keys()
    assert {s: v.to_dict() for s, v in states.record("quiet").items()} == {
        s: v.to_dict() for s, v in decode(records[b"quiet"]).items()
    }


def test_a_record_says_in_its_first_bytes_whether_it_holds_something_open():
    minutes = HOURS * 60
    table = table_after_a_day_of(
        {"spiking": [2000] * (minutes - 20) + [8_000_000] * 20, "gone": [1500] * 60 + [0] * 420}
    )
    assert table[b"spiking"].startswith(b'{"#":1,') and table[b"gone"].startswith(b'{"#":0,')


def test_a_record_written_before_the_flag_is_read_by_its_marks():
    # A worker upgraded mid-stream restores its predecessor's records: no flag, so
    # needs_opening looks for the encoder's own spelling of what is open in them.
    minutes = HOURS * 60
    table = table_after_a_day_of(
        {"spiking": [2000] * (minutes - 20) + [8_000_000] * 20, "gone": [1500] * 60 + [0] * 420}
    )
    for key, expected in ((b"spiking", True), (b"gone", False)):
        data = orjson.loads(table[key])
        del data["#"]
        before = orjson.dumps(data)
        if expected:
            assert b'"episode":{' in before and b'"open":' in before
            assert b'"shift_step":' in before
        assert needs_opening(before) is expected
        assert {s: v.to_dict() for s, v in decode(before).items()} == {
            s: v.to_dict() for s, v in decode(table[key]).items()
        }
