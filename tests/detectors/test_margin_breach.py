import json
from datetime import UTC, datetime

import pytest

from detectors import margin_breach
from detectors.margin_breach import (
    MarginBreachParams,
    MarginBreachState,
    MarginTerms,
    billing_period,
)

MINUTE = 60.0
NOV_2 = datetime(2026, 11, 2, tzinfo=UTC).timestamp()
PARAMS = MarginBreachParams()


def run(usd_per_min, minutes, terms, start=NOV_2, params=PARAMS, state=None):
    state = state or MarginBreachState()
    out = []
    for m in range(minutes):
        out += margin_breach.update(state, start + m * MINUTE, MINUTE, usd_per_min, terms, params)
    return out, state


def monthly_api_cost(usd_per_min):
    return usd_per_min * 60 * 24 * 30


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


def test_a_customer_with_a_healthy_margin_is_left_alone():
    price = monthly_api_cost(0.01) * 1.65 * 3  # margin ~0.67 against a 0.5 target
    decisions, _ = run(0.01, 3 * 1440, MarginTerms(price_usd=price))
    assert decisions == []


def test_a_projected_margin_below_target_warns():
    price = monthly_api_cost(0.01) * 1.65 * 1.5  # margin ~0.33 against a 0.5 target
    decisions, _ = run(0.01, 1440, MarginTerms(price_usd=price))
    assert [(d.status, d.severity) for d in decisions] == [("firing", "warning")]
    v = decisions[0].values
    assert v["projected_margin"] == pytest.approx(1 / 3, abs=0.05)
    # Fires once enough history exists to project (min_history_s) plus N buckets.
    assert decisions[0].starts_at == pytest.approx(NOV_2 + PARAMS.min_history_s - MINUTE)


def test_cost_above_what_the_customer_pays_is_critical():
    price = monthly_api_cost(0.01) * 1.65 * 0.5
    decisions, _ = run(0.01, 1440, MarginTerms(price_usd=price))
    assert decisions[0].severity == "critical"
    assert decisions[0].values["projected_cost_to_serve_usd"] > price


def test_the_customer_margin_target_overrides_the_plan():
    price = monthly_api_cost(0.01) * 1.65 * 3  # margin ~0.67
    strict = MarginTerms(price_usd=price, margin_target=0.8)
    assert run(0.01, 1440, strict)[0][0].severity == "warning"


def test_a_free_plan_is_judged_against_its_cost_cap():
    cap = 25.0
    assert run(0.0002, 1440, MarginTerms(0.0, cost_cap_usd=cap))[0] == []  # ~$14/month
    decisions, _ = run(0.002, 1440, MarginTerms(0.0, cost_cap_usd=cap))  # ~$140/month
    assert [(d.status, d.severity) for d in decisions] == [("firing", "warning")]


def test_an_open_breach_resolves_when_the_billing_period_ends():
    start = datetime(2026, 11, 30, tzinfo=UTC).timestamp()
    params = MarginBreachParams(min_history_s=3600)
    decisions, _ = run(0.01, 30 * 60, MarginTerms(price_usd=5.0), start=start, params=params)
    december = datetime(2026, 12, 1, tzinfo=UTC).timestamp()
    assert [(d.status, d.ends_at) for d in decisions] == [
        ("firing", None),
        ("resolved", december),
        ("firing", None),
    ]
    assert decisions[2].starts_at >= december


def test_a_recovered_burn_rate_resolves_the_breach():
    price = monthly_api_cost(0.01) * 1.65 * 1.5
    terms = MarginTerms(price_usd=price)
    decisions, state = run(0.01, 1440, terms)
    assert decisions[0].status == "firing"
    later, _ = run(0.001, 4 * 1440, terms, start=NOV_2 + 1440 * MINUTE, state=state)
    assert [d.status for d in later] == ["resolved"]


def test_state_round_trips_through_json():
    _, state = run(0.01, 500, MarginTerms(price_usd=10.0))
    copy = MarginBreachState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert copy == state
    assert copy.burn_rate(PARAMS.burn_tau_s, MINUTE) == pytest.approx(0.01 / 60)
