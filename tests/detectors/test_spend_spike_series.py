"""spend_spike's unit-free series mode: time-based confirmation and calm, no USD rule,
gaps skipped, two-sided. The USD defaults stay as they were (the other tests pin them)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from detectors import spend_spike
from detectors.spend_spike import SERIES_MODE, SpendSpikeParams, SpendSpikeState

SERIES = replace(SpendSpikeParams(warmup_s=0, seasonal=False), **SERIES_MODE)


def run(values, width=60.0, params=SERIES, times=None):
    params = replace(params, warmup_s=20 * width)  # as replay_series: 20 intervals
    state = SpendSpikeState.new(params)
    out = []
    for i, value in enumerate(values):
        t = (times[i] if times is not None else i) * width
        out += spend_spike.update(state, t, width, value, params)
    return out, state


def noisy(n, level=10.0, seed=1):
    rng = np.random.default_rng(seed)
    return list(level + rng.normal(0, 0.3, n))


def test_the_usd_defaults_are_not_the_series_mode():
    usd = SpendSpikeParams()
    assert usd.direction == "up" and not usd.skip_gaps
    assert usd.confirm_s is None and usd.calm_s is None
    assert usd.absolute_usd_per_hour == 1000.0 and usd.min_excess_usd_per_hour == 3.0


@pytest.mark.parametrize(("minutes", "fires"), [(1, True), (3, True)])
def test_series_mode_confirms_in_time_not_buckets(minutes, fires):
    values = noisy(300) + [30.0] * minutes + noisy(60, seed=2)
    decisions, _ = run(values)
    assert bool(decisions) is fires
    assert decisions[0].status == "firing" and decisions[0].starts_at == 300 * 60.0


@pytest.mark.parametrize(("length", "fires"), [(9, False), (10, True)])
def test_a_confirmation_time_is_whole_buckets_on_both_sides(length, fires):
    params = replace(SERIES, confirm_s=600.0)
    values = noisy(300) + [30.0] * length + noisy(60, seed=2)
    decisions, _ = run(values, params=params)
    assert any(d.status == "firing" for d in decisions) is fires


def test_hourly_steps_fire_on_the_first_breaching_hour():
    values = noisy(200) + [30.0] + noisy(30, seed=3)
    decisions, _ = run(values, width=3600.0)
    assert decisions and decisions[0].starts_at == 200 * 3600.0


def test_no_usd_rule_fires_on_unit_free_values():
    # 100 per 5 minutes is $1,200/h if read as USD: the absolute rule would fire.
    values = [100.0 + (i % 5) * 0.5 for i in range(400)]
    assert run(values, width=300.0)[0] == []
    usd = SpendSpikeParams(seasonal=False)
    assert run(values, width=300.0, params=usd)[0] != []


@pytest.mark.parametrize(("direction", "fires"), [("up", False), ("down", True), ("both", True)])
def test_a_drop_fires_only_when_the_direction_allows(direction, fires):
    values = noisy(300) + [2.0] * 30 + noisy(60, seed=2)
    decisions, _ = run(values, params=replace(SERIES, direction=direction))
    firing = [d for d in decisions if d.status == "firing"]
    assert bool(firing) is fires
    if fires:
        assert firing[0].starts_at == 300 * 60.0
        assert firing[0].values["direction"] == -1.0


@pytest.mark.parametrize(("direction", "fires"), [("up", True), ("down", False), ("both", True)])
def test_a_spike_fires_only_when_the_direction_allows(direction, fires):
    values = noisy(300) + [30.0] * 30 + noisy(60, seed=2)
    decisions, _ = run(values, params=replace(SERIES, direction=direction))
    assert any(d.status == "firing" for d in decisions) is fires


def test_gaps_are_skipped_not_judged_as_zero():
    times = list(range(300)) + list(range(420, 600))  # two hours missing
    values = noisy(len(times))
    decisions, state = run(values, times=times)
    # Only the gap itself is reported: no drop, no spike after it.
    assert [(d.status, d.starts_at, d.ends_at) for d in decisions] == [
        ("firing", 300 * 60.0, None),
        ("resolved", 300 * 60.0, 420 * 60.0),
    ]
    assert decisions[0].values["missing_s"] == 120 * 60.0
    # The same data with gaps as zeros: the gap is a 'drop' (both ways) and is learnt.
    zeros, _ = run(values, times=times, params=replace(SERIES, skip_gaps=False))
    assert any(d.status == "firing" for d in zeros)


def test_a_drop_is_learnt_clipped_so_it_stays_a_drop():
    values = noisy(300) + [2.0] * 120
    decisions, state = run(values, params=replace(SERIES, rearm_s=0))
    assert [d.status for d in decisions] == ["firing"]  # still open after two hours


@pytest.mark.parametrize(("missing", "fires"), [(2, False), (3, True)])
def test_missing_data_fires_from_three_buckets_in_series_mode(missing, fires):
    times = list(range(300)) + list(range(300 + missing, 400))
    decisions, _ = run(noisy(len(times)), times=times)
    assert bool(decisions) is fires
    if fires:
        assert [(d.alertname, d.status, d.severity) for d in decisions] == [
            ("spend_spike", "firing", "warning"),
            ("spend_spike", "resolved", "warning"),
        ]
        for d in decisions:  # nothing was spent in the gap, and it is in these units
            assert d.values == {"observed": 0.0, "missing_s": missing * 60.0, "bucket_s": 60.0}


def test_missing_data_is_off_by_default_and_without_skipped_gaps():
    assert SpendSpikeParams().no_data_buckets is None
    times = list(range(300)) + list(range(320, 400))
    decisions, _ = run(noisy(len(times)), times=times, params=replace(SERIES, no_data_buckets=None))
    assert decisions == []
