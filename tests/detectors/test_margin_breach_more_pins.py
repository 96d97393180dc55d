"""margin_breach's learning and outlook pinned by hand, on hourly (or half-hourly) buckets.

Costs are multiples of powers of two, so the single-precision profile holds them exactly
and most figures below are exact: what an hour teaches the profile, the level, the
weekend factor and the spread, step by step; the projection written out hour by hour as
the module docstring states it, against the detector's per-slot sums; and alerts whose
figures and resolve boundaries come out exact.
"""

from __future__ import annotations

import math
from dataclasses import replace
from statistics import NormalDist

import pytest

from detectors import margin_breach
from detectors.margin_breach import (
    MarginBreachParams,
    MarginBreachState,
    MarginTerms,
    is_weekend,
    projection,
)
from tests.detectors.test_margin_breach_pins import (
    DAY,
    DEC_1,
    EXACT,
    HOUR,
    MINUTE,
    NOV_2,
    NOV_30,
    PER_MIN,
    SERVE,
    feed,
)

QUIET = MarginTerms(price_usd=1e9)  # never fires: learning only
# Clipped at 2 spreads; an unseen hour of the day counts a spread of 0.5, a weekend not
# seen yet 0.25, and a learned spread at least 0.0625 (powers of two: exact figures).
LEARN = MarginBreachParams(
    clip_sigmas=2.0, unseen_hour_cv=0.5, unseen_weekend_cv=0.25, min_cv=0.0625
)
SAT_7 = NOV_2 + 5 * DAY


def feed_hours(usd, params=LEARN, start=NOV_2, width=HOUR):
    """One bucket of ``width`` seconds per entry of ``usd`` from ``start``: the state."""
    state = MarginBreachState()
    for i, cost in enumerate(usd):
        assert margin_breach.update(state, start + i * width, width, cost, QUIET, params) == []
    return state


def slots(values):
    return [float(v) for v in values]


# Learning ------------------------------------------------------------------------------------


def test_the_first_hour_is_learned_whole_and_a_new_slot_is_clipped_at_its_prior():
    # 00:00 $2 defines its slot (nothing to compare it with). 01:00's slot is new: it is
    # expected at the mean of those seen ($2) with a spread of 0.5 of it, so $20 is learned
    # as 2 + 2 x 0.5 x 2 = $4. A quiet hour is believed: 02:00's $1 is learned as it is.
    state = feed_hours([2.0, 20.0, 1.0, 0.0])
    assert slots(state.profile[:4]) == [2.0, 4.0, 1.0, 0.0]
    assert state.seen.tolist()[:4] == [1, 1, 1, 0]
    assert (state.hours, state.level_hours, state.spread_hours) == (3, 0, 0)
    assert (state.level_usd, state.level_base, state.spread_sq) == (0.0, 0.0, 0.0)
    assert state.cost_usd == 23.0  # the month to date holds the burst whole


def test_the_second_day_compares_each_hour_with_its_slot_and_the_level():
    # Monday at $2 an hour defines every slot. Tuesday 00:00 costs $3: expected $2 (level
    # 1), a residual of half an average hour. It starts the level (3 against 2) and moves
    # its slot half way (its second day): $2.50.
    monday = feed_hours([2.0] * 24 + [3.0, 0.0])
    assert slots(monday.profile[:2]) == [2.5, 2.0]
    assert monday.seen.tolist()[:2] == [2, 1]
    assert (monday.level_usd, monday.level_base, monday.level()) == (3.0, 2.0, 1.5)
    assert (monday.spread_sq, monday.spread_hours) == (0.25, 1)
    assert (monday.hours, monday.level_hours) == (25, 1)
    # Tuesday 01:00 costs $10: expected 1.5 x $2 = $3, in average hours of 1.5 x 48.5/24 =
    # $3.03125, so it is learned as 3 + 2 x 0.5 x 3.03125 = $6.03125: a residual of 1. Each
    # running mean takes its second value at half weight.
    state = feed_hours([2.0] * 24 + [3.0, 10.0, 0.0])
    assert slots(state.profile[:3]) == [2.5, 2.0 + (6.03125 - 2.0) / 2, 2.0]
    assert state.level_usd == (3.0 + 6.03125) / 2
    assert state.level_base == 2.0
    assert state.spread_sq == (0.25 + 1.0) / 2
    assert (state.hours, state.level_hours, state.spread_hours) == (26, 2, 2)
    assert state.seen.tolist()[:3] == [2, 2, 1]


