import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors import spend_spike
from detectors.spend_spike import RECENT, STATE_VERSION, TAIL, SpendSpikeParams, SpendSpikeState
from tests.detectors.series import DAY_MINUTES, MINUTE, START, spend_series

PARAMS = SpendSpikeParams()


def run(series, params=PARAMS, state=None):
    state = state or SpendSpikeState.new(params)
    out = []
    for t, spend in series:
        out += spend_spike.update(state, t, MINUTE, spend, params)
    return out, state


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_spend_spike_is_silent_on_clean_seasonal_traffic(seed):
    decisions, _ = run(spend_series(days=4, seed=seed))
    assert decisions == []


def test_a_daily_peak_five_times_the_night_is_not_a_spike():
    decisions, _ = run(spend_series(days=4, seed=9, peak_to_trough=5.0, requests_per_min=40))
    assert decisions == []


@pytest.mark.parametrize("factor", [3.0, 10.0])
def test_spend_spike_fires_within_two_buckets_of_onset_and_resolves(factor):
    onset = 2 * DAY_MINUTES + 600  # day 3, 10:00
    series = spend_series(days=3, seed=4, spikes=((onset, 40, factor),))
    decisions, _ = run(series)
    assert [d.status for d in decisions] == ["firing", "resolved"]
    firing, resolved = decisions
    onset_t = START + onset * MINUTE
    assert onset_t <= firing.starts_at <= onset_t + 2 * MINUTE
    assert firing.values["ratio"] > 1.2
    assert firing.values["money_at_risk_usd_per_hour"] > PARAMS.min_excess_usd_per_hour
    end_t = onset_t + 40 * MINUTE
    assert end_t - 2 * MINUTE <= resolved.ends_at <= end_t + 2 * MINUTE
    assert resolved.starts_at == firing.starts_at


def test_severity_follows_the_size_of_the_spike():
    onset = 2 * DAY_MINUTES + 600
    busy = {"requests_per_min": 80.0}  # enough traffic that 2x is statistically clear
    small = run(spend_series(days=3, seed=4, spikes=((onset, 30, 2.0),), **busy))[0]
    large = run(spend_series(days=3, seed=4, spikes=((onset, 30, 10.0),), **busy))[0]
    assert small[0].severity == "warning"
    assert large[0].severity == "critical"


def test_no_relative_alert_during_warm_up():
    series = spend_series(days=0.9, seed=2, spikes=((600, 40, 10.0),))
    assert run(series)[0] == []


def test_absolute_limit_fires_even_during_warm_up():
    params = SpendSpikeParams(absolute_usd_per_hour=50.0)
    series = spend_series(days=0.5, seed=2, spikes=((300, 20, 20.0),))  # ~$90/h
    decisions, _ = run(series, params)
    assert decisions[0].status == "firing"
    assert decisions[0].severity == "critical"
    assert decisions[0].starts_at >= START + 300 * MINUTE


def test_a_spike_is_not_learnt_as_normal():
    onset = 2 * DAY_MINUTES + 600
    series = spend_series(days=3, seed=4, spikes=((onset, 180, 10.0),))
    decisions, state = run(series[: onset + 180])
    assert [d.status for d in decisions] == ["firing"]  # still firing after three hours
    assert state.episode.firing


def test_hysteresis_does_not_flap_around_the_threshold():
    # 10 x baseline then hovering at 1.15x (below the firing margin, above resolve margin).
    base = [(START + i * MINUTE, 1.0) for i in range(DAY_MINUTES + 100)]
    spike = [(START + (DAY_MINUTES + 100 + i) * MINUTE, 10.0) for i in range(5)]
    hover = [(START + (DAY_MINUTES + 105 + i) * MINUTE, 1.15 + 0.05 * (i % 2)) for i in range(60)]
    params = SpendSpikeParams(min_excess_usd_per_hour=1.0)
    decisions, _ = run(base + spike + hover, params)
    assert [d.status for d in decisions] == ["firing"]


def test_silent_gaps_count_as_zero_spend():
    params = SpendSpikeParams(seasonal=False, warmup_s=600, min_excess_usd_per_hour=0.5)
    series = [(START + i * MINUTE, 1.0) for i in range(30)]
    state = SpendSpikeState.new(params)
    run(series, params, state)
    spend_spike.update(state, START + 90 * MINUTE, MINUTE, 0.0, params)
    assert state.baseline.n == 91
    assert state.baseline.mean < 0.6


@settings(max_examples=25, deadline=None)
@given(st.integers(min_value=1, max_value=2000), st.integers(min_value=0, max_value=50))
def test_state_round_trip_mid_stream_gives_the_same_decisions(cut, seed):
    onset = DAY_MINUTES + 500
    series = spend_series(days=1.5, seed=seed, spikes=((onset, 30, 8.0),))
    whole, _ = run(series)
    first, state = run(series[:cut])
    restored = SpendSpikeState.from_dict(json.loads(json.dumps(state.to_dict())))
    rest, _ = run(series[cut:], state=restored)
    assert first + rest == whole


