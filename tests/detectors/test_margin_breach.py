import json
import math
from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors import margin_breach
from detectors.margin_breach import (
    MarginBreachParams,
    MarginBreachState,
    MarginTerms,
    billing_period,
    projection,
)

MINUTE = 60.0
HOUR = 3600.0
DAY = 86_400.0
NOV_2 = datetime(2026, 11, 2, tzinfo=UTC).timestamp()  # a Monday
DEC_1 = datetime(2026, 12, 1, tzinfo=UTC).timestamp()
OCT_19 = datetime(2026, 10, 19, tzinfo=UTC).timestamp()  # a Monday, two weeks before November
PARAMS = MarginBreachParams()
OVERHEAD = 1.65
USD_PER_REQUEST = 0.004  # median; lognormal(sigma 0.8) around it
MEAN_USD_PER_REQUEST = USD_PER_REQUEST * math.exp(0.8**2 / 2)
EXPECTED_ANNOTATIONS = {
    "observed",
    "baseline",
    "threshold",
    "cost_to_date_usd",
    "projected_cost_to_serve_usd",
    "projected_margin",
    "margin_target",
    "monthly_price_usd",
    "burn_rate_usd_per_hour",
    "money_at_risk_usd_per_hour",
    "period_start",
    "period_end",
    "bucket_s",
    "projection_low_usd",
    "projection_high_usd",
    "confidence",
}


def run(usd_per_min, minutes, terms, start=NOV_2, params=PARAMS, state=None):
    state = state or MarginBreachState()
    out = []
    for m in range(minutes):
        out += margin_breach.update(state, start + m * MINUTE, MINUTE, usd_per_min, terms, params)
    return out, state


def feed(series, terms, params=PARAMS, state=None):
    state = state or MarginBreachState()
    out = []
    for t, usd in series:
        out += margin_breach.update(state, t, MINUTE, usd, terms, params)
    return out, state


def monthly_api_cost(usd_per_min):
    return usd_per_min * 60 * 24 * 30


def traffic(
    days,
    seed,
    start=NOV_2,
    requests_per_min=20.0,
    peak_to_trough=2.5,
    bursts=(),
):
    """(bucket start, USD) per minute: Poisson requests at a diurnal rate (peak 15:00 UTC,
    ``peak_to_trough``), each costing lognormal USD; ``bursts`` are (start minute, minutes,
    rate multiplier). Vectorised twin of tests.detectors.series.spend_series."""
    rng = np.random.default_rng(seed)
    t = start + MINUTE * np.arange(int(days * 1440))
    amplitude = (peak_to_trough - 1) / (peak_to_trough + 1)
    rate = requests_per_min * (1 + amplitude * np.cos(2 * np.pi * ((t % DAY) / DAY - 15 / 24)))
    for first, length, factor in bursts:
        rate[first : first + length] *= factor
    counts = rng.poisson(rate)
    costs = rng.lognormal(math.log(USD_PER_REQUEST), 0.8, counts.sum())
    minute_of = np.repeat(np.arange(len(t)), counts)
    usd = np.bincount(minute_of, weights=costs, minlength=len(t))
    return list(zip(t.tolist(), usd.tolist(), strict=True))


def monthly_cost_to_serve(requests_per_min=20.0, days=30):
    """Expected cost-to-serve of a month of ``traffic`` (the diurnal curve averages 1)."""
    return requests_per_min * MEAN_USD_PER_REQUEST * 1440 * days * OVERHEAD


def november(decisions):
    return [d for d in decisions if d.starts_at < DEC_1]


def test_traffic_matches_a_minute_by_minute_poisson_sum():
    series = traffic(10, seed=1)
    usd = np.array([u for _, u in series])
    assert usd.mean() == pytest.approx(20 * MEAN_USD_PER_REQUEST, rel=0.03)
    hours = usd.reshape(-1, 60).sum(axis=1).reshape(-1, 24).mean(axis=0)
    assert hours.argmax() in (14, 15) and hours.max() / hours.min() == pytest.approx(2.5, rel=0.1)


@pytest.mark.parametrize(
    ("t", "day", "start", "end"),
    [
        (datetime(2026, 11, 2, 5, tzinfo=UTC), 1, datetime(2026, 11, 1), datetime(2026, 12, 1)),
        (datetime(2026, 11, 14, tzinfo=UTC), 15, datetime(2026, 10, 15), datetime(2026, 11, 15)),
        (datetime(2026, 12, 20, tzinfo=UTC), 15, datetime(2026, 12, 15), datetime(2027, 1, 15)),
        (datetime(2027, 1, 3, tzinfo=UTC), 5, datetime(2026, 12, 5), datetime(2027, 1, 5)),
    ],
)
def test_billing_period_starts_on_the_billing_day(t, day, start, end):
    s, e = billing_period(t.timestamp(), day)
    assert (s, e) == (start.replace(tzinfo=UTC).timestamp(), end.replace(tzinfo=UTC).timestamp())


