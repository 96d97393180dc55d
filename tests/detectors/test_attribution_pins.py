"""Attribution pinned by hand: the identity the drivers are defined by, when token drivers
are used, and the bounds of fitting the split to a reported excess, on both sides."""

from __future__ import annotations

import math

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from detectors.attribution import MAX_RESCALE, Usage, factors, split
from tests.detectors.test_attribution import BASE

NO_TOKENS = Usage(0.5, 90.0, 100.0, 0.0, 0.0, 0.0)  # usage that reports no token counts


def identity(f) -> float:
    """C = R x k x p x (i x (1 - 0.75 h) + 4 o), as the module's docstring writes it."""
    return (
        f.volume
        * f.retries
        * f.model_mix
        * (f.input_tokens * (1 - 0.75 * f.cache) + 4 * f.output_tokens)
    )


def test_usage_scaled_to_a_longer_period_multiplies_every_figure():
    per_minute = Usage(0.02, 3.0, 4.0, 500.0, 100.0, 50.0)
    assert per_minute.scaled(60.0) == Usage(1.2, 180.0, 240.0, 30_000.0, 6_000.0, 3_000.0)


def test_the_drivers_of_usage_by_hand():
    f = factors(BASE)
    assert f is not None
    assert f.volume == 100.0  # successful requests
    assert f.retries == 1.04  # attempts per successful request
    assert f.input_tokens == pytest.approx(100_000 / 104)  # prompt tokens per attempt
    assert f.output_tokens == pytest.approx(20_000 / 104)
    assert f.cache == 0.6  # 60,000 of 100,000 prompt tokens cached
    # USD per weighted token: $1 over 104 attempts of 100,000 x 0.55 + 80,000 weighted
    assert f.model_mix == pytest.approx(1.0 / 135_000)
    assert identity(f) == pytest.approx(BASE.cost, rel=1e-12)


def test_without_tokens_the_price_is_per_attempt():
    f = factors(BASE, tokens=False)
    assert f is not None
    assert (f.input_tokens, f.output_tokens, f.cache) == (1.0, 0.0, 0.0)
    assert f.model_mix == 1.0 / 104
    assert identity(f) == pytest.approx(BASE.cost, rel=1e-12)


def test_usage_with_no_prompt_tokens_has_no_cache_share():
    f = factors(Usage(0.4, 10.0, 10.0, 0.0, 0.0, 1_000.0))
    assert f is not None
    assert (f.input_tokens, f.cache) == (0.0, 0.0)
    assert identity(f) == pytest.approx(0.4, rel=1e-12)


@settings(max_examples=100, deadline=None)
@given(
    st.floats(1e-3, 1e4),
    st.floats(0.0, 1e6),
    st.floats(0.0, 1e6),
    st.floats(1.0, 1e6),
    st.booleans(),
)
def test_the_identity_is_exact_so_the_split_needs_no_rescaling(cost, uncached, cached, out, tok):
    assume(abs(cost - BASE.cost) > 1e-6 and abs(cost - NO_TOKENS.cost) > 1e-6)  # an excess
    base = BASE if tok else NO_TOKENS
    if tok:
        a = split(BASE, Usage(cost, 50.0, 60.0, uncached, cached, out))
    else:
        a = split(NO_TOKENS, Usage(cost, 50.0, 60.0, 0.0, 0.0, 0.0))
    assert a is not None
    # Exact up to rounding at the costs' scale, which the excess (their difference) sees
    # magnified: hypothesis found $1.0019 against $1.00 off by 2e-9.
    assert a.scale == pytest.approx(1.0, rel=1e-9 * max(cost, base.cost) / abs(cost - base.cost))
    assert a.tokens is tok
    assert "other" not in a.usd_per_hour


TOKEN_DRIVERS = {"input_tokens", "output_tokens", "cache"}


@pytest.mark.parametrize(
    ("base", "now", "tokens"),
    [
        pytest.param(BASE, BASE._replace(cost=2.0), True, id="both sides report tokens"),
        pytest.param(BASE, NO_TOKENS, False, id="now reports none"),
        pytest.param(NO_TOKENS, BASE, False, id="the baseline reports none"),
        # A prompt all read from cache, and usage so small it is half a token an hour.
        pytest.param(
            Usage(0.1, 10.0, 10.0, 0.0, 100.0, 0.0), BASE, True, id="all cached, no output"
        ),
        pytest.param(
            Usage(1e-6, 0.01, 0.01, 0.0, 0.0, 0.125), BASE, True, id="half a weighted token"
        ),
        pytest.param(
            BASE, Usage(1e-6, 0.01, 0.01, 0.0, 0.0, 0.125), True, id="now half a weighted token"
        ),
    ],
)
def test_token_drivers_are_used_only_when_both_sides_report_tokens(base, now, tokens):
    a = split(base, now)
    assert a is not None
    assert a.tokens is tokens
    assert (set(a.usd_per_hour) >= TOKEN_DRIVERS) is tokens
    assert math.fsum(a.usd_per_hour.values()) == pytest.approx(now.cost - base.cost)


# Fitting the split to a reported excess ----------------------------------------------------

# The drivers' own change from BASE to TWICE: $1/h, half volume, half input tokens per request.
TWICE = BASE._replace(cost=2.0, requests=150.0, attempts=156.0, input_tokens=100_000.0)


def drivers_own(base: Usage, now: Usage) -> float:
    """The Shapley shares' sum, as split() has it: with a reported excess of 0 (out of any
    rescaling) the rest, ``other``, is exactly its negative."""
    a = split(base, now, 0.0)
    assert a is not None
    return -a.usd_per_hour["other"]


@pytest.mark.parametrize("factor", [MAX_RESCALE, 1.0 / MAX_RESCALE], ids=["2x", "half"])
def test_a_reported_excess_exactly_at_the_rescale_bound_is_split_in_proportion(factor):
    own = drivers_own(BASE, TWICE)
    shares = split(BASE, TWICE)
    fitted = split(BASE, TWICE, own * factor)
    assert shares is not None and fitted is not None
    assert fitted.scale == factor
    assert "other" not in fitted.usd_per_hour
    assert fitted.usd_per_hour == pytest.approx(
        {d: v * factor for d, v in shares.usd_per_hour.items()}, rel=1e-9
    )
    # Just beyond the bound the shares are kept as computed and the rest is "other".
    beyond = math.nextafter(own * factor, math.inf if factor > 1 else 0.0)
    kept = split(BASE, TWICE, beyond)
    assert kept is not None
    assert kept.scale == 1.0
    assert kept.usd_per_hour["other"] == pytest.approx(beyond - own)
    assert kept.usd_per_hour["volume"] == pytest.approx(shares.usd_per_hour["volume"], rel=1e-12)


@settings(max_examples=200, deadline=None)
@given(st.floats(0.05, 20.0), st.floats(0.55, 1.9))
def test_drivers_that_did_not_move_get_exactly_nothing_whatever_the_excess(price, fit):
    # A pure model switch fitted to a reported excess: what floating point leaves over goes
    # to the largest part, model mix, never to a driver that did not move.
    now = BASE._replace(cost=BASE.cost * price)
    if now.cost == BASE.cost:
        return
    a = split(BASE, now, (now.cost - BASE.cost) * fit)
    assert a is not None
    assert {d: v for d, v in a.usd_per_hour.items() if d != "model_mix"} == dict.fromkeys(
        ("volume", "input_tokens", "output_tokens", "cache", "retries"), 0.0
    )


def test_no_change_reads_as_plus_nothing():
    a = split(BASE, BASE)
    assert a is not None
    assert a.text().startswith("+$0.00/h: ")
