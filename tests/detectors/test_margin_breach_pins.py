"""margin_breach's figures pinned by hand: a steady $0.01 a minute from Monday 2026-11-02
is $0.60 an hour, $417.60 of API cost by December and $689.04 to serve (x 1.65).

With no prior uncertainty (``unseen_hour_cv``, ``unseen_weekend_cv`` and ``min_cv`` 0) a
steady customer's band has no width, so the projection is exact: the cost so far plus
$0.60 for every hour left. With ``min_history_s`` out of reach nothing is projected, and
the month-to-date actual alone decides.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from statistics import NormalDist

import pytest

from detectors import margin_breach
from detectors.decision import Decision
from detectors.margin_breach import (
    MarginBreachParams,
    MarginBreachState,
    MarginTerms,
    billing_period,
    is_weekend,
    projection,
)

MINUTE = 60.0
HOUR = 3600.0
DAY = 86_400.0
NOV_1 = datetime(2026, 11, 1, tzinfo=UTC).timestamp()
NOV_2 = datetime(2026, 11, 2, tzinfo=UTC).timestamp()  # a Monday
NOV_30 = datetime(2026, 11, 30, tzinfo=UTC).timestamp()  # a Monday
DEC_1 = datetime(2026, 12, 1, tzinfo=UTC).timestamp()
PER_MIN = 0.01
OVERHEAD = 1.65
MONTH_HOURS = 30 * 24  # November
SERVE = 29 * 1440 * PER_MIN * OVERHEAD  # $689.04 from November 2 to December 1
EXACT = MarginBreachParams(unseen_hour_cv=0.0, unseen_weekend_cv=0.0, min_cv=0.0)
ACTUAL_ONLY = MarginBreachParams(min_history_s=1e9)


def feed(usd: list[float], terms: MarginTerms, params: MarginBreachParams, start: float = NOV_2):
    """``usd`` per minute from ``start``: (minute of each decision, decision), the state."""
    state = MarginBreachState()
    out: list[tuple[int, Decision]] = []
    for m, cost in enumerate(usd):
        for d in margin_breach.update(state, start + m * MINUTE, MINUTE, cost, terms, params):
            out.append((m, d))
    return out, state


def minute(d: Decision, start: float = NOV_2) -> int:
    return round((d.starts_at - start) / MINUTE)


# Escalation ----------------------------------------------------------------------------------


def test_a_warning_escalates_after_five_critical_buckets_in_a_row():
    # Projected from 03:00 (min_history_s 3 h): $689.04, over the price by less than a
    # minute's cost to serve ($0.0165). A minute without spend leaves the month that much
    # short (a warning), a minute of double spend makes up for it (critical): the critical
    # buckets must come 5 in a row, and the critical alert starts with the first of them.
    terms = MarginTerms(price_usd=SERVE - 0.00825)
    params = replace(EXACT, min_history_s=3 * HOUR)
    at_three = [0.0, 0.01, 0.01, 0.01, 0.02, 0.0, 0.02] + [0.01] * 10
    decisions, _ = feed([PER_MIN] * 180 + at_three, terms, params)
    assert [(m - 180, d.status, d.severity, minute(d) - 180) for m, d in decisions] == [
        (3, "firing", "warning", -1),  # breaching from 02:59, when its hour ends at 03:00
        (10, "resolved", "warning", -1),
        (10, "firing", "critical", 6),
    ]
    assert decisions[1][1].ends_at == NOV_2 + 186 * MINUTE


def test_an_escalated_alert_resolves_at_period_end_from_where_it_started():
    # The actual alone: $5 a month passes its $2.50 allowance, then the price, on November
    # 30; the critical alert that the warning became ends with the month.
    decisions, _ = feed([PER_MIN] * 30 * 60, MarginTerms(price_usd=5.0), ACTUAL_ONLY, NOV_30)
    passes_price = round(5.0 / (PER_MIN * OVERHEAD))  # 303: 3.03 x 1.65 > 5
    resolved = [d for _, d in decisions if d.status == "resolved" and d.severity == "critical"]
    assert [(minute(d, NOV_30), d.ends_at) for d in resolved] == [(passes_price, DEC_1)]
    # A margin_breach alert still, with no figures: the month it judged is over.
    assert (resolved[0].alertname, resolved[0].values) == ("margin_breach", {})


# The figures of an alert -------------------------------------------------------------------


def test_a_projected_breach_carries_its_figures():
    # $1,000 a month: $500 allowed, $689.04 projected (a margin of 31 %): a warning from
    # 02:59 (projected from 03:00 on), decided at 03:03 with 03:04 its end.
    terms = MarginTerms(price_usd=1000.0)
    params = replace(EXACT, min_history_s=3 * HOUR)
    decisions, _ = feed([PER_MIN] * 200, terms, params)
    ((at, firing),) = decisions
    assert (at, firing.status, firing.severity, minute(firing)) == (183, "firing", "warning", 179)
    assert firing.alertname == "margin_breach"
    left = 29 * 1440 - 184  # minutes from 03:04 to December
    assert firing.values == pytest.approx(
        {
            "observed": SERVE,
            "projected_cost_to_serve_usd": SERVE,
            "projection_low_usd": SERVE,
            "projection_high_usd": SERVE,
            "projection_sd_usd": 0.0,
            "cost_to_date_usd": 184 * PER_MIN * OVERHEAD,
            "baseline": 1000.0,
            "monthly_price_usd": 1000.0,
            "threshold": 500.0,
            "margin_target": 0.5,
            "projected_margin": 1 - SERVE / 1000,
            # $0.60 an hour to serve for the rest of the month ...
            "burn_rate_usd_per_hour": 0.6 * OVERHEAD,
            # ... where $500 over the month's 720 hours is what it can afford
            "money_at_risk_usd_per_hour": 0.6 * OVERHEAD - 500 / MONTH_HOURS,
            "period_start": NOV_1,
            "period_end": DEC_1,
            "bucket_s": 60.0,
            "confidence": 1.0,
        },
        rel=1e-6,
    )
    assert left * PER_MIN * OVERHEAD == pytest.approx(SERVE - 184 * PER_MIN * OVERHEAD)


def test_an_alert_resolves_sure_of_nothing_when_spend_falls_back():
    # The same customer falls to a tenth of its spend after the alert: as its hours are
    # learned the projection falls under the allowance less the 5 % gap ($450) and the
    # warning resolves, 0 % sure of month-end over the allowance (the band has no width).
    terms = MarginTerms(price_usd=1000.0)
    params = replace(EXACT, min_history_s=3 * HOUR)
    decisions, _ = feed([PER_MIN] * 184 + [PER_MIN / 10] * 12 * 60, terms, params)
    assert [d.status for _, d in decisions] == ["firing", "resolved"]
    resolved = decisions[1][1]
    assert resolved.values["projected_cost_to_serve_usd"] < 450.0
    assert resolved.values["confidence"] == 0.0


def test_the_burn_rate_is_the_projection_per_hour_left_to_the_last_minute():
    # Projected only from 30 minutes before December, over a price that the actual would
    # pass only in the last quarter of an hour: fires 26 minutes before the end.
    params = replace(EXACT, min_history_s=(29 * 1440 - 30) * MINUTE)
    terms = MarginTerms(price_usd=2 * 688.8)
    decisions, _ = feed([PER_MIN] * 29 * 1440, terms, params)
    ((at, firing),) = decisions
    assert 29 * 1440 - at == 27  # the bucket from 23:33 to 23:34
    assert firing.values["burn_rate_usd_per_hour"] == pytest.approx(0.6 * OVERHEAD, rel=1e-6)
    assert firing.values["money_at_risk_usd_per_hour"] == pytest.approx(
        0.6 * OVERHEAD - 688.8 / MONTH_HOURS, rel=1e-6
    )


def test_an_alert_in_the_last_minute_of_the_month_has_nothing_left_to_burn():
    # The actual alone passes $23.68 (a price of $47.36) with its 1,436th minute of
    # November 30: the 5th breaching minute is the month's last.
    decisions, _ = feed([PER_MIN] * 1440, MarginTerms(price_usd=47.36), ACTUAL_ONLY, NOV_30)
    ((at, firing),) = decisions
    assert (at, firing.severity) == (1439, "warning")
    assert firing.values["burn_rate_usd_per_hour"] == 0.0
    assert firing.values["money_at_risk_usd_per_hour"] == 0.0
    assert firing.values["confidence"] == 1.0  # the actual is over the allowance


@pytest.mark.parametrize(
    ("terms", "severity", "threshold", "margin"),
    [
        # $1 a month: $0.50 allowed; 35 minutes cost $0.5775 to serve, a margin of 42 %.
        pytest.param(MarginTerms(price_usd=1.0), "warning", 0.5, 1 - 0.5775, id="a $1 plan"),
        # A free plan capped at $0.50: over the cap is critical; its margin is -100 %.
        pytest.param(MarginTerms(0.0, cost_cap_usd=0.5), "critical", 0.5, -1.0, id="free, $0.50"),
        # Capped at nothing: the first 5 minutes fire.
        pytest.param(MarginTerms(0.0, cost_cap_usd=0.0), "critical", 0.0, -1.0, id="free, $0"),
    ],
)
def test_the_actual_alone_fires_against_the_plans_limit(terms, severity, threshold, margin):
    decisions, _ = feed([PER_MIN] * 60, terms, ACTUAL_ONLY)
    at, firing = decisions[0]
    assert (firing.status, firing.severity) == ("firing", severity)
    spent = (at + 1) * PER_MIN * OVERHEAD
    assert spent > threshold >= spent - 5 * PER_MIN * OVERHEAD  # the 5th minute over it
    assert firing.values["threshold"] == threshold
    assert firing.values["cost_to_date_usd"] == pytest.approx(spent)
    assert firing.values["projection_low_usd"] == pytest.approx(spent)
    assert firing.values["projected_margin"] == pytest.approx(margin)
    assert firing.values["confidence"] == 1.0


# The projection ----------------------------------------------------------------------------


def test_the_projection_is_the_rest_of_the_hour_and_every_hour_left_at_the_profile():
    _, state = feed([PER_MIN] * 150, MarginTerms(price_usd=1e9), EXACT)  # to 02:30
    rest, sd = projection(state, NOV_2 + 150 * MINUTE, DEC_1, EXACT)
    assert (rest, sd) == pytest.approx((0.6 * (29 * 24 - 2.5), 0.0), rel=1e-6)
    _, state = feed([PER_MIN] * 180, MarginTerms(price_usd=1e9), EXACT)  # to 03:00
    rest, sd = projection(state, NOV_2 + 180 * MINUTE, DEC_1, EXACT)
    assert (rest, sd) == pytest.approx((0.6 * (29 * 24 - 3), 0.0), rel=1e-6)
    # To a period end 10 hours away, the same hours.
    assert projection(state, NOV_2 + 180 * MINUTE, NOV_2 + 13 * HOUR, EXACT) == pytest.approx(
        (0.6 * 10, 0.0), rel=1e-6
    )
    # To an end that is not a midnight, more than a day away: its last, partial day counts.
    assert projection(state, NOV_2 + 180 * MINUTE, NOV_2 + 36 * HOUR, EXACT) == pytest.approx(
        (0.6 * 33, 0.0), rel=1e-6
    )
    assert projection(state, NOV_2 + 180 * MINUTE, NOV_2 + 73 * HOUR, EXACT) == pytest.approx(
        (0.6 * 70, 0.0), rel=1e-6
    )


def test_a_partial_last_day_at_a_weekend_is_projected_at_the_weekend_factor():
    # As the test below: three weeks at $0.60 on weekdays and $0.30 at weekends, to Friday
    # 2026-11-20 12:00; to Saturday 06:00 is 12 weekday hours and 6 weekend ones.
    usd = [
        PER_MIN * (0.5 if datetime.fromtimestamp(NOV_2 + m * MINUTE, UTC).weekday() >= 5 else 1.0)
        for m in range(18 * 1440 + 12 * 60)
    ]
    _, state = feed(usd, MarginTerms(price_usd=1e9), EXACT)
    now = NOV_2 + 18 * DAY + 12 * HOUR
    rest, _ = projection(state, now, now + 18 * HOUR, EXACT)
    assert rest == pytest.approx(0.6 * 12 + 0.3 * 6, rel=1e-3)


def test_a_weekend_day_is_projected_at_the_weekend_factor_today_included():
    # Three weeks of $0.60 an hour on weekdays and $0.30 at weekends (a factor of 0.5), to
    # Saturday 2026-11-21 12:00: the rest of Saturday and Sunday at $0.30 an hour, then
    # Monday 23 to Sunday 29 and Monday 30 as usual.
    usd = [
        PER_MIN * (0.5 if datetime.fromtimestamp(NOV_2 + m * MINUTE, UTC).weekday() >= 5 else 1.0)
        for m in range(19 * 1440 + 12 * 60)
    ]
    _, state = feed(usd, MarginTerms(price_usd=1e9), EXACT)
    now = NOV_2 + len(usd) * MINUTE
    assert state.weekend_factor() == pytest.approx(0.5)
    weekend_hours, weekday_hours = 12 + 24 + 2 * 24, 6 * 24
    rest, _ = projection(state, now, DEC_1, EXACT)
    assert rest == pytest.approx(0.3 * weekend_hours + 0.6 * weekday_hours, rel=1e-5)


def test_new_settings_apply_to_the_projection_at_once():
    # A reload within the hour: the band is computed again for the new settings.
    wide = MarginBreachParams()
    _, state = feed([PER_MIN] * 150, MarginTerms(price_usd=1e9), wide)
    now = NOV_2 + 150 * MINUTE
    _, wide_sd = projection(state, now, DEC_1, wide)
    assert wide_sd > 0
    assert projection(state, now, DEC_1, EXACT)[1] == 0.0
    assert projection(state, now, DEC_1, wide)[1] == wide_sd


@pytest.mark.parametrize("per_min", [PER_MIN, PER_MIN / 100], ids=["$0.60/h", "$0.006/h"])
def test_the_band_is_the_normal_quantiles_and_confidence_its_tail(per_min):
    # Steady spend, priced just under the low end of the band after a day and a half
    # (default settings): it fires once the band has narrowed enough, on day 2. The
    # smaller customer's band is cents wide.
    _, state = feed([per_min] * 36 * 60, MarginTerms(price_usd=1e9), MarginBreachParams())
    now = NOV_2 + 36 * HOUR
    rest, sd = projection(state, now, DEC_1, MarginBreachParams())
    spent = 36 * 60 * per_min
    z = NormalDist().inv_cdf(0.95)
    low = (spent + rest - z * sd) * OVERHEAD
    assert sd > 0 and low > 0
    terms = MarginTerms(price_usd=2 * low * 0.999)  # the allowance 0.1 % under the low end
    decisions, _ = feed([per_min] * 37 * 60, terms, MarginBreachParams())
    firing = decisions[0][1]
    v = firing.values
    centre, sd_usd = v["projected_cost_to_serve_usd"], v["projection_sd_usd"]
    assert sd_usd > 0
    assert v["projection_high_usd"] == pytest.approx(centre + z * sd_usd, rel=1e-9)
    assert v["projection_low_usd"] == pytest.approx(centre - z * sd_usd, rel=1e-9)
    sure = 1 - NormalDist(centre, sd_usd).cdf(v["threshold"])
    assert 0.95 <= v["confidence"] < 1.0
    assert v["confidence"] == pytest.approx(sure, rel=1e-9)
    assert billing_period(firing.starts_at, 1) == (NOV_1, DEC_1)


# At the limit is not over it ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("terms", "expected"),
    [
        # $0.25 a minute at an overhead of 1 is $0.50 a minute to serve: exactly $5 (the $10
        # plan's allowance) after 10 minutes, over it from the 11th, which the 15th confirms;
        # exactly the price after 20, critical from the 21st, confirmed by the 25th.
        pytest.param(
            MarginTerms(price_usd=10.0, overhead_ratio=1.0),
            [
                (14, "firing", "warning", 10),
                (24, "resolved", "warning", 10),
                (24, "firing", "critical", 20),
            ],
            id="a $10 plan",
        ),
        # A free plan capped at $5: critical once the actual is over the cap.
        pytest.param(
            MarginTerms(price_usd=0.0, overhead_ratio=1.0, cost_cap_usd=5.0),
            [(14, "firing", "critical", 10)],
            id="free, capped at $5",
        ),
    ],
)
def test_an_actual_exactly_at_the_allowance_or_price_is_not_over_it(terms, expected):
    decisions, _ = feed([0.25] * 30, terms, ACTUAL_ONLY)
    assert [(m, d.status, d.severity, minute(d)) for m, d in decisions] == expected


def test_is_weekend_is_saturday_and_sunday_utc():
    for day in range(int(NOV_2 // DAY) - 7, int(NOV_2 // DAY) + 14):
        weekday = datetime.fromtimestamp(day * DAY, UTC).weekday()
        assert is_weekend(day) is (weekday >= 5)


# Buckets that do not come ------------------------------------------------------------------


def test_a_bucket_at_or_before_the_last_one_is_ignored():
    _, state = feed([PER_MIN] * 200, MarginTerms(price_usd=1000.0), EXACT)
    before = state.to_dict()
    last = NOV_2 + 199 * MINUTE
    for t in (last, last - MINUTE):
        assert margin_breach.update(state, t, MINUTE, 5.0, MarginTerms(price_usd=1.0), EXACT) == []
    assert state.to_dict() == before


def test_an_open_alert_is_judged_on_the_buckets_skipped_before_the_next():
    # Over the allowance by half a minute's cost to serve, and no resolve gap: every minute
    # without spend leaves the month under it. After the alert, 29 minutes without a bucket
    # (03:11 to 03:39): each is judged empty and calm, and the bucket at 03:40 is the 30th
    # calm one; the alert ends where the calm began.
    params = replace(EXACT, min_history_s=3 * HOUR, resolve_gap=0.0)
    terms = MarginTerms(price_usd=2 * (SERVE - 0.00825))
    state = MarginBreachState()
    out = []
    for m in [*range(191), 220]:
        out += margin_breach.update(state, NOV_2 + m * MINUTE, MINUTE, PER_MIN, terms, params)
    assert [(d.status, minute(d)) for d in out] == [("firing", 179), ("resolved", 179)]
    assert out[1].ends_at == NOV_2 + 191 * MINUTE


def test_the_skipped_buckets_of_a_customer_without_an_alert_are_not_judged():
    # Spend stops at 02:50 and comes back at 03:10; projected from 03:00 on, the month is
    # over the allowance, but nothing is judged before 03:10: the breach starts there.
    params = replace(EXACT, min_history_s=3 * HOUR)
    terms = MarginTerms(price_usd=1000.0)
    state = MarginBreachState()
    out = []
    for m in [*range(171), *range(190, 200)]:
        out += margin_breach.update(state, NOV_2 + m * MINUTE, MINUTE, PER_MIN, terms, params)
    assert [(d.status, minute(d)) for d in out] == [("firing", 190)]
