"""Detector states as stored (issue 13): arrays as their little-endian bytes in base64.

A restarted worker restores its customers' records from the ``detect-state`` changelog;
the arrays of every state (spend_spike's baseline, cost_shift's sums, retry_storm's stats,
margin_breach's profile and counts) are written by ``detectors.encoding.pack``. These
tests hold the round trip to the bit, after real updates, and keep the records written
before (JSON lists of numbers) readable, as a worker upgraded mid-stream must.
"""

from __future__ import annotations

import random
from array import array
from collections.abc import Callable
from dataclasses import fields, is_dataclass
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from detectors import cost_shift, margin_breach, retry_storm, spend_spike
from detectors.attribution import Usage
from detectors.cost_shift import CostShiftParams, CostShiftState
from detectors.encoding import pack, unpack
from detectors.margin_breach import MarginBreachParams, MarginBreachState, MarginTerms
from detectors.retry_storm import BucketCounts, RetryStormParams, RetryStormState
from detectors.spend_spike import SpendSpikeParams, SpendSpikeState
from stream.kafka.state import NOT_DETECTORS, CustomerStates, decode, encode

T0 = 1_793_577_600.0  # 2026-11-02T00:00:00Z, a Monday
MINUTE = 60.0


def exact(value: Any) -> Any:
    """A state as comparable values, every array as its typecode and bytes (so -0.0, NaN
    and the last bit count)."""
    if isinstance(value, array):
        return value.typecode, value.tobytes()
    if is_dataclass(value) and not isinstance(value, type):
        return type(value).__name__, {
            f.name: exact(getattr(value, f.name)) for f in fields(value) if f.compare
        }
    return value


def stored(state: Any) -> Any:
    """The state after a trip through the record's JSON."""
    return type(state).from_dict(orjson.loads(orjson.dumps(state.to_dict())))


# Each detector over up to 26 hours of one-minute buckets with a daily shape and noise, its
# last half hour three times dearer (or failing): every per-hour slot and ring is used.
def spend(rng: random.Random, minute: int) -> float:
    hour = minute // 60 % 24
    usd = (0.5 if 9 <= hour < 18 else 0.1) * (0.7 + 0.6 * rng.random())
    return usd * (3.0 if minute >= 26 * 60 - 30 else 1.0)


def spike_state(rng: random.Random, minutes: int) -> tuple[SpendSpikeState, Callable]:
    params = SpendSpikeParams()
    state = SpendSpikeState.new(params)

    def step(s: SpendSpikeState, m: int) -> list:
        return spend_spike.update(s, T0 + m * MINUTE, MINUTE, spend(rng, m), params)

    for m in range(minutes):
        step(state, m)
    return state, step


def shift_state(rng: random.Random, minutes: int) -> tuple[CostShiftState, Callable]:
    params = CostShiftParams(warmup_s=3600.0, min_baseline_requests=10, min_requests=5)
    state = CostShiftState.new(params)

    def step(s: CostShiftState, m: int) -> list:
        if m % 10:
            return []  # one step every ten minutes
        n = 10.0 + rng.randrange(20)
        usage = Usage(n * spend(rng, m) / 10, n, n + rng.randrange(3), n * 900, n * 50, n * 200)
        return cost_shift.update(s, T0 + m * MINUTE, 600.0, usage, params)

    for m in range(minutes):
        step(state, m)
    return state, step


def retry_state(rng: random.Random, minutes: int) -> tuple[RetryStormState, Callable]:
    params = RetryStormParams()
    state = RetryStormState.new(params)

    def step(s: RetryStormState, m: int) -> list:
        requests = 40.0 + rng.randrange(20)
        failing = 0.4 if m >= 26 * 60 - 30 else 0.02 + 0.02 * rng.random()
        failures = round(requests * failing)
        counts = BucketCounts(
            requests, failures, failures * 0.8, failures * 0.1, failures * 0.001, failures,
            failures * 0.6, failures * 0.5, requests,
        )  # fmt: skip
        return retry_storm.update(s, T0 + m * MINUTE, MINUTE, counts, params)

    for m in range(minutes):
        step(state, m)
    return state, step