# --- Real-looking traffic -------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("first_hour", [0, 6, 15])  # data begins at night, morning, peak
def test_a_customer_priced_at_five_times_cost_never_fires_in_a_month(seed, first_hour):
    """The 05:59 case: a few hours extrapolated to a month warned a customer priced at
    ~5x its cost-to-serve. The hours of the day not seen yet keep the band wide."""
    series = traffic(30, seed)[first_hour * 60 :]
    terms = MarginTerms(price_usd=5 * monthly_cost_to_serve())
    decisions, state = feed(series, terms)
    assert decisions == []
    in_december = [u for t, u in series if t >= DEC_1]
    assert state.cost_usd == pytest.approx(np.sum(in_december))


@pytest.mark.parametrize(
    ("burst_minute", "seed"),
    [(9 * 1440 + 14 * 60, 1), (9 * 1440 + 3 * 60, 2), (1440 + 10 * 60, 3), (20 * 1440, 4)],
)
def test_a_two_hour_burst_counts_what_it_cost_and_is_not_projected(burst_minute, seed):
    terms = MarginTerms(price_usd=5 * monthly_cost_to_serve())
    burst = ((burst_minute, 120, 10.0),)
    plain = traffic(28, seed)
    bursty = traffic(28, seed, bursts=burst)
    after = NOV_2 + (burst_minute + 120) * MINUTE  # the first bucket after the burst
    cut = burst_minute + 121
    decisions, state = feed(bursty[:cut], terms)
    _, calm = feed(plain[:cut], terms)
    assert decisions == []
    # Month to date holds all of the burst, to the cent (against numpy's sum).
    assert state.cost_usd == pytest.approx(np.sum([u for _, u in bursty[:cut]]), rel=1e-9)
    excess = state.cost_usd - calm.cost_usd
    window = sum(u for _, u in plain[burst_minute : burst_minute + 120])
    assert 7 * window < excess < 11 * window  # 10x the rate: 9x more than usual
    # The burst is not repeated for the month: the rest of the month is projected at
    # most about the burst's own cost higher (winsorised hours still nudge the level;
    # most on day 2, while the level has few hours behind it), where extrapolating the
    # burst's rate would add hundreds of times that.
    period_end = billing_period(after, 1)[1]
    rest, _ = projection(state, after + MINUTE, period_end, PARAMS)
    rest_calm, _ = projection(calm, after + MINUTE, period_end, PARAMS)
    naive = excess / 2 * (period_end - after) / HOUR  # the burst's rate for the month
    assert rest - rest_calm < 1.5 * excess
    assert rest - rest_calm < 0.01 * naive
    more, _ = feed(bursty[cut:], terms, state=state)
    assert more == []


@pytest.mark.parametrize(
    ("cost_over_price", "severities", "warned_within_h", "critical_within_h"),
    [
        # cost-to-serve 1.2x the price: a warning in the first evening (~20:00), critical
        # on the morning of day 2 (~32 h in), when its first hours have been compared.
        (1.2, ["warning", "critical"], 24, 40),
        # 0.6x the price, margin 0.4 against 0.5: a warning on day 2 (~32 h in).
        (0.6, ["warning"], 40, None),
    ],
)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_customer_over_target_fires_within_two_days_and_resolves_at_period_end(
    cost_over_price, severities, warned_within_h, critical_within_h, seed
):
    terms = MarginTerms(price_usd=monthly_cost_to_serve() / cost_over_price)
    decisions, _ = feed(traffic(30, seed), terms)
    nov = november(decisions)
    firing = [d for d in nov if d.status == "firing"]
    assert [d.severity for d in firing] == severities
    assert firing[0].starts_at - NOV_2 <= warned_within_h * HOUR
    if critical_within_h is not None:
        assert firing[1].starts_at - NOV_2 <= critical_within_h * HOUR
    # Everything open resolves when the billing period ends (a warning escalated to
    # critical resolved where the critical one began).
    resolved = [d for d in nov if d.status == "resolved"]
    assert len(resolved) == len(firing)
    assert resolved[-1].ends_at == DEC_1
    for d in firing:
        assert d.values["confidence"] >= PARAMS.min_confidence
        assert d.values["projection_low_usd"] <= d.values["projected_cost_to_serve_usd"]
        assert d.values["projected_cost_to_serve_usd"] <= d.values["projection_high_usd"]
        assert set(d.values) >= EXPECTED_ANNOTATIONS


