"""cost_shift's rules pinned on both sides of each boundary, on noise-free traffic whose
figures can be worked out by hand.

Most tests run the detector with both windows of one second (``window_s`` = ``calm_s`` =
1): e^-600 vanishes next to any sum, so with 10-minute steps each window holds the step
alone, and the figures judged are the step's own. A day of 80 requests a step at $1 a
request teaches a baseline of exactly $1 a request (cost and requests are the same numbers,
decayed alike), with no noise, so the standard error is 0 and z does not bind unless a
test gives the baseline noise. A probe of 96 requests is 576 requests an hour, more than the
long-run 480 an hour, so the excess is projected at 576 an hour: at $1.25 a request that is
$0.25 x 576 = $144/h, x 730 h = $105,120 a month, all exact in binary.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import pytest

from detectors import cost_shift
from detectors.attribution import Usage
from detectors.cost_shift import CostShiftParams, CostShiftState

DT = 600.0  # a 10-minute step
HOUR = 3600.0
DAY = 86_400.0
START = 1_793_577_600.0  # 2026-11-02T00:00:00Z
BASE_N = 80.0  # requests a step while the baseline learns: 480 an hour
PROBE_N = 96.0  # requests in a probe step: 576 an hour
# Each window holds the step alone; judged at once, no warm-up, no flap damping.
EXACT = CostShiftParams(
    window_s=1.0,
    calm_s=1.0,
    warmup_s=0.0,
    min_baseline_requests=0.0,
    min_duration_s=0.0,
    rearm_s=0.0,
)
MONTHLY_AT_125 = 0.25 * 576 * 730  # $105,120: a $1.25 probe's excess over a month


def usage(unit: float, n: float, *, attempts: float | None = None) -> Usage:
    """``n`` successful requests at ``unit`` USD each, 1,000 input and 200 output tokens."""
    return Usage(unit * n, n, n if attempts is None else attempts, 1000 * n, 0.0, 200 * n)


def warmed(params: CostShiftParams, days: int = 1) -> tuple[CostShiftState, float]:
    """A key that learnt ``days`` of 80 requests a step at $1 each; the next step's start."""
    state = CostShiftState.new(params)
    steps = int(days * DAY / DT)
    for i in range(steps):
        assert cost_shift.update(state, START + i * DT, DT, usage(1.0, BASE_N), params) == []
    return state, START + steps * DT


def copy(state: CostShiftState) -> CostShiftState:
    return CostShiftState.from_dict(state.to_dict())


def probe(params: CostShiftParams, unit: float, n: float = PROBE_N):
    """The decisions of one step of ``n`` requests at ``unit`` after a day at $1."""
    return probed(params, unit, n)[0]


def probed(params: CostShiftParams, unit: float, n: float = PROBE_N):
    """(decisions, state, its start) of one step of ``n`` requests at ``unit`` after a day."""
    state, t = warmed(params)
    return cost_shift.update(state, t, DT, usage(unit, n), params), state, t


def above(x: float) -> float:
    return math.nextafter(x, math.inf)


def test_the_exact_baseline_is_one_dollar_a_request_and_576_an_hour_is_the_probe_rate():
    """The premise of the figures below: a day at $1 a request expects $1 a request."""
    state, t = warmed(EXACT)
    assert state.unit_cost_at(t) == 1.0
    assert state.average_requests_per_s(t, EXACT) * HOUR < 576


# What must hold to fire --------------------------------------------------------------------


def test_a_shift_of_exactly_min_ratio_fires_and_one_just_below_does_not():
    """unit / baseline - 1 >= min_ratio: $1.25 against $1 is exactly 25 % and fires;
    $1.2421875 (24.2 %) does not (both exact in binary, as is 96 x each)."""
    [firing] = probe(EXACT, 1.25)
    assert (firing.status, firing.values["ratio"]) == ("firing", 1.25)
    assert probe(EXACT, 1.2421875) == []
    # min_ratio is the parameter, not 25 %: at 50 % the same $1.25 is not a shift.
    assert probe(replace(EXACT, min_ratio=0.5), 1.25) == []
    assert [d.status for d in probe(replace(EXACT, min_ratio=0.5), 1.5)] == ["firing"]


def test_the_monthly_excess_floor_is_inclusive_and_uses_the_windows_rate():
    """excess x volume x 730 h >= warning_usd_per_month: $0.25 x 576/h x 730 = $105,120
    fires at a floor of exactly that, not a cent's fraction above it."""
    at_floor = replace(EXACT, warning_usd_per_month=MONTHLY_AT_125, critical_usd_per_month=1e9)
    [firing] = probe(at_floor, 1.25)
    assert firing.severity == "warning"
    assert firing.values["excess_usd_per_month"] == MONTHLY_AT_125
    over = replace(at_floor, warning_usd_per_month=above(MONTHLY_AT_125))
    decisions, state, _ = probed(over, 1.25)
    assert decisions == []
    # Under the floor in the recent window too: no breach starts building either.
    assert state.breach_since is None