def test_old_state_versions_are_refused():
    data = SpendSpikeState.new(PARAMS).to_dict()
    data["v"] = 0
    with pytest.raises(ValueError, match="version"):
        SpendSpikeState.from_dict(data)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.booleans(), st.integers(30, 120))
def test_update_many_agrees_with_update_key_by_key(seed, seasonal, minutes):
    """The batch form judges and learns exactly as update() does: same decisions in the
    same order, same state (baselines stored in the same single precision). Keys skip
    buckets (gaps shorter than BATCH_QUIET: longer ones are learnt in closed form, to
    single precision's rounding, test_spend_spike_quiet_gaps), spend ordinarily, or
    spike (episodes, the careful path)."""
    rng = np.random.default_rng(seed)
    kind = rng.choice(3, size=(minutes, 24), p=[0.3, 0.62, 0.08])
    most = spend_spike.BATCH_QUIET - 1  # buckets in a row without a call
    for m in range(most, minutes):
        kind[m, (kind[m - most : m + 1] == 0).all(axis=0)] = 1
    amounts = np.where(
        kind == 2, rng.uniform(0.5, 5.0, kind.shape), rng.uniform(0, 0.2, kind.shape)
    )
    buckets = np.where(kind == 0, np.nan, amounts).tolist()  # NaN: no call (a gap)
    params = SpendSpikeParams(
        warmup_s=1200,
        min_excess_usd_per_hour=1.0,
        consecutive=2,
        seasonal=seasonal,
        baseline_days=0.02,  # weights reach alpha within the test (not only 1 / n)
    )
    one = [SpendSpikeState.new(params) for _ in range(24)]
    many = [SpendSpikeState.new(params) for _ in range(24)]
    for b, spends in enumerate(buckets):
        t = START + b * MINUTE
        called = [i for i, spend in enumerate(spends) if not math.isnan(spend)]
        want = {}
        for i in called:
            if decisions := spend_spike.update(one[i], t, MINUTE, spends[i], params):
                want[i] = decisions
        got = spend_spike.update_many(
            [many[i] for i in called], t, MINUTE, [spends[i] for i in called], params
        )
        assert {called[j]: d for j, d in got.items()} == want
        assert list(got) == sorted(got)
    assert [s.to_dict() for s in many] == [s.to_dict() for s in one]


def test_a_version_4_state_keeps_its_baseline_and_gains_empty_sums():
    params = SpendSpikeParams()
    state = SpendSpikeState.new(params)
    for minute in range(600):
        spend_spike.update(state, minute * 60.0, 60.0, 0.5 + 0.1 * (minute % 7), params)
    new = state.to_dict()
    stats = state.baseline.stats.tolist()  # version 4 wrote the array as a list
    old = {
        **new,
        "v": 4,
        "baseline": {**new["baseline"], "tail": RECENT, "stats": stats[:-TAIL] + stats[-RECENT:]},
    }
    del old["slow"]
    upgraded = SpendSpikeState.from_dict(old)
    assert upgraded.to_dict()["v"] == STATE_VERSION
    kept = upgraded.baseline.stats.tolist()
    assert kept[:-TAIL] == stats[:-TAIL] and kept[-RECENT:] == stats[-RECENT:]
    assert kept[-TAIL:-RECENT] == [0.0] * (TAIL - RECENT)
    with pytest.raises(ValueError, match="version 3"):
        SpendSpikeState.from_dict({**old, "v": 3})


def _first_firing(spends, params):
    state = SpendSpikeState.new(params)
    for i, spend in enumerate(spends):
        for d in spend_spike.update(state, START + i * MINUTE, MINUTE, spend, params):
            if d.status == "firing":
                return i, state.slow
    return None


def test_a_lasting_excess_fires_on_its_first_breaching_bucket_a_spike_after_consecutive():
    # The sustained rule's 20-minute window is its own confirmation: it fires on the first
    # bucket that breaches, whatever `consecutive` says; a point-rule spike waits for it.
    quiet = [0.02 + 0.002 * (m % 3) for m in range(DAY_MINUTES + 600)]  # $1.32/h
    lasting = quiet + [0.022 * 2.5] * 120  # 2.5x: $1.98/h over, under the $3/h floor
    spike = quiet + [0.022 * 12] * 10  # 12x for 10 minutes: $14.52/h over the floor
    slow_3 = _first_firing(lasting, SpendSpikeParams(consecutive=3))
    slow_1 = _first_firing(lasting, SpendSpikeParams(consecutive=1))
    assert slow_3 is not None and slow_3 == slow_1 and slow_3[1] is True  # the sustained rule
    fast_3 = _first_firing(spike, SpendSpikeParams(consecutive=3))
    fast_1 = _first_firing(spike, SpendSpikeParams(consecutive=1))
    assert fast_3 == (len(quiet) + 2, False) and fast_1 == (len(quiet), False)