def test_a_customer_with_a_healthy_margin_is_left_alone():
    price = monthly_api_cost(0.01) * 1.65 * 3  # margin ~0.67 against a 0.5 target
    decisions, _ = run(0.01, 10 * 1440, MarginTerms(price_usd=price))
    assert decisions == []


# --- Both sides of every boundary ------------------------------------------------------------


def steady(usd_per_min, until=DEC_1 + DAY):
    """Two weeks of history before November, then November at the same rate."""
    minutes = int((until - OCT_19) // MINUTE)
    return [(OCT_19 + m * MINUTE, usd_per_min) for m in range(minutes)]


PER_MIN = 0.01
SERVE = PER_MIN * 1440 * 30 * OVERHEAD  # cost-to-serve of a 30-day month


@pytest.mark.parametrize(
    ("terms", "params", "severities"),
    [
        # Projected margin just below / just above the target (0.5): cost at 1.03x / 0.97x
        # of what the target allows.
        (MarginTerms(price_usd=SERVE / 0.5 / 1.03), PARAMS, ["warning"]),
        (MarginTerms(price_usd=SERVE / 0.5 / 0.97), PARAMS, []),
        # Projected cost just above / below the price.
        (MarginTerms(price_usd=SERVE / 1.03), PARAMS, ["critical"]),
        (MarginTerms(price_usd=SERVE / 0.97), PARAMS, ["warning"]),
        # The customer's own target, on both sides.
        (MarginTerms(price_usd=SERVE / 0.2 / 1.03, margin_target=0.8), PARAMS, ["warning"]),
        (MarginTerms(price_usd=SERVE / 0.2 / 0.97, margin_target=0.8), PARAMS, []),
        # A free plan against its cost cap: projected just over it warns, and the actual
        # passing it (at the end of the month) is critical; just under stays quiet.
        (MarginTerms(0.0, cost_cap_usd=SERVE / 1.03), PARAMS, ["warning", "critical"]),
        (MarginTerms(0.0, cost_cap_usd=SERVE / 0.97), PARAMS, []),
        # Without projection, the month-to-date actual alone: over what the target allows
        # by the last day, or not.
        (
            MarginTerms(price_usd=SERVE / 0.5 / 1.03),
            MarginBreachParams(min_history_s=1e9),
            ["warning"],
        ),
        (MarginTerms(price_usd=SERVE / 0.5 / 0.97), MarginBreachParams(min_history_s=1e9), []),
    ],
)
def test_a_steady_customer_fires_on_the_breaching_side_of_each_boundary_only(
    terms, params, severities
):
    decisions, _ = feed(steady(PER_MIN), terms, params)
    firing = [d for d in november(decisions) if d.status == "firing"]
    assert [d.severity for d in firing] == severities
    assert all(d.starts_at >= billing_period(NOV_2, 1)[0] for d in firing)


@pytest.mark.parametrize(("min_history_h", "fires_after_h"), [(6, 6), (12, 12), (0, 0)])
def test_min_history_s_is_a_floor_under_projection(min_history_h, fires_after_h):
    # A band made narrow from the first hour (no prior uncertainty) would fire at once.
    params = MarginBreachParams(
        min_history_s=min_history_h * HOUR, unseen_hour_cv=0.0, unseen_weekend_cv=0.0, min_cv=0.0
    )
    decisions, _ = run(0.01, 1440, MarginTerms(price_usd=monthly_api_cost(0.01)), params=params)
    assert decisions[0].status == "firing"
    assert fires_after_h * HOUR <= decisions[0].starts_at - NOV_2 + MINUTE
    assert decisions[0].starts_at - NOV_2 <= fires_after_h * HOUR + 2 * HOUR


def test_the_first_hours_never_fire_from_projection_alone():
    # 3x over the price (cost-to-serve), yet the first morning may not alert: the rest of
    # the day is unseen. Only the actual passing the target's allowance could.
    terms = MarginTerms(price_usd=monthly_cost_to_serve() / 3)
    decisions, _ = feed(traffic(1, seed=5)[: 8 * 60], terms)
    assert decisions == []


def test_a_recovered_spend_resolves_the_breach():
    price = monthly_api_cost(0.01) * 1.65 * 1.5  # margin ~0.33 against a 0.5 target
    terms = MarginTerms(price_usd=price)
    decisions, state = run(0.01, 2 * 1440, terms)
    assert [(d.status, d.severity) for d in decisions] == [("firing", "warning")]
    assert decisions[0].values["projected_margin"] == pytest.approx(1 / 3, abs=0.05)
    later, _ = run(0.001, 4 * 1440, terms, start=NOV_2 + 2 * DAY, state=state)
    assert [d.status for d in later] == ["resolved"]


def test_an_open_breach_resolves_when_the_billing_period_ends():
    start = datetime(2026, 11, 30, tzinfo=UTC).timestamp()
    params = MarginBreachParams(min_history_s=3600)
    decisions, _ = run(0.01, 30 * 60, MarginTerms(price_usd=5.0), start=start, params=params)
    # The actual passes what the target allows (a warning), then the price (critical).
    passes_price = start + math.ceil(5.0 / (0.01 * OVERHEAD)) * MINUTE - MINUTE
    assert [(d.status, d.severity, d.ends_at) for d in decisions] == [
        ("firing", "warning", None),
        ("resolved", "warning", passes_price),
        ("firing", "critical", None),
        ("resolved", "critical", DEC_1),
        ("firing", "critical", None),
    ]
    assert decisions[-1].starts_at >= DEC_1


def test_a_customer_without_price_or_cap_is_not_judged():
    decisions, _ = run(1.0, 1440, MarginTerms(price_usd=0.0))
    assert decisions == []


# --- Properties --------------------------------------------------------------------------


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000), rate=st.floats(0.5, 200.0))
def test_the_band_narrows_with_history(seed, rate):
    series = traffic(9, seed, requests_per_min=rate)
    state = MarginBreachState()
    relative = []
    checkpoints = {int(h * 60) for h in (7, 12, 24, 48, 8 * 24)}  # Sat and Sun seen by day 8
    for minute, (t, usd) in enumerate(series):
        margin_breach.update(state, t, MINUTE, usd, MarginTerms(price_usd=1e9), PARAMS)
        if minute + 1 in checkpoints:
            rest, sd = projection(state, t + MINUTE, DEC_1, PARAMS)
            relative.append(sd / rest)
    assert relative == sorted(relative, reverse=True)
    assert relative[0] > 0.5  # hours in: most of the day unseen
    assert relative[-1] < 0.1  # days in