def test_critical_from_exactly_critical_usd_per_month():
    """Critical when the projected excess is >= critical_usd_per_month, else warning."""
    at = replace(EXACT, warning_usd_per_month=0.0, critical_usd_per_month=MONTHLY_AT_125)
    assert [d.severity for d in probe(at, 1.25)] == ["critical"]
    over = replace(at, critical_usd_per_month=above(MONTHLY_AT_125))
    assert [d.severity for d in probe(over, 1.25)] == ["warning"]


def test_a_quiet_step_is_projected_at_the_long_run_rate_not_its_own():
    """volume = max(window's rate, long-run average rate): 64 requests in a step (384/h)
    at $1.50 are judged at the key's average of ~481/h, so the excess a month is
    $0.50 x average x 730 exactly, and the annotation's requests/hour is still 384."""
    state, t = warmed(EXACT)
    dry = copy(state)  # an empty step decays the baseline as the probe will, adds nothing
    cost_shift.update(dry, t, DT, Usage(0.0, 0.0, 0.0, 0.0, 0.0, 0.0), EXACT)
    volume = dry.average_requests_per_s(t, EXACT) * HOUR
    assert 384 < volume < 576
    monthly = 0.5 * volume * 730
    at = replace(EXACT, warning_usd_per_month=monthly, critical_usd_per_month=1e9)
    [firing] = cost_shift.update(copy(state), t, DT, usage(1.5, 64.0), at)
    assert firing.values["requests_per_hour"] == 384.0
    assert firing.values["money_at_risk_usd_per_hour"] == 0.5 * volume
    assert firing.values["excess_usd_per_month"] == monthly
    over = replace(at, warning_usd_per_month=above(monthly))
    assert cost_shift.update(copy(state), t, DT, usage(1.5, 64.0), over) == []


def test_min_requests_in_the_window_is_inclusive():
    """96 requests in the window meet min_requests=96; 96.5 are needed for more."""
    assert [d.status for d in probe(replace(EXACT, min_requests=PROBE_N), 1.5)] == ["firing"]
    assert probe(replace(EXACT, min_requests=PROBE_N + 0.5), 1.5) == []


def test_warm_up_counts_history_to_the_end_of_the_step_judged():
    """A key is judged once it has warmup_s of history by the end of the step: the day of
    144 steps plus the probe is 145 steps; a warm-up of exactly that fires, a second more
    does not."""
    history = 145 * DT
    assert [d.status for d in probe(replace(EXACT, warmup_s=history), 1.5)] == ["firing"]
    assert probe(replace(EXACT, warmup_s=history + 1.0), 1.5) == []


def test_min_baseline_requests_is_inclusive():
    """The baseline must hold min_baseline_requests (its EW count, as the probe sees it
    after the hour's decay): exactly that many fires, any more does not."""
    state, t = warmed(EXACT)
    dry = copy(state)
    cost_shift.update(dry, t, DT, Usage(0.0, 0.0, 0.0, 0.0, 0.0, 0.0), EXACT)
    learnt = dry.learnt_requests
    assert 144 * BASE_N * 0.85 < learnt < 144 * BASE_N  # a day, decayed by a 7-day memory
    enough = replace(EXACT, min_baseline_requests=learnt)
    [firing] = cost_shift.update(copy(state), t, DT, usage(1.5, PROBE_N), enough)
    assert firing.status == "firing"
    short = replace(EXACT, min_baseline_requests=above(learnt))
    assert cost_shift.update(copy(state), t, DT, usage(1.5, PROBE_N), short) == []


def noisy_baseline(params: CostShiftParams) -> tuple[CostShiftState, float]:
    """A day whose steps alternate $0.90 and $1.10 a request: a baseline with noise."""
    state = CostShiftState.new(params)
    for i in range(144):
        unit = 0.9 if i % 2 else 1.1
        cost_shift.update(state, START + i * DT, DT, usage(unit, BASE_N), params)
    return state, START + DAY


def test_min_z_is_inclusive_and_z_is_the_excess_over_its_standard_error():
    """z = (unit - base) / sqrt(variance per request / n), the variance learnt as the
    squared deviations over the requests (long[6] / long[1]): a probe at exactly min_z
    fires, one at the next float above does not."""
    state, t = noisy_baseline(EXACT)
    unit = 1.5
    # The probe's figures as it will be judged: a copy that cannot fire shows them (its
    # breach is building, so it does not learn the step either).
    dry = copy(state)
    assert cost_shift.update(dry, t, DT, usage(unit, PROBE_N), replace(EXACT, min_z=1e9)) == []
    short, long = dry.short, dry.long
    n = short[1]
    mean, base = short[0] / n, short[6] / n
    z = (mean - base) / math.sqrt(long[6] / long[1] / n)
    assert long[6] > 0 and 3 < z < 1e6
    [firing] = cost_shift.update(copy(state), t, DT, usage(unit, PROBE_N), replace(EXACT, min_z=z))
    assert firing.values["z"] == z
    refused = replace(EXACT, min_z=above(z))
    assert cost_shift.update(copy(state), t, DT, usage(unit, PROBE_N), refused) == []


# What an alert says ------------------------------------------------------------------------

DRIVERS = ("volume", "input_tokens", "output_tokens", "model_mix", "cache", "retries")