def margin_state(rng: random.Random, minutes: int) -> tuple[MarginBreachState, Callable]:
    params, terms = MarginBreachParams(), MarginTerms(price_usd=900.0)
    state = MarginBreachState()

    def step(s: MarginBreachState, m: int) -> list:
        return margin_breach.update(s, T0 + m * MINUTE, MINUTE, spend(rng, m), terms, params)

    for m in range(minutes):
        step(state, m)
    return state, step


BUILDERS = {
    "spend_spike": spike_state,
    "cost_shift": shift_state,
    "retry_storm": retry_state,
    "margin_breach": margin_state,
}


@pytest.mark.parametrize("minutes", [0, 90, 26 * 60])
@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_a_state_comes_back_from_its_record_bit_for_bit_and_goes_on_the_same(name, minutes):
    rng = random.Random(13)
    state, step = BUILDERS[name](rng, minutes)
    again = stored(state)
    assert exact(again) == exact(state)
    assert again.to_dict() == state.to_dict()
    for m in range(minutes, minutes + 30):  # the same next buckets to both
        before = rng.getstate()
        decided = step(state, m)
        rng.setstate(before)
        assert step(again, m) == decided
    assert exact(again) == exact(state)


def test_a_spike_and_a_storm_are_stored_with_their_open_episodes():
    spike, _ = spike_state(random.Random(13), 26 * 60)
    storm, _ = retry_state(random.Random(13), 26 * 60)
    assert spike.episode is not None and storm.episode is not None
    assert exact(stored(spike)) == exact(spike) and exact(stored(storm)) == exact(storm)


def test_arrays_are_written_as_base64_of_their_bytes_under_the_new_versions():
    spike, _ = spike_state(random.Random(1), 120)
    data = spike.to_dict()
    assert data["v"] == spend_spike.STATE_VERSION == 6
    assert unpack("f", data["baseline"]["stats"]).tobytes() == spike.baseline.stats.tobytes()
    shift = CostShiftState.new(CostShiftParams()).to_dict()
    assert shift["v"] == cost_shift.STATE_VERSION == 2
    assert shift["hours"] == pack(array("f", bytes(4 * 48)))
    assert RetryStormState.new(RetryStormParams()).to_dict()["v"] == 6
    margin = MarginBreachState().to_dict()
    assert margin["v"] == 6 and unpack("H", margin["seen"]) == array("H", [0] * 24)