def random_buckets(seed):
    """Three days of minutes with bursts, quiet stretches and skipped buckets."""
    rng = np.random.default_rng(seed)
    minutes = np.sort(rng.choice(3 * 1440, size=int(rng.integers(200, 3 * 1440)), replace=False))
    usd = rng.gamma(0.5, rng.uniform(0.001, 0.1), len(minutes))
    usd[rng.random(len(minutes)) < 0.01] *= 50  # bursts
    start = datetime(2026, 11, 28, tzinfo=UTC).timestamp()  # a Saturday; period ends Dec 1
    return [(start + m * MINUTE, float(u)) for m, u in zip(minutes, usd, strict=True)]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_state_round_trips_through_json_and_stays_small(seed):
    terms = MarginTerms(price_usd=40.0)
    _, state = feed(random_buckets(seed), terms)
    data = json.dumps(state.to_dict())
    copy = MarginBreachState.from_dict(json.loads(data))
    assert copy == state
    assert copy.to_dict() == state.to_dict()
    assert len(data) < 2048
    end = state.last_t + MINUTE
    assert projection(copy, end, DEC_1 + 30 * DAY, PARAMS) == projection(
        state, end, DEC_1 + 30 * DAY, PARAMS
    )


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), cut=st.floats(0.0, 1.0))
def test_replaying_from_a_serialised_state_decides_the_same(seed, cut):
    series = random_buckets(seed)
    terms = MarginTerms(price_usd=float(np.random.default_rng(seed).uniform(5.0, 200.0)))
    params = MarginBreachParams(min_history_s=2 * HOUR)
    whole, _ = feed(series, terms, params)
    split = int(cut * len(series))
    first, state = feed(series[:split], terms, params)
    restored = MarginBreachState.from_dict(json.loads(json.dumps(state.to_dict())))
    rest, _ = feed(series[split:], terms, params, state=restored)
    assert first + rest == whole


def test_the_profile_learns_the_mean_hour_of_each_slot():
    series = traffic(14, seed=7)
    _, state = feed(series, MarginTerms(price_usd=1e9))
    usd = np.array([u for _, u in series]).reshape(14, 24, 60).sum(axis=2)
    weekdays = usd[[d for d in range(14) if (d % 7) < 5]]  # day 0 is a Monday
    recent = weekdays[-7:].mean(axis=0)
    assert np.asarray(state.profile) == pytest.approx(recent, rel=0.1)
    assert state.weekend_factor() == pytest.approx(1.0, abs=0.1)  # no weekend dip here


def test_a_weekend_dip_is_learned_as_the_weekend_factor():
    series = [
        (t, usd * (0.5 if margin_breach.is_weekend(int(t // DAY)) else 1.0))
        for t, usd in traffic(21, seed=8)
    ]
    _, state = feed(series, MarginTerms(price_usd=1e9))
    assert state.weekend_factor() == pytest.approx(0.5, abs=0.06)