def core(values: dict[str, float]) -> dict[str, float]:
    """The figures every cost_shift decision carries (the attribution's left out)."""
    return {
        k: v
        for k, v in values.items()
        if not k.endswith(("_pct", "_usd_per_hour")) or k == "money_at_risk_usd_per_hour"
    }


def test_a_firing_alert_reports_the_level_now_its_threshold_and_its_projection():
    """observed / baseline / ratio are the recent window's unit cost, the baseline's and
    their quotient; threshold is baseline x (1 + min_ratio); money is the excess at the
    projected volume, per hour and x 730 a month; z of a baseline without noise (an
    infinite z) is reported as 0. The attribution's drivers add up to the money."""
    decisions, _, t = probed(EXACT, 1.25)
    [firing] = decisions
    assert (firing.alertname, firing.status, firing.severity) == (
        "cost_shift",
        "firing",
        "critical",
    )
    assert (firing.starts_at, firing.ends_at) == (t, None)
    assert core(firing.values) == {
        "observed": 1.25,
        "baseline": 1.0,
        "ratio": 1.25,
        "z": 0.0,
        "threshold": 1.25,
        "money_at_risk_usd_per_hour": 144.0,
        "excess_usd_per_month": MONTHLY_AT_125,
        "requests_per_hour": 576.0,
        "window_observed": 1.25,
    }
    split = sum(firing.values[f"excess_{d}_usd_per_hour"] for d in DRIVERS)
    assert math.isclose(split, 144.0, rel_tol=1e-9)
    assert firing.notes["attribution"].startswith("+$144.00/h: model mix +25 %")


def test_a_resolved_alert_reports_the_calm_step_with_no_negative_money_and_no_attribution():
    """The calm step's figures: $0.50 against $1 is a ratio of 0.5, money clipped at 0
    (a saving is not money at risk), z 0 (no noise, not above); the attribution is only
    for firing. The alert ends where the calm began, and the breach is over."""
    decisions, state, t = probed(EXACT, 1.25)
    [resolved] = cost_shift.update(state, t + DT, DT, usage(0.5, PROBE_N), EXACT)
    assert (resolved.alertname, resolved.status, resolved.severity) == (
        "cost_shift",
        "resolved",
        "critical",
    )
    assert (resolved.starts_at, resolved.ends_at) == (t, t + DT)
    assert resolved.values == {
        "observed": 0.5,
        "baseline": 1.0,
        "ratio": 0.5,
        "z": 0.0,
        "threshold": 1.25,
        "money_at_risk_usd_per_hour": 0.0,
        "excess_usd_per_month": 0.0,
        "requests_per_hour": 576.0,
        "window_observed": 0.5,
    }
    assert resolved.notes == {}
    assert state.episode is None and state.breach_since is None


