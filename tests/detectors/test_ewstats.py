"""Baselines against river's and numpy's own arithmetic on seeded random data."""

import json
import math
from array import array
from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from river import stats

from detectors.ewstats import EWStat, SeasonalBaseline, ew_update, ew_weight, hour_slot


@pytest.mark.parametrize("alpha", [0.5, 0.7, 1.0])
def test_ew_mean_and_variance_equal_rivers_when_alpha_is_at_least_a_half(alpha):
    xs = np.random.default_rng(7).lognormal(size=500)
    ours, mean, var = EWStat(alpha), stats.EWMean(alpha), stats.EWVar(alpha)
    for x in xs:
        ours.update(float(x))
        mean.update(float(x))
        var.update(float(x))
        assert ours.mean == pytest.approx(mean.get(), rel=1e-9)
        assert ours.var == pytest.approx(var.get(), rel=1e-6, abs=1e-12)


@pytest.mark.parametrize("alpha", [0.01, 0.05, 0.2])
def test_ew_mean_converges_to_rivers_after_warm_up(alpha):
    xs = np.random.default_rng(3).normal(10, 2, size=5000)
    ours, mean = EWStat(alpha), stats.EWMean(alpha)
    for x in xs:
        ours.update(float(x))
        mean.update(float(x))
    assert ours.mean == pytest.approx(mean.get(), rel=1e-6)


def test_warm_up_weights_make_a_plain_running_mean():
    xs = np.random.default_rng(5).normal(3, 1, size=50)
    ew = EWStat(alpha=0.001)
    for x in xs:
        ew.update(float(x))
    assert ew.mean == pytest.approx(float(np.mean(xs)))
    assert ew.var == pytest.approx(float(np.var(xs)))


def test_seasonal_baseline_learns_each_hour_of_the_day_separately():
    b = SeasonalBaseline()
    rng = np.random.default_rng(11)
    for minute in range(3 * 1440):
        t = minute * 60.0
        level = 5.0 + 4.0 * math.sin(2 * math.pi * hour_slot(t) / 24)
        b.update(t, level + rng.normal(0, 0.1), alpha=0.02)
    for hour in range(24):
        mean, sd = b.expected(hour * 3600.0 + 1800)
        assert mean == pytest.approx(5.0 + 4.0 * math.sin(2 * math.pi * hour / 24), abs=0.1)
        assert sd < 0.3


def test_the_baseline_agrees_with_the_plain_ew_statistics_within_single_precision():
    xs = np.random.default_rng(2).lognormal(size=2000)
    b, ew = SeasonalBaseline(seasonal=False), EWStat(alpha=0.01)
    for i, x in enumerate(xs):
        b.update(i * 60.0, float(x), alpha=0.01)
        ew.update(float(x))
    assert b.expected(0.0) == pytest.approx((ew.mean, ew.std), rel=1e-4)


def test_an_hour_with_little_history_falls_back_to_the_all_hours_baseline():
    b, overall = SeasonalBaseline(), EWStat(alpha=0.1)
    for minute in range(60):
        b.update(minute * 60.0, 2.0 + minute % 2, alpha=0.1)
        overall.update(2.0 + minute % 2)
    assert b.expected(5 * 3600.0) == pytest.approx((overall.mean, overall.std), rel=1e-5)
    b.update(5 * 3600.0, 100.0, alpha=0.1)  # one value in hour 5 is not yet its profile
    assert b.expected(5 * 3600.0)[0] == pytest.approx(b.mean, rel=1e-5)
    assert b.expected(0.0) == pytest.approx((overall.mean, overall.std), rel=1e-5)


@given(st.lists(st.floats(min_value=0, max_value=1e6), min_size=1, max_size=100), st.booleans())
def test_seasonal_baseline_state_round_trips_through_json(values, seasonal):
    b = SeasonalBaseline(seasonal=seasonal)
    for i, x in enumerate(values):
        b.update(i * 977.0, x, alpha=0.05)
    copy = SeasonalBaseline.from_dict(json.loads(json.dumps(b.to_dict())))
    assert copy == b
    assert copy.expected(12345.0, 1) == b.expected(12345.0, 1)


@pytest.mark.parametrize("alpha", [0.05, 0.5])
def test_ew_update_in_an_array_is_the_ew_mean_and_variance_of_ewstat(alpha):
    # retry_storm keeps its baselines this way: mean at ``at``, variance at ``at + 1``, with
    # other numbers on either side that must be neither read nor written.
    xs = np.random.default_rng(13).lognormal(size=200)
    stats, ew = array("d", [7.0, 0.0, 0.0, 9.0]), EWStat(alpha)
    for n, x in enumerate(xs, start=1):
        ew_update(stats, 1, float(x), ew_weight(alpha, n))
        ew.update(float(x))
        assert stats[1] == pytest.approx(ew.mean, rel=1e-12)
        assert stats[2] == pytest.approx(ew.var, rel=1e-12)
    assert (stats[0], stats[3]) == (7.0, 9.0)


def test_ew_update_of_two_values_gives_their_population_variance_by_hand():
    stats = array("d", [0.0, 0.0])
    ew_update(stats, 0, 2.0, 1.0)  # first value: weight 1, mean 2, variance 0
    ew_update(stats, 0, 4.0, 0.5)  # second: mean 3, variance of {2, 4} = 1
    assert list(stats) == [3.0, 1.0]


@given(st.integers(min_value=-(10**10), max_value=10**10))
@example(-1)
def test_hour_slot_is_the_utc_hour_of_the_day(t):
    # Before 1970 too: the hour of -1 s (23:59:59 on 31 December 1969) is 23, not 0.
    assert hour_slot(float(t)) == datetime.fromtimestamp(t, tz=UTC).hour
