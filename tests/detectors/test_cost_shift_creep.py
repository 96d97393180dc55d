"""cost_shift's creep rule: a shift under min_ratio but at least half of it (with the
money, the evidence and the spend of a breach) fires once it has lasted
``creep_duration_s`` (3 h by default), where a full shift fires after ``min_duration_s``.
The README's numbers, on both sides: half of min_ratio, and the 3 hours."""

from __future__ import annotations

from dataclasses import replace

import pytest

from detectors import cost_shift
from detectors.cost_shift import CostShiftParams, CostShiftState
from tests.detectors.test_cost_shift_pins import (
    DT,
    EXACT,
    NOTHING,
    PROBE_N,
    copy,
    usage,
    warmed,
)

HOUR = 3600.0


def shifted(unit: float, params: CostShiftParams, hours: float = 5.0):
    """A day of $1 requests, then ``hours`` of steps at ``unit`` USD a request: the
    decisions and the start of the first dear step."""
    state, t0 = warmed(params)
    out = []
    for i in range(int(hours * HOUR / DT)):
        out += cost_shift.update(state, t0 + i * DT, DT, usage(unit, PROBE_N), params)
    return out, t0, state


def test_the_default_is_three_hours():
    assert CostShiftParams().creep_duration_s == 3 * HOUR


@pytest.mark.parametrize(("unit", "fires"), [(1.13, True), (1.12, False), (1.24, True)])
def test_creep_is_a_shift_of_at_least_half_of_min_ratio(unit, fires):
    """+13 % and +24 % creep (min_ratio 25 %: half of it is 12.5 %); +12 % does not."""
    decisions, t0, _ = shifted(unit, EXACT)
    firing = [d for d in decisions if d.status == "firing"]
    assert bool(firing) is fires
    if fires:
        assert firing[0].starts_at == t0
        assert firing[0].notes["rule"] == "creep: >= +12.5% for 3 h"
        assert firing[0].values["threshold"] == pytest.approx(1.125)


@pytest.mark.parametrize("creep_s", [3 * HOUR, 2 * HOUR])
def test_creep_fires_at_the_end_of_the_step_where_it_has_lasted_creep_duration(creep_s):
    """At +20 % the breach starts with the first dear step and fires at the end of the
    step that makes ``creep_duration_s``: not one step before."""
    params = replace(EXACT, creep_duration_s=creep_s)
    state, t0 = warmed(params)
    steps = int(creep_s / DT)
    for i in range(steps - 1):
        assert cost_shift.update(state, t0 + i * DT, DT, usage(1.2, PROBE_N), params) == []
    last = t0 + (steps - 1) * DT
    [firing] = cost_shift.update(state, last, DT, usage(1.2, PROBE_N), params)
    assert (firing.status, firing.starts_at) == ("firing", t0)
    assert last + DT - firing.starts_at == creep_s


def test_without_creep_a_shift_under_min_ratio_never_fires_and_is_learnt():
    params = replace(EXACT, creep_duration_s=None)
    decisions, _, state = shifted(1.2, params, hours=6.0)
    assert decisions == []
    assert state.breach_since is None


def test_creep_holds_the_baseline_while_it_is_judged():
    """With creep judged, a +20 % step starts its breach and is not learnt (the
    baseline would otherwise learn the creep at +12.5 % a step and follow it)."""
    state, t = warmed(EXACT)
    dry = copy(state)
    cost_shift.update(dry, t, DT, NOTHING, EXACT)  # the hour's decay alone
    assert cost_shift.update(state, t, DT, usage(1.2, PROBE_N), EXACT) == []
    assert state.breach_since == t
    assert list(state.long) == list(dry.long)


def test_a_full_shift_still_fires_after_min_duration_and_is_not_called_creep():
    params = replace(EXACT, min_duration_s=HOUR)
    decisions, t0, _ = shifted(1.3, params)
    firing = [d for d in decisions if d.status == "firing"]
    assert firing[0].starts_at == t0
    assert "rule" not in firing[0].notes
    assert firing[0].values["threshold"] == pytest.approx(1.25)


def test_creep_needs_the_money_a_breach_needs():
    """+20 % worth under warning_usd_per_month does not creep."""
    rich = shifted(1.2, EXACT)[0]
    assert rich
    excess_month = 0.2 * PROBE_N / DT * 3600 * 730  # what +20 % is worth at this volume
    poor = replace(EXACT, warning_usd_per_month=excess_month * 1.01)
    assert shifted(1.2, poor)[0] == []


def test_an_open_creep_alert_resolves_when_unit_cost_is_back():
    params = EXACT
    state, t0 = warmed(params)
    out = []
    for i in range(int(4 * HOUR / DT)):
        out += cost_shift.update(state, t0 + i * DT, DT, usage(1.2, PROBE_N), params)
    t = t0 + 4 * HOUR
    for i in range(6):
        out += cost_shift.update(state, t + i * DT, DT, usage(1.0, PROBE_N), params)
    assert [d.status for d in out] == ["firing", "resolved"]
    assert isinstance(state, CostShiftState) and state.episode is None