def test_a_step_without_requests_calms_an_open_alert_and_reports_zeros():
    """No successful request: no unit cost to judge (0, not a division by zero), and
    the recent window has nothing to hold the alert open with."""
    _, state, t = probed(EXACT, 1.25)
    nothing = Usage(0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    [resolved] = cost_shift.update(state, t + DT, DT, nothing, EXACT)
    assert (resolved.status, resolved.ends_at) == ("resolved", t + DT)
    assert resolved.values == dict.fromkeys(
        (
            "observed",
            "baseline",
            "ratio",
            "z",
            "threshold",
            "money_at_risk_usd_per_hour",
            "excess_usd_per_month",
            "requests_per_hour",
            "window_observed",
        ),
        0.0,
    )
    assert state.breach_since is None


def test_a_single_request_is_judged_like_any_other_once_min_requests_allows_it():
    """min_requests=1: one request at $100 against $1 (spend over the hour's usual) is a
    99x shift; with a noisy baseline its standard error is a whole request's noise, so a
    z bar of 1,000 holds it."""
    one = replace(EXACT, min_requests=1.0)
    [firing] = probe(one, 100.0, n=1.0)
    assert firing.values["requests_per_hour"] == pytest.approx(6.0)  # 1 in 10 minutes
    assert (firing.values["observed"], firing.values["window_observed"]) == (100.0, 100.0)
    assert firing.values["baseline"] == 1.0
    assert "attribution" in firing.notes
    state, t = noisy_baseline(one)
    assert cost_shift.update(state, t, DT, usage(100.0, 1.0), replace(one, min_z=1000.0)) == []


# Escalation, flaps, calm -------------------------------------------------------------------

WARN_AT_125 = replace(EXACT, critical_usd_per_month=above(MONTHLY_AT_125))  # $1.25: warning


def steps(state: CostShiftState, t: float, units: list[float], params: CostShiftParams):
    """Feed one 96-request step per unit cost from ``t``; the decisions of each."""
    return [
        cost_shift.update(state, t + i * DT, DT, usage(unit, PROBE_N), params)
        for i, unit in enumerate(units)
    ]


def test_a_warning_escalates_once_to_critical_as_two_alerts():
    """$1.25 is a warning (under the critical floor by a hair); $1.50 is worth twice it:
    the warning resolves and a critical alert fires at that step, which then stays one
    alert until unit cost comes back."""
    state, t = warmed(WARN_AT_125)
    out = steps(state, t, [1.25, 1.5, 1.5, 0.5], WARN_AT_125)
    [warning], [ended, critical], held, [resolved] = out
    assert (warning.status, warning.severity, warning.starts_at) == ("firing", "warning", t)
    assert (ended.status, ended.severity, ended.starts_at, ended.ends_at) == (
        "resolved",
        "warning",
        t,
        t + DT,
    )
    assert (critical.status, critical.severity, critical.starts_at) == (
        "firing",
        "critical",
        t + DT,
    )
    assert "attribution" in critical.notes
    assert held == []
    assert (resolved.status, resolved.severity, resolved.starts_at, resolved.ends_at) == (
        "resolved",
        "critical",
        t + DT,
        t + 3 * DT,
    )
    assert state.episode is None


def test_a_breach_in_the_rearm_hold_is_a_flap_not_an_escalation():
    """rearm_s=1800 holds a calm alert for 3 steps. A critical-sized breach right after a
    calm step is a flap of the warning (counted, no new alert); the next breaching step,
    with no calm behind it, escalates. The critical alert then resolves after 3 calm
    steps, ending where its calm began."""
    params = replace(WARN_AT_125, rearm_s=1800.0)
    state, t = warmed(params)
    out = steps(state, t, [1.25, 1.0, 1.5, 1.5, 1.0, 1.0, 1.0], params)
    assert [len(d) for d in out] == [1, 0, 0, 2, 0, 0, 1]
    ended, critical = out[3]
    assert (ended.status, ended.severity, ended.ends_at) == ("resolved", "warning", t + 3 * DT)
    assert ended.values["flaps"] == 1.0
    assert (critical.status, critical.severity, critical.starts_at) == (
        "firing",
        "critical",
        t + 3 * DT,
    )
    [resolved] = out[6]
    assert (resolved.severity, resolved.starts_at, resolved.ends_at) == (
        "critical",
        t + 3 * DT,
        t + 4 * DT,
    )


def test_calm_s_of_two_steps_needs_two_calm_steps_to_resolve():
    """calm_s=1200 with 10-minute steps: the alert resolves on the 2nd calm step, ending
    at the 1st. (The recent window then remembers 20 minutes: $2 fires at once, $0.50
    steps bring it under +12.5 % at the first of them.)"""
    params = replace(EXACT, calm_s=1200.0)
    state, t = warmed(params)
    out = steps(state, t, [2.0, 0.5, 0.5], params)
    assert [[d.status for d in step] for step in out] == [["firing"], [], ["resolved"]]
    assert out[2][0].ends_at == t + DT


@pytest.mark.parametrize(
    ("unit", "warning", "held"),
    [
        (1.125, MONTHLY_AT_125, True),  # +12.5 %, worth half the floor: still elevated
        (1.1171875, MONTHLY_AT_125, False),  # just under half of min_ratio
        (1.125, above(MONTHLY_AT_125), False),  # just under half of the floor
    ],
)
def test_an_open_alert_stays_open_while_the_recent_window_is_at_half_the_bars(unit, warning, held):
    """An open alert is calm when the recent unit cost is under baseline x (1 +
    min_ratio / 2) or its excess under half of warning_usd_per_month: $1.125 is exactly
    +12.5 % and $0.125 x 576 x 730 = $52,560, half of $105,120."""
    params = replace(EXACT, warning_usd_per_month=warning)
    state, t = warmed(params)
    fired, then = steps(state, t, [1.5, unit], params)
    assert [d.status for d in fired] == ["firing"]
    assert [d.status for d in then] == ([] if held else ["resolved"])


@pytest.mark.parametrize(
    ("unit", "warning", "held"),
    [
        (1.125, MONTHLY_AT_125, True),
        (1.1171875, MONTHLY_AT_125, False),
        (1.125, above(MONTHLY_AT_125), False),
    ],
)
def test_a_building_breach_lasts_through_a_step_at_half_the_bars(unit, warning, held):
    """min_duration_s=1800 (3 steps). A step that is elevated (half of min_ratio and of
    the floor) but not breaching keeps the breach's start; one under resets it, so the
    third step fires only when held, as an alert that began at the first."""
    params = replace(EXACT, warning_usd_per_month=warning, min_duration_s=1800.0)
    state, t = warmed(params)
    first, middle, third = steps(state, t, [1.5, unit, 1.5], params)
    assert first == [] and middle == []
    if held:
        [firing] = third
        assert (firing.status, firing.starts_at) == ("firing", t)
    else:
        assert third == []
        assert state.breach_since == t + 2 * DT


def test_while_a_breach_builds_or_an_alert_is_open_nothing_is_learnt_and_history_waits():
    """The baseline does not learn a building breach (its count stays as an empty step
    leaves it) and time not learnt is not history: ``since`` moves on by each step."""
    params = replace(EXACT, min_duration_s=1800.0)
    state, t = warmed(params)
    dry = copy(state)
    cost_shift.update(dry, t, DT, Usage(0.0, 0.0, 0.0, 0.0, 0.0, 0.0), params)
    assert steps(state, t, [1.5], params) == [[]]
    assert state.breach_since == t
    assert state.learnt_requests == dry.learnt_requests
    assert state.since == START  # the step that started the breach was still history
    out = steps(state, t + DT, [1.5, 1.5, 1.5], params)
    assert [len(d) for d in out] == [0, 1, 0]
    assert state.learnt_requests == dry.learnt_requests
    assert state.since == START + 3 * DT


def test_a_step_at_or_before_the_last_one_is_ignored():
    """Steps at or before the last one are ignored: the same start twice changes nothing."""
    state, t = warmed(EXACT)
    before = state.to_dict()
    assert cost_shift.update(state, t - DT, DT, usage(5.0, PROBE_N), EXACT) == []
    assert state.to_dict() == before


# Accepting a new level ---------------------------------------------------------------------

NOTHING = Usage(0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
# A dearer request: $1.50, 1.25 attempts, 1,500 input (300 of them cached), 250 output.
DEARER = Usage(1.5 * PROBE_N, PROBE_N, 1.25 * PROBE_N, 1500 * PROBE_N, 300 * PROBE_N, 250 * PROBE_N)


def test_accept_from_restarts_the_baseline_at_the_current_level_and_closes_the_alert():
    """From accept_from the baseline's unit cost is scaled by the short window's shift
    (here the step at $1.50 alone: x 1.5), its per-request attempts and tokens are the
    window's, and the open alert resolves at that time with only ``accepted_at``."""
    state, t = warmed(EXACT)
    [firing] = cost_shift.update(state, t, DT, DEARER, EXACT)
    accepting = replace(EXACT, accept_from=t + DT)
    [resolved] = cost_shift.update(state, t + DT, DT, NOTHING, accepting)
    assert (resolved.alertname, resolved.status, resolved.severity) == (
        "cost_shift",
        "resolved",
        firing.severity,
    )
    assert (resolved.starts_at, resolved.ends_at) == (t, t + DT)
    assert resolved.values == {"accepted_at": t + DT}
    assert resolved.notes == {"resolved_by": "accept_from"}
    assert state.accepted == t + DT and state.breach_since is None
    assert state.unit_cost_at(t + DT) == pytest.approx(1.5, rel=1e-6)
    long = state.long
    per_request = [long[i] / long[1] for i in (2, 3, 4, 5)]
    assert per_request == pytest.approx([1.25, 1500.0, 300.0, 250.0], rel=1e-6)
    # The new level is quiet.
    assert cost_shift.update(state, t + 2 * DT, DT, DEARER, accepting) == []


def test_accepting_scales_the_learnt_noise_with_the_level():
    """A dollar's noise at $1 is 1.5 dollars' at $1.50: the squared deviations scale by
    the shift squared, the costs by the shift."""
    state, t = noisy_baseline(EXACT)
    cost_shift.update(state, t, DT, DEARER, EXACT)
    shift = state.short[0] / state.short[6]
    assert shift == pytest.approx(1.5, rel=0.02)
    cost, squares = state.long[0], state.long[6]
    cost_shift.update(state, t + DT, DT, NOTHING, replace(EXACT, accept_from=t + DT))
    assert state.long[0] == pytest.approx(cost * shift, rel=1e-6)
    assert state.long[6] == pytest.approx(squares * shift * shift, rel=1e-6)


def test_accept_from_applies_from_the_step_that_contains_it():
    """accept_from at the end of a step (t + dt) is not in it: accepted by the next."""
    state, t = warmed(EXACT)
    accepting = replace(EXACT, accept_from=t + DT)
    assert cost_shift.update(state, t, DT, usage(1.0, BASE_N), accepting) == []
    assert state.accepted is None
    cost_shift.update(state, t + DT, DT, usage(1.0, BASE_N), accepting)
    assert state.accepted == t + DT


def test_accepting_does_not_hide_a_new_shift_in_the_same_step():
    """Accepted at $1.50, a step at $3 is a new 100 % shift: the step that accepts
    resolves the old alert and fires the new one."""
    state, t = warmed(EXACT)
    cost_shift.update(state, t, DT, DEARER, EXACT)
    out = cost_shift.update(
        state, t + DT, DT, usage(3.0, PROBE_N), replace(EXACT, accept_from=t + DT)
    )
    assert [(d.status, d.starts_at) for d in out] == [("resolved", t), ("firing", t + DT)]
    assert out[0].notes == {"resolved_by": "accept_from"}


def test_accepting_a_window_of_one_request_still_rescales():
    """The shift is taken from whatever the short window holds, one request included."""
    one = replace(EXACT, min_requests=1.0)
    state, t = warmed(one)
    cost_shift.update(state, t, DT, usage(1.5, PROBE_N), one)
    cost_shift.update(state, t + DT, DT, usage(1.5, 1.0), one)
    cost_shift.update(state, t + 2 * DT, DT, NOTHING, replace(one, accept_from=t + 2 * DT))
    assert state.unit_cost_at(t + 2 * DT) == pytest.approx(1.5, rel=1e-6)


def test_accepting_a_free_baseline_leaves_it_free():
    """A key whose requests cost nothing has no unit cost to scale: accepting keeps it."""
    state = CostShiftState.new(EXACT)
    for i in range(6):
        cost_shift.update(state, START + i * DT, DT, usage(0.0, BASE_N), EXACT)
    accepting = replace(EXACT, accept_from=START + 6 * DT)
    assert cost_shift.update(state, START + 6 * DT, DT, NOTHING, accepting) == []
    assert state.accepted == START + 6 * DT
    assert state.unit_cost_at(START + 6 * DT) == 0.0


def test_accept_after_s_is_inclusive_and_ends_the_alert_that_long_after_it_began():
    """An alert open accept_after_s (1200 s: its own step and the next) is accepted at
    the end of that second step, by that step; nothing is left building."""
    params = replace(EXACT, accept_after_s=1200.0)
    state, t = warmed(params)
    fired, accepted = steps(state, t, [1.5, 1.5], params)
    assert [d.status for d in fired] == ["firing"]
    [resolved] = accepted
    assert (resolved.status, resolved.ends_at) == ("resolved", t + 1200.0)
    assert resolved.values == {"accepted_at": t + 1200.0}
    assert resolved.notes == {"resolved_by": "accept_after_s"}
    assert state.episode is None and state.breach_since is None


def test_an_escalation_accepted_in_its_own_step_reports_all_three_transitions():
    """accept_after_s of one step: the critical alert an escalation fires is accepted at
    the end of the step that fired it, after the warning it replaced."""
    params = replace(WARN_AT_125, accept_after_s=DT)
    state, t = warmed(params)
    [warning] = cost_shift.update(state, t, DT, usage(1.25, PROBE_N), params)
    out = cost_shift.update(state, t + DT, DT, usage(1.5, PROBE_N), params)
    assert [(d.status, d.severity, d.starts_at, d.ends_at) for d in out] == [
        ("resolved", "warning", t, t + DT),
        ("firing", "critical", t + DT, None),
        ("resolved", "critical", t + DT, t + 2 * DT),
    ]
    assert out[1].values["observed"] == 1.5
    assert out[2].notes == {"resolved_by": "accept_after_s"}


def test_a_naive_accept_from_is_refused_with_the_reason():
    from pydantic import TypeAdapter

    with pytest.raises(ValueError, match="no UTC offset"):
        TypeAdapter(CostShiftParams).validate_python({"accept_from": "2026-11-02T10:00:00"})


# Memory: the windows, the baseline, the hours ----------------------------------------------


_FRESH = itertools.count()


def fresh_gap(about: float) -> float:
    """A gap between steps not seen before in this process (``about`` + k / 1024 s): the
    detector remembers its decay factors per gap and time constant, so this one's are
    computed here, whatever ran before."""
    return about + next(_FRESH) / 1024


def test_the_windows_forget_at_their_own_time_constants():
    """Each of the six sums decays by e^(-gap / window_s) in the short window and
    e^(-gap / calm_s) in the recent one: about half an hour later, e^-0.5 and e^-2."""
    params = CostShiftParams()  # window_s 3600, calm_s 900
    state = CostShiftState.new(params)
    gap = fresh_gap(1800.0)
    cost_shift.update(state, START, DT, DEARER, params)
    cost_shift.update(state, START + gap, DT, NOTHING, params)
    short, recent = math.exp(-gap / 3600.0), math.exp(-gap / 900.0)
    assert list(state.short)[:6] == pytest.approx([x * short for x in DEARER], rel=1e-6)
    assert list(state.recent)[:6] == pytest.approx([x * recent for x in DEARER], rel=1e-6)


def test_the_baseline_forgets_by_whole_hours_at_baseline_days():
    """The baseline and its hours decay when the hour changes, by the hours since: 48
    hours later with baseline_days=1, by e^-2; within the hour, not at all."""
    params = CostShiftParams(baseline_days=1.0)
    state = CostShiftState.new(params)
    cost_shift.update(state, START, DT, usage(1.0, 100.0), params)
    cost_shift.update(state, START + 3000.0, DT, NOTHING, params)
    assert state.learnt_requests == 100.0
    cost_shift.update(state, START + 48 * HOUR + 1800.0, DT, NOTHING, params)
    assert state.learnt_requests == pytest.approx(100.0 * math.exp(-2.0), rel=1e-6)
    assert state.hours[1] == pytest.approx(100.0 * math.exp(-2.0), rel=1e-6)


def test_the_unit_cost_profile_is_per_utc_hour():
    """A day whose 02:00-03:00 UTC requests cost $3 (the rest $1): the next day expects
    the dear unit cost from 02:00:00 to 02:59:59 only (shrunk a little towards the day's)."""
    params = CostShiftParams()
    state = CostShiftState.new(params)
    for i in range(144):
        t = START + i * DT
        unit = 3.0 if 2 * HOUR <= t - START < 3 * HOUR else 1.0
        cost_shift.update(state, t, DT, usage(unit, BASE_N), params)
    day2 = START + DAY
    edges = (2 * HOUR - 1, 2 * HOUR, 3 * HOUR - 1, 3 * HOUR)
    expected = [state.unit_cost_at(day2 + s) for s in edges]
    # The hour's $1,440 for 480 requests and the day's $12,480 for 11,520, shrunk with a
    # prior of 100 requests (the 7-day memory has decayed the hours unevenly: 3 %).
    cheap, dear = (480 + 100 * 12480 / 11520) / 580, (1440 + 100 * 12480 / 11520) / 580
    assert expected == pytest.approx([cheap, dear, dear, cheap], rel=0.03)


def test_the_noise_is_learnt_from_the_second_step_as_squared_deviations():
    """The first step has nothing to deviate from; the second (one request at $2 where
    $1 was expected) adds (2 - 1)^2 = 1 (not warm yet, so not clipped)."""
    params = replace(EXACT, warmup_s=DAY)
    state = CostShiftState.new(params)
    cost_shift.update(state, START, DT, usage(1.0, 1.0), params)
    assert state.long[6] == 0.0
    cost_shift.update(state, START + DT, DT, usage(2.0, 1.0), params)
    assert state.long[6] == 1.0


@pytest.mark.parametrize(("warmup_s", "learnt"), [(0.0, 1.125 * PROBE_N), (2 * DAY, 1.2 * PROBE_N)])
def test_once_warm_a_dear_step_is_learnt_clipped_at_half_of_min_ratio(warmup_s, learnt):
    """A step at +20 % (under min_ratio, so it is learnt, with creep not judged: where it
    is, such a step starts creep's breach, see test_cost_shift_creep): once warm, and with
    no noise to allow more, learnt at +12.5 % (1 + min_ratio / 2); before warm-up, in full."""
    params = replace(EXACT, warmup_s=warmup_s, creep_duration_s=None)
    state, t = warmed(params)
    dry = copy(state)
    cost_shift.update(dry, t, DT, NOTHING, params)
    assert cost_shift.update(state, t, DT, usage(1.2, PROBE_N), params) == []
    assert state.long[0] - dry.long[0] == pytest.approx(learnt, abs=0.01)
    assert state.hours[0] - dry.hours[0] == pytest.approx(learnt, abs=0.01)


# The hour's window decides, the recent one says what is happening now ----------------------

# The hour's window as configured by default; the recent window still the step alone.
HOURLY = replace(EXACT, window_s=3600.0)


def test_critical_is_judged_on_the_recent_window_once_it_alone_has_min_requests():
    """A jump to $3: the hour's window, still mostly $1 requests, is ~36 % over (worth
    ~$130k a month), the step alone 200 % (~$700k). Critical at $500k: it is once the
    recent window holds min_requests (96 of 96), not when it holds fewer (96 of 96.5),
    then the hour's figure is all there is."""
    for min_requests, severity in ((PROBE_N, "critical"), (PROBE_N + 0.5, "warning")):
        params = replace(HOURLY, critical_usd_per_month=500_000.0, min_requests=min_requests)
        state, t = warmed(params)
        [firing] = cost_shift.update(state, t, DT, usage(3.0, PROBE_N), params)
        window = firing.values["window_observed"]
        assert 1.3 < window < 1.4  # the hour's window: $1.30-1.40 a request
        assert firing.values["excess_usd_per_month"] > 600_000  # the step's, reported
        assert firing.severity == severity, min_requests


def test_an_open_alert_calms_on_a_step_without_requests_though_the_hour_is_still_dear():
    """The recent window judges an open alert: with no request in it, it is calm (the
    hour's window, still dear, does not hold the alert open)."""
    state, t = warmed(HOURLY)
    [firing] = cost_shift.update(state, t, DT, usage(3.0, PROBE_N), HOURLY)
    assert firing.status == "firing"
    [resolved] = cost_shift.update(state, t + DT, DT, NOTHING, HOURLY)
    assert (resolved.status, resolved.ends_at) == ("resolved", t + DT)
    assert resolved.values["window_observed"] > 1.25  # the hour's window: still a shift


def test_an_open_alert_calms_on_the_recent_windows_one_request_not_the_hours_level():
    """One request at $0.50 is the recent window: it is what is observed now, and the
    alert resolves although the hour's window is still well over +25 %."""
    state, t = warmed(HOURLY)
    cost_shift.update(state, t, DT, usage(3.0, PROBE_N), HOURLY)
    [resolved] = cost_shift.update(state, t + DT, DT, usage(0.5, 1.0), HOURLY)
    assert resolved.status == "resolved"
    assert resolved.values["observed"] == 0.5
    assert resolved.values["window_observed"] > 1.25


def test_a_key_without_a_baseline_is_judged_against_the_expected_cost_it_is_given():
    """``expected`` (what the step's requests cost at baseline, e.g. a customer's at its
    endpoints' unit costs) is the baseline: a new key, judged at once, at $2 against $1
    passed in fires. Nothing learnt, no noise: z is infinite (any min_z passes), and no
    baseline of its own means no attribution."""
    params = replace(EXACT, min_z=1e6)
    state = CostShiftState.new(params)
    [firing] = cost_shift.update(state, START, DT, usage(2.0, PROBE_N), params, PROBE_N * 1.0)
    assert (firing.values["observed"], firing.values["baseline"]) == (2.0, 1.0)
    assert firing.notes == {}


def test_a_baseline_of_one_request_is_a_baseline():
    """One request learnt at $1 is enough (with no warm-up or minimum) to judge $3 a
    request a shift, split by driver, and accepting scales it to $3."""
    state = CostShiftState.new(EXACT)
    cost_shift.update(state, START, DT, usage(1.0, 1.0), EXACT)
    assert state.learnt_requests == 1.0
    [firing] = cost_shift.update(state, START + DT, DT, usage(3.0, PROBE_N), EXACT)
    assert firing.values["baseline"] == 1.0
    assert "attribution" in firing.notes
    accepting = replace(EXACT, accept_from=START + 2 * DT)
    cost_shift.update(state, START + 2 * DT, DT, NOTHING, accepting)
    assert state.unit_cost_at(START + 2 * DT) == pytest.approx(3.0, rel=1e-6)


def test_failed_attempts_that_cost_without_a_success_are_noise_in_the_baseline():
    """A step of $1 of failed attempts and no success deviates by $1 from the $0 its (no)
    requests should cost: variance 1 per learnt request (one), so 96 requests at $4 against
    $2 are (4 - 2) / sqrt(1 / 96) = 19.6 standard errors: over a z bar of 19, not of 20."""
    for min_z, fires in ((19.0, True), (20.0, False)):
        params = replace(EXACT, warmup_s=2 * DT, min_z=min_z)  # not clipped while learning
        state = CostShiftState.new(params)
        cost_shift.update(state, START, DT, usage(1.0, 1.0), params)
        cost_shift.update(state, START + DT, DT, Usage(1.0, 0.0, 1.0, 1000.0, 0.0, 0.0), params)
        assert (state.long[6], state.learnt_requests) == (1.0, 1.0)
        out = cost_shift.update(state, START + 2 * DT, DT, usage(4.0, PROBE_N), params)
        assert bool(out) is fires, min_z


def test_while_a_breach_lasts_only_a_step_with_the_hours_window_over_min_ratio_fires_it():
    """min_duration_s=1800. $3 starts a breach; steps at +15 % hold it (elevated) while the
    hour's window sinks under +25 %; a step at +30 % then breaches in the recent window
    only: the hour's window decides, so nothing fires until it is over +25 % again, and
    the alert then begins where the breach did."""
    params = replace(HOURLY, min_duration_s=1800.0)
    state, t = warmed(params)
    out = steps(state, t, [3.0] + [1.15] * 5 + [1.3], params)
    assert all(d == [] for d in out)
    assert state.short[0] / state.short[6] - 1 < 0.25
    assert state.breach_since == t
    [firing] = cost_shift.update(state, t + 7 * DT, DT, usage(3.0, PROBE_N), params)
    assert (firing.status, firing.starts_at) == ("firing", t)


@pytest.mark.parametrize(("unit", "held"), [(1.125, True), (1.1, False)])
def test_a_building_breach_needs_the_recent_window_elevated_too(unit, held):
    """After $3 the hour's window stays ~+31 %, elevated; the step alone decides whether
    the breach goes on: +12.5 % (half of min_ratio) holds it, +10 % ends it."""
    params = replace(HOURLY, min_duration_s=1800.0)
    state, t = warmed(params)
    steps(state, t, [3.0, unit], params)
    assert state.short[0] / state.short[6] - 1 > 0.3
    assert state.breach_since == (t if held else None)


@pytest.mark.parametrize(("warning", "held"), [(300_000.0, True), (400_000.0, False)])
def test_a_breach_the_recent_window_started_needs_the_hours_window_worth_half_the_floor(
    warning, held
):
    """$3 after $1: the step alone is worth ~$720k a month, the hour's window (+36 %)
    ~$130k, under the floor: no breach, but the recent window shows one, so it starts
    building. A step at $1.80 (~$300k now, the hour's ~$160k) keeps it only while the
    hour's window is worth half the floor ($150k of $300k) and the recent one too; at a
    floor of $400k the hour's window is under its half and the breach ends."""
    params = replace(HOURLY, warning_usd_per_month=warning, min_duration_s=1800.0)
    state, t = warmed(params)
    assert steps(state, t, [3.0], params) == [[]]
    assert state.breach_since == t
    assert steps(state, t + DT, [1.8], params) == [[]]
    assert state.breach_since == (t if held else None)


def test_a_critical_alert_fired_in_the_step_its_warning_is_accepted_carries_its_attribution():
    # accept_after_s of one step: the warning at $1.25 is accepted by itself in the step
    # where $1.50 escalates it; the critical alert fired there still says why (before
    # 2026-12-03 that one firing had no attribution).
    params = replace(WARN_AT_125, accept_after_s=DT)
    state, t = warmed(params)
    cost_shift.update(state, t, DT, usage(1.25, PROBE_N), params)
    out = cost_shift.update(state, t + DT, DT, usage(1.5, PROBE_N), params)
    [critical] = [d for d in out if d.status == "firing"]
    assert critical.severity == "critical"
    assert critical.notes["attribution"].startswith("+$")
    assert "model mix +50 %" in critical.notes["attribution"]
    assert critical.values["excess_model_mix_pct"] > 0