@given(st.binary(max_size=400).map(lambda b: b[: len(b) // 4 * 4]))
def test_any_single_precision_bits_come_back_from_pack(raw):
    values = array("f", raw)  # NaNs of any payload, infinities, -0.0, subnormals
    assert unpack("f", pack(values)).tobytes() == raw


@pytest.mark.parametrize(
    ("data", "size", "message"),
    [
        ("AADAPw==AA", None, "not base64"),
        ("AADA", None, "not whole items"),
        ("AADAPw==", 2, "1 items, expected 2"),
        ([1.5], 2, "1 items, expected 2"),
    ],
)
def test_unpack_refuses_what_is_not_an_array_of_the_size(data, size, message):
    with pytest.raises(ValueError, match=message):
        unpack("f", data, size)


def test_cost_shift_refuses_packed_sums_of_the_wrong_length():
    data = CostShiftState.new(CostShiftParams()).to_dict()
    short = pack(array("f", bytes(4 * 47)))
    with pytest.raises(ValueError, match="'hours' of the wrong length"):
        CostShiftState.from_dict({**data, "hours": short})


# A customer record (one endpoint, two hours of bench/recovery.py's traffic) as the worker
# wrote it before arrays were packed (commit 521779c^): states v5 (cost_shift v1), arrays as
# JSON lists of numbers.
OLD_RECORD = (
    rb'{"open":{"rows":[[29893078,"ep0","openai","gpt-4o",0.00366340680288023,2.0,0.0,0.0,0.0,0'
    rb'.0,0.0,0.0,1820.0,506.0,0.0],[29893079,"ep0","openai","gpt-4o",0.002949239121472538,1.0,'
    rb'0.0,0.0,0.0,0.0,0.0,0.0,639.0,214.0,0.0],[29893079,"ep0","anthropic","claude-sonnet-4",0'
    rb'.0028811754316063454,1.0,0.0,0.0,0.0,0.0,0.0,0.0,1131.0,239.0,0.0]]},"spike_customer":{"'
    rb'v":5,"baseline":{"seasonal":true,"stats":[118.0,0.003800649894401431,6.610415539398673e-'
    rb"7,0.003794747404754162,6.681186732748756e-7,60.0,0.003806756343692541,6.536468504236836e"
    rb"-7,58.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,"
    rb"0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,"
    rb"0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,"
    rb"0.0,0.0,-0.0016229049069806933,7.138014552765526e-6,-0.0016096336767077446,0.32912066578"
    rb"86505,0.3333927392959595,0.0036828159354627132,0.0039684707298874855,0.00295096402987837"
    rb"8,0.004414231050759554,0.0031752402428537607,0.0029970144387334585,0.004687114618718624,"
    rb"0.003165819449350238,0.00419630529358983,0.0043180156499147415,0.005152835510671139,0.00"
    rb'3148764604702592],"tail":17},"episode":null,"last_t":1793584620.0,"slow":false},"spike_e'
    rb'ndpoint\u001fep0":{"v":5,"baseline":{"seasonal":true,"stats":[118.0,0.003800649894401431'
    rb",6.610415539398673e-7,0.003794747404754162,6.681186732748756e-7,60.0,0.00380675634369254"
    rb"1,6.536468504236836e-7,58.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,"
    rb"0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,"
    rb"0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,"
    rb"0.0,0.0,0.0,0.0,0.0,0.0,0.0,-0.0016229049069806933,7.138014552765526e-6,-0.0016096336767"
    rb"077446,0.3291206657886505,0.3333927392959595,0.0036828159354627132,0.0039684707298874855"
    rb",0.002950964029878378,0.004414231050759554,0.0031752402428537607,0.0029970144387334585,0"
    rb".004687114618718624,0.003165819449350238,0.00419630529358983,0.0043180156499147415,0.005"
    rb'152835510671139,0.003148764604702592],"tail":17},"episode":null,"last_t":1793584620.0,"s'
    rb'low":false},"retry_endpoint\u001fep0":{"v":5,"stats":[114.0,0.04649122431874275,0.003540'
    rb"320321917534,0.061842095106840134,0.0037852029781788588,2.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,"
    rb"2.0,2.0,1.0,0.0,0.0,0.0023868787102401257,1.0,1.0,0.0,2.0,2.0,0.0,0.0,0.0,0.0,0.0,0.0,0."
    rb'0,2.0,2.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,2.0,2.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,2.0],"episode"'
    rb':null,"last_t":1793584620.0},"margin":{"v":5,"cost_usd":0.44847673701688673,"first_t":17'
    rb'93577600.0,"last_t":1793584620.0,"hour":498217,"hour_usd":0.22079189268828348,"profile":'
    rb"[0.227684841,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0"
    rb',0.0,0.0,0.0,0.0],"seen":[1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0],"level_usd":0'
    rb'.0,"level_base":0.0,"weekend_usd":0.0,"weekend_base":0.0,"spread_sq":0.0,"hours":1,"leve'
    rb'l_hours":0,"weekend_hours":0,"spread_hours":0,"critical_streak":0,"episode":null},"shift'
    rb'_endpoint\u001fep0":{"v":1,"long":[0.4172207713127136,208.3234405517578,219.287841796875'
    rb',192968.1875,0.0,47699.76953125,0.00008799851639196277],"hours":[0.2263336032629013,113.'
    rb"32344055175781,0.1908871829509735,95.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0"
    rb".0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0"
    rb'.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0],"short":[0.207248255610466,104.55541229248047,10'
    rb'9.44889068603516,97236.0859375,0.0,23422.015625,0.20615935325622559],"recent":[0.0773921'
    rb"9069480896,40.206512451171875,41.07611083984375,37437.40234375,0.0,8527.30859375,0.08195"
    rb'219188928604],"t":1793583600.0,"since":1793577600.0,"breach_since":null,"accepted":null,'
    rb'"episode":null},"shift_customer":{"v":1,"long":[0.4172207713127136,208.3234405517578,219'
    rb'.287841796875,192968.1875,0.0,47699.76953125,0.00008799851639196277],"hours":[0.22633360'
    rb"32629013,113.32344055175781,0.1908871829509735,95.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,"
    rb"0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,"
    rb'0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0],"short":[0.207248255610466,104.5554'
    rb'1229248047,109.44889068603516,97236.0859375,0.0,23422.015625,0.20615935325622559],"recen'
    rb't":[0.07739219069480896,40.206512451171875,41.07611083984375,37437.40234375,0.0,8527.308'
    rb'59375,0.08195219188928604],"t":1793583600.0,"since":1793577600.0,"breach_since":null,"ac'
    rb'cepted":null,"episode":null},"shift_step":{"step":2989307,"rows":[["ep0",0.0299047051326'
    rb"625,15.0,16.0,14942.0,0.0,3769.0]]}}"
)

# Where each state kept its arrays, and their typecodes.
OLD_ARRAYS: dict[str, list[tuple[tuple[str, ...], str]]] = {
    "spike_customer": [(("baseline", "stats"), "f")],
    "spike_endpoint": [(("baseline", "stats"), "f")],
    "retry_endpoint": [(("stats",), "f")],
    "margin": [(("profile",), "f"), (("seen",), "H")],
    "shift_customer": [((part,), "f") for part in ("long", "hours", "short", "recent")],
    "shift_endpoint": [((part,), "f") for part in ("long", "hours", "short", "recent")],
}


def arrays_of(data: dict[str, Any], slot: str) -> tuple[dict[str, Any], list[bytes]]:
    """A stored state's arrays (as bytes of their typecode) and the rest of its fields."""
    rest, found = orjson.loads(orjson.dumps(data)), []
    for path, typecode in OLD_ARRAYS[slot]:
        *outer, last = path
        holder = rest
        for key in outer:
            holder = holder[key]
        found.append(unpack(typecode, holder.pop(last)).tobytes())
    rest.pop("v")
    return rest, found


def test_a_record_written_before_arrays_were_packed_restores_the_same_states():
    old = {slot.split("\x1f")[0]: value for slot, value in orjson.loads(OLD_RECORD).items()}
    record = decode(OLD_RECORD)
    assert sorted(s.split("\x1f")[0] for s in record) == sorted(old)
    for slot, state in record.items():
        name = slot.split("\x1f")[0]
        if name not in OLD_ARRAYS:
            continue
        rest, arrays = arrays_of(state.to_dict(), name)
        old_rest, old_arrays = arrays_of(old[name], name)
        # Each array holds exactly the numbers of the old list, as single precision (or
        # uint16) would hold them; every other field is as it was.
        for (path, typecode), packed, listed in zip(
            OLD_ARRAYS[name], arrays, old_arrays, strict=True
        ):
            listed_values: Any = old[name]
            for key in path:
                listed_values = listed_values[key]
            assert packed == listed == array(typecode, listed_values).tobytes(), (slot, path)
        assert rest == old_rest, slot


def test_a_record_written_before_is_written_back_smaller_and_reads_back_the_same():
    record = decode(OLD_RECORD)
    again = encode(record)
    # Smaller even two hours in, most per-hour slots still 0.0 (4 characters as a list
    # item, 5.3 packed); a day in, every slot holds 17 digits (bench/recovery.py).
    assert len(again) < len(OLD_RECORD), (len(again), len(OLD_RECORD))
    assert b'"v":5' not in again and b'"v":1,' not in again
    assert {s: exact(v) for s, v in decode(again).items() if s not in NOT_DETECTORS} == {
        s: exact(v) for s, v in record.items() if s not in NOT_DETECTORS
    }


def test_a_worker_restores_an_old_record_among_new_ones_and_flushes_it_in_the_new_form():
    table = {b"old": OLD_RECORD, b"new": encode(decode(OLD_RECORD))}
    states = CustomerStates(table)
    states.load(iter(table.items()))
    spike = states.view("spike_customer")
    assert exact(spike["old"]) == exact(spike["new"])
    spike["old"] = spike["old"]  # changed: written back on the next flush
    assert states.flush() == 1
    assert table[b"old"] == table[b"new"]