def test_a_burst_in_a_known_slot_is_clipped_at_the_learned_spread():
    # A steady $0.50 an hour: after ten of Tuesday's hours have matched their slots the
    # spread is its floor, 0.0625 of an average hour, so a $10 hour at 10:00 is learned as
    # 0.5 + 2 x 0.0625 x 0.5 = $0.5625; its slot moves half way to it.
    state = feed_hours([0.5] * 34 + [10.0, 0.5])
    assert state.spread(LEARN) == 0.0625
    assert state.profile[10] == 0.5 + (0.5625 - 0.5) / 2
    assert state.level_usd == pytest.approx((10 * 0.5 + 0.5625) / 11, rel=1e-12)
    assert state.level_base == 0.5
    assert state.spread_sq == pytest.approx((0.0625 / 0.5) ** 2 / 11, rel=1e-12)
    assert (state.hours, state.level_hours, state.spread_hours) == (35, 11, 11)
    assert state.cost_usd == 34 * 0.5 + 10.5


def test_weekend_hours_learn_the_weekend_factor_and_not_the_profile():
    # Monday to Friday at $2 an hour, then Saturday at $1: the first Saturday hour sets the
    # factor to 1/2. At 01:00 a $4 hour is expected at $1 in average hours of $1, and a
    # weekend not yet seen counts a spread of 0.25 (over the learned 0.0625): it is learned
    # as 1 + 2 x 0.25 x 1 = $1.50.
    weekdays = [2.0] * 5 * 24
    state = feed_hours([*weekdays, 1.0, 4.0, 1.0])
    assert (state.weekend_usd, state.weekend_base) == ((1.0 + 1.5) / 2, 2.0)
    assert state.weekend_factor() == 0.625
    assert (state.hours, state.weekend_hours, state.level_hours) == (122, 2, 96)
    assert state.spread_hours == 96  # a weekend not seen yet says nothing of the spread
    assert slots(state.profile) == [2.0] * 24
    assert state.seen.tolist() == [5] * 24
    # The rest of the weekend at $1: Sunday's hours are known (a weekend has been seen) and
    # are compared with the profile; the factor is the mean of the 48 hours learned.
    state = feed_hours([*weekdays, 1.0, 4.0] + [1.0] * 46 + [2.0])
    assert (state.hours, state.weekend_hours, state.level_hours) == (168, 48, 96)
    assert state.spread_hours == 96 + 24
    assert state.weekend_usd == pytest.approx((47 + 1.5) / 48, rel=1e-12)
    assert state.weekend_base == 2.0
    assert slots(state.profile) == [2.0] * 24
    assert (state.level_usd, state.level_base) == (2.0, 2.0)


def test_a_customer_who_starts_at_the_weekend_learns_nothing_before_monday():
    state = feed_hours([1.0] * 49, start=SAT_7)  # to Monday 00:00, which is being summed
    assert (state.hours, state.weekend_hours) == (0, 0)
    assert state.seen.tolist() == [0] * 24
    assert state.cost_usd == 49.0


# Hours: buckets across them, and silences ----------------------------------------------------


