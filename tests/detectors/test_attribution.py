"""Attribution: the drivers' shares add up to the excess, and a change in one driver is
attributed to that driver."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from detectors.attribution import DRIVERS, MAX_RESCALE, Usage, split

BASE = Usage(
    cost=1.0,
    requests=100.0,
    attempts=104.0,
    input_tokens=40_000.0,
    cached_input_tokens=60_000.0,
    output_tokens=20_000.0,
)

positive = st.floats(min_value=1e-3, max_value=1e6, allow_nan=False, allow_infinity=False)
share = st.floats(min_value=0.0, max_value=1.0)


@st.composite
def usages(draw) -> Usage:
    requests = draw(positive)
    attempts = requests * (1.0 + draw(st.floats(0.0, 3.0)))
    prompt = draw(positive) * attempts
    cached = prompt * draw(share)
    return Usage(draw(positive), requests, attempts, prompt - cached, cached, draw(positive))


def total(a) -> float:
    return math.fsum(a.usd_per_hour.values())


@settings(max_examples=300, deadline=None)
@given(usages(), usages(), st.one_of(st.none(), st.floats(-1e6, 1e6)))
def test_the_parts_add_up_to_the_excess_for_any_usage(base, now, excess):
    a = split(base, now, excess)
    assert a is not None
    target = now.cost - base.cost if excess is None else excess
    assert a.excess_usd_per_hour == target
    # Exact up to floating point on the parts (which may be far larger than their sum).
    size = math.fsum(abs(v) for v in a.usd_per_hour.values()) + abs(target)
    assert total(a) == pytest.approx(target, rel=0, abs=1e-12 * size)
    if abs(target) >= 1e-12:
        pct = math.fsum(a.pct().values())
        assert pct == pytest.approx(100.0, rel=0, abs=1e-10 * 100 * size / abs(target))


def rounding(base: Usage, now: Usage) -> float:
    """What floating point may leave on a share: a few ulps on the costs' scale (a tiny
    change of a large cost is a difference of two large products)."""
    return 1e-12 * max(base.cost, now.cost)


@settings(max_examples=100, deadline=None)
@given(usages(), st.floats(0.1, 10.0))
@example(Usage(3456.0, 36635.0, 36635.0, 109905.0, 109905.0, 3.0), 1.000000001)
def test_a_pure_volume_change_is_all_volume(base, factor):
    now = base.scaled(factor)
    a = split(base, now)
    assert a is not None
    excess = now.cost - base.cost
    assert a.usd_per_hour["volume"] == pytest.approx(excess, rel=1e-9, abs=rounding(base, now))
    others = [v for d, v in a.usd_per_hour.items() if d != "volume"]
    assert all(abs(v) <= 1e-9 * max(1.0, now.cost) for v in others)


@settings(max_examples=100, deadline=None)
@given(usages(), st.floats(0.05, 20.0))
@example(Usage(0.001, 1.0, 1.0, 1.0, 0.0, 1.0), 1.000000001)  # an excess of 1e-12 USD/h
def test_a_pure_model_switch_is_all_model_mix(base, price):
    now = base._replace(cost=base.cost * price)  # same requests and tokens, another price
    a = split(base, now)
    assert a is not None
    excess = now.cost - base.cost
    tolerance = rounding(base, now)
    assert a.usd_per_hour["model_mix"] == pytest.approx(excess, rel=1e-9, abs=tolerance)
    if abs(excess) >= 1e-12:  # pct() shares out no excess under 1e-12 USD/h
        pct = a.pct()["model_mix"]
        assert pct == pytest.approx(100.0, rel=1e-9, abs=100 * tolerance / abs(excess))


def test_a_gpt_4o_mini_to_gpt_4o_switch_reads_as_model_mix_in_one_line():
    mini = Usage(0.0446, 165, 165, 165_000, 0, 33_000)
    four_o = mini._replace(cost=0.7425)
    a = split(mini, four_o)
    assert a is not None
    assert a.text().startswith("+$0.70/h: model mix +1,565 % (+$0.70/h); ")
    assert a.values()["excess_model_mix_pct"] == pytest.approx(100.0)
    assert set(a.values()) == {
        f"excess_{d}_{unit}" for d in DRIVERS for unit in ("usd_per_hour", "pct")
    }


@pytest.mark.parametrize(
    ("driver", "now"),
    [
        ("input_tokens", BASE._replace(input_tokens=140_000.0, cost=2.1)),
        ("output_tokens", BASE._replace(output_tokens=60_000.0, cost=2.0)),
        ("cache", BASE._replace(input_tokens=95_000.0, cached_input_tokens=5_000.0, cost=1.5)),
        ("retries", BASE._replace(attempts=150.0, cost=1.4)),
        (
            "volume",
            BASE._replace(
                requests=150.0,
                attempts=156.0,
                input_tokens=60_000.0,
                cached_input_tokens=90_000.0,
                output_tokens=30_000.0,
                cost=1.5,
            ),
        ),
    ],
)
def test_the_driver_that_moved_carries_most_of_the_excess(driver, now):
    a = split(BASE, now)
    assert a is not None
    assert max(a.usd_per_hour, key=lambda d: a.usd_per_hour[d]) == driver


def test_cache_and_failure_shares_are_told_as_levels():
    now = BASE._replace(input_tokens=95_000.0, cached_input_tokens=5_000.0, attempts=125.0, cost=2)
    a = split(BASE, now)
    assert a is not None
    assert "cache hits 60 % -> 5 %" in a.text()
    assert "failures/retries 4 % -> 20 %" in a.text()


def test_a_reported_excess_close_to_the_drivers_own_is_split_in_proportion():
    now = BASE._replace(cost=2.0)  # +1.0 by the drivers; the detector says +1.5
    a = split(BASE, now, 1.5)
    assert a is not None
    assert a.scale == pytest.approx(1.5) and "other" not in a.usd_per_hour
    assert a.usd_per_hour["model_mix"] == pytest.approx(1.5)


def test_a_reported_excess_far_from_the_drivers_own_keeps_the_split_and_names_the_rest():
    now = BASE._replace(cost=1.2)  # +0.2 by the drivers; the detector says +1.0
    assert MAX_RESCALE < 1.0 / 0.2
    a = split(BASE, now, 1.0)
    assert a is not None
    assert a.usd_per_hour["model_mix"] == pytest.approx(0.2)
    assert a.usd_per_hour["other"] == pytest.approx(0.8)
    assert "other (baselines differ) (+$0.80/h)" in a.text()


def test_usage_without_token_counts_splits_into_volume_failures_and_price():
    base = Usage(1.0, 100, 100, 0, 0, 0)
    now = Usage(3.0, 200, 220, 0, 0, 0)
    a = split(base, now)
    assert a is not None
    assert set(a.usd_per_hour) == {"volume", "model_mix", "retries"}
    assert total(a) == pytest.approx(2.0)


def test_a_side_without_attempts_has_no_split_and_all_failed_stays_finite():
    assert split(Usage(0, 0, 0, 0, 0, 0), BASE) is None
    failed = split(BASE, BASE._replace(requests=0.0, cost=1.5))
    assert failed is not None
    assert all(math.isfinite(v) for v in failed.usd_per_hour.values())
    assert total(failed) == pytest.approx(0.5)


def test_the_line_adds_up_when_small_drivers_are_told_together():
    # A 13x model switch with a little less output and a little more cache: the drivers
    # under 1 % of the excess are told together, with what they add up to.
    now = BASE._replace(cost=13.0, output_tokens=19_200.0, cached_input_tokens=61_000.0)
    a = split(BASE, now)
    assert a is not None
    text = a.text()
    assert "; others (" in text
    found = re.findall(r"\(([+-])\$([\d,.]+)/h\)", text)
    amounts = [float(sign + number.replace(",", "")) for sign, number in found]
    assert sum(amounts) == pytest.approx(a.excess_usd_per_hour, abs=0.011)