def test_a_bucket_across_an_hour_is_shared_pro_rata_and_the_hour_data_began_in_is_not_learned():
    # Hour-wide buckets from 00:30, $4 each: $2 falls in each hour they cover. 00:00 is
    # not learned (half of it had no data); 01:00 is, whole ($4); 02:00 holds $2 so far.
    state = feed_hours([4.0, 4.0], start=NOV_2 + HOUR / 2)
    assert (state.hours, state.hour, state.hour_usd) == (1, int(NOV_2 // HOUR) + 2, 2.0)
    assert state.seen.tolist()[:3] == [0, 1, 0]
    assert state.profile[1] == 4.0
    assert state.cost_usd == 8.0


def test_a_bucket_of_several_hours_closes_each_hour_it_covers():
    # Two-hour buckets of $8 from midnight: $4 an hour. After three of them, 00:00 to 04:00
    # are learned, and 05:00 holds the last bucket's second half.
    state = feed_hours([8.0] * 3, width=2 * HOUR)
    assert (state.hours, state.hour_usd) == (5, 4.0)
    assert slots(state.profile[:6]) == [4.0] * 5 + [0.0]
    assert state.seen.tolist()[:6] == [1] * 5 + [0]


def test_the_hours_of_a_silence_are_learned_as_empty():
    # $2 an hour from 00:00 to 09:00, then nothing until 13:00: 10:00 to 12:00 are learned
    # as $0 when the customer spends again; 13:00 is being summed.
    state = feed_hours([2.0] * 10)
    margin_breach.update(state, NOV_2 + 13 * HOUR, HOUR, 2.0, QUIET, LEARN)
    assert slots(state.profile[:14]) == [2.0] * 10 + [0.0] * 4
    assert state.seen.tolist()[:14] == [1] * 13 + [0]
    assert (state.hours, state.hour_usd) == (13, 2.0)


def test_a_silence_longer_than_a_week_teaches_only_its_last_week():
    # $2 an hour on Monday 00:00 to 09:00, then nothing until Monday two weeks on: the hours
    # learned are those ten and the last 7 x 24 empty ones (every slot once more since).
    state = feed_hours([2.0] * 10)
    margin_breach.update(state, NOV_2 + 14 * DAY, HOUR, 2.0, QUIET, LEARN)
    assert state.hours == 10 + 7 * 24
    assert state.seen.tolist() == [6] * 10 + [5] * 14  # Monday to Friday; weekends learn
    assert state.weekend_hours == 48


# The projection, hour by hour ----------------------------------------------------------------

HALF_HOUR = HOUR / 2


def shaped(hour: int) -> float:
    """USD in clock ``hour`` (hours since the epoch): a daily shape, alternate days 5/3 of
    each other (a spread to learn) and weekends at half."""
    day, slot = divmod(hour, 24)
    usd = (1.0 + (slot % 6) / 4) * (1.25 if day % 2 else 0.75)
    return usd / 2 if is_weekend(day) else usd


def shaped_until(now: float, params: MarginBreachParams, scale: float = 1.0):
    """The state after half-hour buckets of ``shaped`` spend from Monday 2026-11-02 to
    ``now``."""
    buckets = int((now - NOV_2) // HALF_HOUR)
    usd = [scale * shaped(int((NOV_2 + i * HALF_HOUR) // HOUR)) / 2 for i in range(buckets)]
    return feed_hours(usd, params, width=HALF_HOUR)


def hour_by_hour(state, now, period_end, params):
    """(expected, sd) of the cost to come, written out as the module docstring states it:
    every hour left at level x its slot (the mean of those seen for a new one) x the
    weekend factor at weekends, the rest of this hour pro rata; the band's parts summed
    over the hours."""
    seen = [usd for usd, n in zip(state.profile, state.seen, strict=True) if n]
    mean = sum(seen) / len(seen) if seen else 0.0
    level, week = state.level(), state.weekend_factor()

    def usd_of(hour):
        slot = hour % 24
        return state.profile[slot] if state.seen[slot] else mean

    def weight(hour):  # an hour at the weekend counts as the weekend factor
        return week if is_weekend(hour // 24) else 1.0

    hours_of_slot = [0.0] * 24
    unseen = weekend = 0.0
    for hour in range(state.hour + 1, int(period_end // HOUR)):
        hours_of_slot[hour % 24] += weight(hour)
        if not state.seen[hour % 24]:
            unseen += weight(hour) * mean
        if is_weekend(hour // 24):
            weekend += weight(hour) * usd_of(hour)
    units = sum(n * usd_of(slot) for slot, n in enumerate(hours_of_slot))
    relative = 0.0
    if units > 0:
        # An EW mean with weight a is worth (2 - a) / a observations.
        a_level = 1 - math.exp(-HOUR / params.burn_tau_s)
        a_profile = 1 - math.exp(-DAY / params.profile_tau_s)
        history = min(max(state.hours, 1), (2 - a_level) / a_level)
        c = state.spread(params)
        slot_error = sum(
            (c * mean * n) ** 2 / min(state.seen[slot], (2 - a_profile) / a_profile)
            for slot, n in enumerate(hours_of_slot)
            if state.seen[slot]
        )
        fade = max(0.0, 1 - state.weekend_hours / 24)
        relative = math.sqrt(
            c * c / history
            + slot_error / units**2
            + (unseen / units * params.unseen_hour_cv) ** 2
            + (weekend / units * params.unseen_weekend_cv * fade) ** 2
        )
    this_hour = max(0.0, (state.hour + 1) * HOUR - now) / HOUR
    rest = this_hour * level * usd_of(state.hour) * weight(state.hour) + level * units
    return rest, rest * relative


HALF_CV = MarginBreachParams(unseen_hour_cv=0.5)


@pytest.mark.parametrize(
    ("now", "period_end", "params"),
    [
        # The first hour closed: little history, most of the day unseen.
        pytest.param(NOV_2 + 1.5 * HOUR, DEC_1, MarginBreachParams(), id="Mon 01:30"),
        pytest.param(NOV_2 + 14.5 * HOUR, DEC_1, HALF_CV, id="Mon 14:30"),
        # At the end of an hour: none of it left.
        pytest.param(NOV_2 + 15 * HOUR, DEC_1, HALF_CV, id="Mon 15:00"),
        # To a period end later the same day: only today's hours before it.
        pytest.param(NOV_2 + 14.5 * HOUR, NOV_2 + 20 * HOUR, HALF_CV, id="Mon 14:30 to 20:00"),
        pytest.param(NOV_2 + 3.5 * DAY, DEC_1, HALF_CV, id="Thu 12:00"),
        # The first Saturday: today at the weekend factor, 12 weekend hours seen.
        pytest.param(SAT_7 + 12.5 * HOUR, DEC_1, MarginBreachParams(), id="Sat 12:30"),
        pytest.param(SAT_7 + 12.5 * HOUR, DEC_1, HALF_CV, id="Sat 12:30, cv 0.5"),
        pytest.param(SAT_7 + DAY + 20.5 * HOUR, DEC_1, MarginBreachParams(), id="Sun 20:30"),
        # The last day: counts and history past what their weights are worth.
        pytest.param(NOV_30 + 10.5 * HOUR, DEC_1, MarginBreachParams(), id="Nov 30 10:30"),
        # The last hour: nothing after it, so no band.
        pytest.param(NOV_30 + 23.5 * HOUR, DEC_1, MarginBreachParams(), id="Nov 30 23:30"),
    ],
)
def test_the_projection_is_every_hour_left_at_its_slot_with_the_band_of_the_docstring(
    now, period_end, params
):
    state = shaped_until(now, params)
    expected = hour_by_hour(state, now, period_end, params)
    assert projection(state, now, period_end, params) == pytest.approx(expected, rel=1e-9)
    assert expected[0] > 0


def test_the_band_is_the_same_share_of_the_projection_for_a_customer_4096_times_smaller():
    # Powers of two scale every figure exactly: a customer of a few cents a month has the
    # same relative band as one of hundreds of dollars.
    now = NOV_2 + 14.5 * HOUR
    rest, sd = projection(shaped_until(now, HALF_CV), now, DEC_1, HALF_CV)
    small = projection(shaped_until(now, HALF_CV, scale=2.0**-12), now, DEC_1, HALF_CV)
    assert sd > 0
    assert small == (rest * 2.0**-12, sd * 2.0**-12)
    assert small[0] < 1.0


def test_the_month_to_date_starts_again_on_the_billing_day_with_its_first_bucket():
    state = feed_hours([1.0] * 4, start=NOV_30 + 22 * HOUR)  # 22:00 to 01:00 on December 1
    assert state.cost_usd == 2.0


def test_an_alert_decided_at_the_end_of_an_hour_projects_only_the_hours_after_it():
    # $0.50 an hour in hour-wide buckets, projected from 03:00 with no band: $0.50 x 696
    # hours x 1.65 = $574.20 to serve, over the $500 a $1,000 plan allows from the bucket
    # of 02:00; the fifth (06:00) fires. Its end is 07:00: nothing of its hour is left to
    # project, so the figures are exact.
    params = MarginBreachParams(
        unseen_hour_cv=0.0, unseen_weekend_cv=0.0, min_cv=0.0, min_history_s=3 * HOUR
    )
    terms = MarginTerms(price_usd=1000.0)
    state = MarginBreachState()
    out = []
    for h in range(8):
        out += margin_breach.update(state, NOV_2 + h * HOUR, HOUR, 0.5, terms, params)
    (firing,) = out
    assert (firing.status, firing.severity) == ("firing", "warning")
    assert firing.starts_at == NOV_2 + 2 * HOUR
    v = firing.values
    assert v["cost_to_date_usd"] == pytest.approx(7 * 0.5 * 1.65, rel=1e-12)
    for name in ("projected_cost_to_serve_usd", "projection_low_usd", "projection_high_usd"):
        assert v[name] == pytest.approx(696 * 0.5 * 1.65, rel=1e-12)
    assert v["projection_sd_usd"] == 0.0
    assert v["burn_rate_usd_per_hour"] == pytest.approx(0.5 * 1.65, rel=1e-12)


def halved_at_the_weekend(terms: MarginTerms, resolve_gap: float):
    """A week of hour-wide buckets, $0.50 an hour on weekdays and $0.25 at the weekend,
    with no overhead and no band, projected from 03:00: (hour decided, decision) pairs.

    Month-end is $348 ($0.50 x 696 hours) until the first Saturday hour teaches the
    weekend factor (1/2); from Saturday 01:00 it is $300 (the 192 weekend hours left at
    half) and stays there, the spend being what was projected."""
    params = MarginBreachParams(
        unseen_hour_cv=0.0,
        unseen_weekend_cv=0.0,
        min_cv=0.0,
        min_history_s=3 * HOUR,
        resolve_gap=resolve_gap,
    )
    state = MarginBreachState()
    out = []
    for h in range(7 * 24):
        t = NOV_2 + h * HOUR
        usd = 0.25 if is_weekend(int(t // DAY)) else 0.5
        out += [(h, d) for d in margin_breach.update(state, t, HOUR, usd, terms, params)]
    return out


SAT_01 = 5 * 24 + 1  # hours from Monday 00:00
PLAN_640 = MarginTerms(640.0, overhead_ratio=0.0)
FREE_320 = MarginTerms(0.0, overhead_ratio=0.0, cost_cap_usd=320.0)


@pytest.mark.parametrize(
    ("terms", "resolve_gap", "resolved"),
    [
        # A $640 plan allows $320. At $300 the margin is 0.53125: exactly the target (0.5)
        # plus a gap of 0.03125 is not under it, so the warning resolves after 30 calm
        # buckets; with a gap of 0.0625 it stays open.
        pytest.param(PLAN_640, 0.03125, True, id="$640, at"),
        pytest.param(PLAN_640, 0.0625, False, id="$640, under"),
        # A free plan capped at $320: $300 is exactly the cap less 6.25 %, so it resolves;
        # less 12.5 % ($280) it does not.
        pytest.param(FREE_320, 0.0625, True, id="free, at"),
        pytest.param(FREE_320, 0.125, False, id="free, under"),
    ],
)
def test_an_alert_resolves_once_the_projection_is_back_at_the_limit_less_the_gap(
    terms, resolve_gap, resolved
):
    decisions = halved_at_the_weekend(terms, resolve_gap)
    assert [(h, d.status, d.severity, d.starts_at) for h, d in decisions[:1]] == [
        (6, "firing", "warning", NOV_2 + 2 * HOUR)  # from 02:00, the fifth bucket over
    ]
    assert decisions[0][1].values["projected_cost_to_serve_usd"] == 348.0
    if not resolved:
        assert len(decisions) == 1
        return
    ((h, d),) = decisions[1:]
    assert (h, d.status, d.ends_at) == (SAT_01 + 29, "resolved", NOV_2 + SAT_01 * HOUR)
    assert d.values["projected_cost_to_serve_usd"] == 300.0
    assert d.values["projected_margin"] == (0.53125 if terms.price_usd else -1.0)
    assert d.values["confidence"] == 0.0


# Skipped buckets and escalation --------------------------------------------------------------


def test_skipped_buckets_of_an_open_alert_decide_as_empty_buckets_would():
    # The pins' alert over its allowance by half a minute's cost to serve, with no resolve
    # gap: every minute without spend is calm. After 03:10 the next bucket is 03:45: the
    # 34 minutes between are judged as empty buckets, and the alert resolves within them
    # (the 30th calm minute, 03:40), exactly as if they had come with $0.
    params = replace(EXACT, min_history_s=3 * HOUR, resolve_gap=0.0)
    terms = MarginTerms(price_usd=2 * (SERVE - 0.00825))
    skipped, explicit = MarginBreachState(), MarginBreachState()
    out_skipped, out_explicit = [], []
    for m in range(226):
        t = NOV_2 + m * MINUTE
        usd = PER_MIN if m < 191 else 0.0
        if m < 191 or m == 225:
            out_skipped += margin_breach.update(skipped, t, MINUTE, usd, terms, params)
        out_explicit += margin_breach.update(explicit, t, MINUTE, usd, terms, params)
    assert [(d.status, d.ends_at) for d in out_skipped] == [
        ("firing", None),
        ("resolved", NOV_2 + 191 * MINUTE),
    ]
    assert out_skipped == out_explicit
    assert skipped.to_dict() == explicit.to_dict()


def spike_then_silence(spike_hour: int):
    """Monday at $0.50 an hour in hour-wide buckets (no overhead, no band, projected from
    03:00: month-end $348) with one $64.50 hour, then nothing from Tuesday 00:00. A $400
    plan allowing $300 warns from 02:00; $412 is over the price (critical) from the spike
    on. Once Tuesday's first hour is learned ($0 against $0.50) the level is 0 and
    month-end is the $76 spent: calm at once (one calm bucket resolves).

    (hour decided, status, severity, start, end) of each decision, and the critical
    streak after each hour."""
    params = replace(EXACT, min_history_s=3 * HOUR, calm_buckets=1)
    terms = MarginTerms(400.0, overhead_ratio=0.0, margin_target=0.25)
    state = MarginBreachState()
    out, streaks = [], []
    for h in range(27):
        usd = 64.5 if h == spike_hour else (0.5 if h < 24 else 0.0)
        decisions = margin_breach.update(state, NOV_2 + h * HOUR, HOUR, usd, terms, params)
        out += [(h, d.status, d.severity, d.starts_at, d.ends_at) for d in decisions]
        streaks.append(state.critical_streak)
    return out, streaks


def test_a_warning_resolves_on_the_calm_bucket_right_after_a_critical_one():
    # 23:00 and Tuesday 00:00 are critical (2 of the 5 that escalate); 01:00 is calm.
    decisions, streaks = spike_then_silence(23)
    assert decisions == [
        (6, "firing", "warning", NOV_2 + 2 * HOUR, None),
        (25, "resolved", "warning", NOV_2 + 2 * HOUR, NOV_2 + 25 * HOUR),
    ]
    assert streaks[22:] == [0, 1, 2, 0, 0]


def test_an_escalation_ends_the_critical_streak():
    # 19:00 to 23:00 are the 5 critical buckets: the warning becomes critical at 23:00,
    # from 19:00, and nothing is left of the streak.
    decisions, streaks = spike_then_silence(19)
    assert decisions == [
        (6, "firing", "warning", NOV_2 + 2 * HOUR, None),
        (23, "resolved", "warning", NOV_2 + 2 * HOUR, NOV_2 + 19 * HOUR),
        (23, "firing", "critical", NOV_2 + 19 * HOUR, None),
        (25, "resolved", "critical", NOV_2 + 19 * HOUR, NOV_2 + 25 * HOUR),
    ]
    assert streaks[18:] == [0, 1, 2, 3, 4, 0, 0, 0, 0]


def test_a_free_plans_warning_turns_critical_once_the_actual_is_over_the_cap_not_at_it():
    # $0.50 an hour in hour-wide buckets against a $4 cap: projected over it from 02:00 (a
    # warning); the actual is $4 exactly at 07:00 and over it from 08:00, the first of the
    # 5 critical buckets that escalate at 12:00.
    params = replace(EXACT, min_history_s=3 * HOUR)
    terms = MarginTerms(0.0, overhead_ratio=0.0, cost_cap_usd=4.0)
    state = MarginBreachState()
    out = []
    for h in range(16):
        decisions = margin_breach.update(state, NOV_2 + h * HOUR, HOUR, 0.5, terms, params)
        out += [(h, d.status, d.severity, d.starts_at, d.ends_at) for d in decisions]
    assert out == [
        (6, "firing", "warning", NOV_2 + 2 * HOUR, None),
        (12, "resolved", "warning", NOV_2 + 2 * HOUR, NOV_2 + 8 * HOUR),
        (12, "firing", "critical", NOV_2 + 8 * HOUR, None),
    ]


def test_a_critical_alert_on_a_plan_under_a_dollar_is_as_sure_as_its_band_of_the_price():
    # 2^-16 USD a minute (about $1.05 to serve a month), priced 0.1 % under the band's low
    # end after a day and a half: a warning on day 1, critical on day 2. The critical alert
    # is 95 % sure of month-end over the $0.93 price; the warning it replaces, all but sure
    # of month-end over the $0.46 allowance.
    per_min, params = 2.0**-16, MarginBreachParams()
    _, state = feed([per_min] * 36 * 60, QUIET, params)
    rest, sd = projection(state, NOV_2 + 36 * HOUR, DEC_1, params)
    low = (36 * 60 * per_min + rest - NormalDist().inv_cdf(0.95) * sd) * 1.65
    price = low * 0.999
    decisions, _ = feed([per_min] * 31 * 60, MarginTerms(price_usd=price), params)
    assert [(d.status, d.severity) for _, d in decisions] == [
        ("firing", "warning"),
        ("resolved", "warning"),
        ("firing", "critical"),
    ]
    (_, resolved), (_, critical) = decisions[1:]
    assert price < 1.0

    def sure(values, level):
        band = NormalDist(values["projected_cost_to_serve_usd"], values["projection_sd_usd"])
        return 1.0 - band.cdf(level)

    assert critical.values["confidence"] == pytest.approx(sure(critical.values, price), rel=1e-9)
    assert 0.95 <= critical.values["confidence"] < 0.99
    assert resolved.values["confidence"] == pytest.approx(sure(resolved.values, price / 2))
    assert resolved.values["confidence"] > 0.999
