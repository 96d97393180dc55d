"""cost_shift: unit-cost shifts fire at any $/h once they last, volume alone never does."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors import cost_shift
from detectors.attribution import Usage
from detectors.cost_shift import CostShiftParams, CostShiftState
from detectors.decision import Decision

STEP = 300.0
HOUR = 3600.0
DAY = 86_400.0
START = 1_793_577_600.0  # 2026-11-02T00:00:00Z
PARAMS = CostShiftParams()
# USD per million tokens: input, cached input, output.
PRICES = {"gpt-4o-mini": (0.15, 0.075, 0.60), "gpt-4o": (2.50, 1.25, 10.0)}


@dataclass(frozen=True)
class Mix:
    """What a request looks like: model, mean tokens, cache-hit share, failures."""

    model: str = "gpt-4o-mini"
    input_tokens: float = 1000.0
    output_tokens: float = 200.0
    cache_share: float = 0.0  # share of input tokens read from the cache
    failed_share: float = 0.0  # failed attempts per successful request (retried)
    volume: float = 1.0  # x the base request rate


def diurnal(t: float, peak_to_trough: float) -> float:
    phase = 2 * math.pi * ((t % DAY) / DAY - 15 / 24)
    amplitude = (peak_to_trough - 1) / (peak_to_trough + 1)
    return 1 + amplitude * math.cos(phase)


def unit_cost(mix: Mix) -> float:
    """USD per successful request of a mix without noise (failed attempts cost input)."""
    p_in, p_cached, p_out = PRICES[mix.model]
    cached = mix.input_tokens * mix.cache_share
    request = ((mix.input_tokens - cached) * p_in + cached * p_cached) / 1e6
    request += mix.output_tokens * p_out / 1e6
    failed = mix.input_tokens * p_in / 1e6
    return request + mix.failed_share * failed


def traffic(
    days: float,
    mix: Callable[[float], Mix],
    *,
    per_hour: float = 165.0,
    seed: int | None = 1,
    peak_to_trough: float = 2.5,
    sigma: float = 0.6,
) -> list[tuple[float, Usage]]:
    """(step start, usage) per 5-minute step. ``seed=None``: no noise (exact rates, exact
    tokens, no diurnal cycle); else Poisson requests, lognormal tokens, a daily cycle."""
    rng = np.random.default_rng(seed) if seed is not None else None
    out = []
    for step in range(int(days * DAY / STEP)):
        t = START + step * STEP
        m = mix(t)
        p_in, p_cached, p_out = PRICES[m.model]
        if rng is None:
            n = per_hour * m.volume * STEP / HOUR
            inp, outp = n * m.input_tokens, n * m.output_tokens
            failed = n * m.failed_share
        else:
            lam = per_hour * m.volume * STEP / HOUR * diurnal(t, peak_to_trough)
            n = float(rng.poisson(lam))
            k = int(n)
            # Lognormal tokens whose mean is the mix's (so unit_cost is the expected cost).
            shift = sigma * sigma / 2
            inp = float(rng.lognormal(math.log(m.input_tokens) - shift, sigma, k).sum())
            outp = float(rng.lognormal(math.log(m.output_tokens) - shift, sigma, k).sum())
            failed = float(rng.binomial(k, min(1.0, m.failed_share))) if k else 0.0
        cached = inp * m.cache_share
        cost = ((inp - cached) * p_in + cached * p_cached + outp * p_out) / 1e6
        failed_input = failed * m.input_tokens
        cost += failed_input * p_in / 1e6
        # Input tokens are counted apart from cache reads, as events count them.
        out.append((t, Usage(cost, n, n + failed, inp - cached + failed_input, cached, outp)))
    return out


def run(
    series: list[tuple[float, Usage]],
    params: CostShiftParams = PARAMS,
    state: CostShiftState | None = None,
    params_at: Callable[[float], CostShiftParams] | None = None,
) -> tuple[list[tuple[float, Decision]], CostShiftState]:
    """Decisions with the end of the step that made them, and the state."""
    state = state or CostShiftState.new(params)
    out = []
    for t, usage in series:
        p = params_at(t) if params_at else params
        out += [(t + STEP, d) for d in cost_shift.update(state, t, STEP, usage, p)]
    return out, state


def at(day: float, hour: float = 0.0) -> float:
    return START + day * DAY + hour * HOUR


def switch(when: float, before: Mix, after: Mix, until: float = math.inf):
    return lambda t: after if when <= t < until else before


MINI, FOUR_O = Mix(), Mix(model="gpt-4o")


def test_a_model_switch_at_the_same_volume_worth_70_cents_an_hour_fires_an_hour_after_it():
    onset = at(3, 10)
    excess = (unit_cost(FOUR_O) - unit_cost(MINI)) * 165
    assert excess == pytest.approx(0.70, abs=0.01)  # $/h: far under spend_spike's $3/h
    decisions, _ = run(traffic(4, switch(onset, MINI, FOUR_O)))
    assert [(d.status, d.severity) for _, d in decisions] == [("firing", "warning")]
    fired_at, firing = decisions[0]
    # The shift lasts from the step where the recent window first shows it (its onset
    # here); the hour's window, which lags, does not delay the hour's count.
    assert firing.starts_at == onset
    assert fired_at == onset + HOUR
    assert firing.values["ratio"] > 5
    assert 100 <= firing.values["excess_usd_per_month"] <= 600
    shares = {k: v for k, v in firing.values.items() if k.endswith("_pct")}
    assert shares["excess_model_mix_pct"] > 90
    assert abs(shares["excess_volume_pct"]) < 1
    assert firing.notes["attribution"].split(": ")[1].startswith("model mix +")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_twice_the_requests_at_the_same_unit_cost_never_fires(seed):
    doubled = Mix(volume=2.0)
    decisions, _ = run(
        traffic(6, switch(at(3, 10), FOUR_O, replace(doubled, model="gpt-4o")), seed=seed)
    )
    assert decisions == []


@pytest.mark.parametrize(
    ("name", "after", "driver"),
    [
        ("prompt doubles", replace(FOUR_O, input_tokens=2000.0), "input_tokens"),
        ("output grows", replace(FOUR_O, output_tokens=500.0), "output_tokens"),
        (
            "cache stops hitting",
            replace(FOUR_O, input_tokens=4000.0, output_tokens=100.0, cache_share=0.05),
            "cache",
        ),
        ("retries", replace(FOUR_O, failed_share=1.0), "retries"),
    ],
)
def test_each_driver_of_unit_cost_fires_and_is_named(name, after, driver):
    before = (
        replace(FOUR_O, input_tokens=4000.0, output_tokens=100.0, cache_share=0.6)
        if driver == "cache"
        else FOUR_O
    )
    assert unit_cost(after) / unit_cost(before) > 1.3, name
    onset = at(3, 10)
    decisions, _ = run(traffic(4, switch(onset, before, after)))
    firing = [(t, d) for t, d in decisions if d.status == "firing"]
    assert firing, name
    fired_at, d = firing[0]
    # A 25-35 % shift needs most of the window at its new level: it fires later.
    assert onset + HOUR <= fired_at <= onset + 4 * HOUR, name
    pct = {k[len("excess_") : -len("_pct")]: v for k, v in d.values.items() if k.endswith("_pct")}
    assert max(pct, key=pct.__getitem__) == driver, (name, pct)
    if driver == "cache":
        # The baseline's 60 %: it learns nothing from the first 15-minute window that
        # shows the change on (it learnt the first minutes before 2026-12-03).
        assert re.search(r"cache hits 60 % -> [4-7] %", d.notes["attribution"])


def exact_switch(factor_per_request: float, per_hour: float, params=PARAMS, days=3.0):
    """A noise-free mini -> 'factor x mini' unit-cost switch on day 2 at 10:00."""
    before = Mix()
    after = replace(
        Mix(), input_tokens=1000.0 * factor_per_request, output_tokens=200.0 * factor_per_request
    )
    series = traffic(days, switch(at(2, 10), before, after), per_hour=per_hour, seed=None)
    monthly = (unit_cost(after) - unit_cost(before)) * per_hour * 730
    return run(series, params)[0], monthly


@pytest.mark.parametrize(("per_hour", "fires"), [(480.0, False), (560.0, True)])
def test_the_100_usd_a_month_floor_is_judged_on_the_projected_excess(per_hour, fires):
    decisions, monthly = exact_switch(2.0, per_hour)
    assert (monthly > PARAMS.warning_usd_per_month) is fires
    assert abs(monthly - 100) < 15  # just either side
    assert bool(decisions) is fires
    if fires:
        assert decisions[0][1].severity == "warning"


@pytest.mark.parametrize(("per_hour", "severity"), [(4300.0, "warning"), (5600.0, "critical")])
def test_critical_from_1000_usd_a_month(per_hour, severity):
    decisions, monthly = exact_switch(2.0, per_hour)
    assert abs(monthly - 1000) < 200
    assert (monthly >= 1000) is (severity == "critical")
    firing = [d for _, d in decisions if d.status == "firing"]
    assert firing[-1].severity == severity


def test_a_warning_escalates_to_critical_once_as_two_alerts():
    # Worth ~$1,200/month once the window has the new level, ~$760 when it first fires.
    decisions, monthly = exact_switch(2.0, 6700.0 / 1.0, CostShiftParams(), days=3)
    statuses = [(d.status, d.severity) for _, d in decisions]
    assert monthly > 1000
    assert statuses in (
        [("firing", "critical")],
        [("firing", "warning"), ("resolved", "warning"), ("firing", "critical")],
    )


@pytest.mark.parametrize("min_duration_s", [1800.0, 3600.0, 7200.0])
def test_it_fires_at_the_end_of_the_step_where_the_breach_has_lasted_min_duration(min_duration_s):
    params = CostShiftParams(min_duration_s=min_duration_s)
    decisions, _ = exact_switch(15.0, 165.0, params)
    ((fired_at, firing),) = decisions
    assert fired_at - firing.starts_at == min_duration_s  # not one step before


@pytest.mark.parametrize(("minutes", "fires"), [(30, False), (150, True)])
def test_a_shift_shorter_than_min_duration_never_fires(minutes, fires):
    onset = at(3, 10)
    series = traffic(4, switch(onset, MINI, FOUR_O, until=onset + minutes * 60))
    decisions, _ = run(series, CostShiftParams(min_duration_s=2 * HOUR))
    assert any(d.status == "firing" for _, d in decisions) is fires


def test_it_resolves_soon_after_unit_cost_returns():
    onset, back = at(3, 10), at(3, 16)
    decisions, state = run(traffic(5, switch(onset, MINI, FOUR_O, until=back)))
    assert [d.status for _, d in decisions] == ["firing", "resolved"]
    (_, firing), (resolved_at, resolved) = decisions
    assert resolved.starts_at == firing.starts_at
    assert back <= resolved.ends_at <= back + HOUR  # when the calm began
    assert resolved_at <= back + 2.5 * HOUR  # held rearm_s for flaps
    assert state.episode is None and state.breach_since is None


def test_accept_from_resolves_the_alert_and_the_new_level_stays_quiet():
    onset, accepted = at(3, 10), at(3, 14)
    series = traffic(8, switch(onset, MINI, FOUR_O))
    accepting = CostShiftParams(accept_from=accepted)
    decisions, state = run(series, params_at=lambda t: accepting if t >= at(3, 13) else PARAMS)
    assert [(d.status, d.ends_at) for _, d in decisions] == [
        ("firing", None),
        ("resolved", accepted),
    ]
    assert decisions[1][1].notes == {"resolved_by": "accept_from"}
    assert state.accepted == accepted
    # The baseline restarted at the gpt-4o level: it stays quiet there for days.
    assert state.unit_cost_at(at(7, 10)) == pytest.approx(unit_cost(FOUR_O), rel=0.15)


def test_accept_from_is_read_from_rfc3339_and_a_key_first_seen_after_it_has_nothing_to_accept():
    from pydantic import TypeAdapter

    params = TypeAdapter(CostShiftParams).validate_python({"accept_from": "2026-11-05T14:00:00Z"})
    assert params.accept_from == at(3, 14)
    later = CostShiftState.new(params)
    cost_shift.update(later, at(3, 15), STEP, Usage(1.0, 10, 10, 1e4, 0, 2e3), params)
    assert later.accepted == at(3, 14)
    before = CostShiftState.new(params)  # a key seen before it: accepted once it comes
    cost_shift.update(before, at(3, 13), STEP, Usage(1.0, 10, 10, 1e4, 0, 2e3), params)
    assert before.accepted is None
    with pytest.raises(ValueError, match="RFC 3339"):
        TypeAdapter(CostShiftParams).validate_python({"accept_from": "next tuesday"})


def test_accept_after_s_accepts_an_alert_open_that_long_by_itself():
    params = CostShiftParams(accept_after_s=6 * HOUR)
    decisions, _ = run(traffic(6, switch(at(3, 10), MINI, FOUR_O)), params)
    assert [d.status for _, d in decisions] == ["firing", "resolved"]
    firing, resolved = decisions[0][1], decisions[1][1]
    assert resolved.ends_at == firing.starts_at + 6 * HOUR
    assert resolved.notes == {"resolved_by": "accept_after_s"}


def cheap_endpoint_stops(days: float = 6.0):
    """A customer's two endpoints: a cheap busy one that goes quiet on day 3 at 10:00,
    and a dear one that goes on as before."""
    cheap = traffic(days, lambda t: Mix(volume=0.0 if t >= at(3, 10) else 1.0), per_hour=3000.0)
    dear = traffic(days, lambda t: FOUR_O, per_hour=165.0, seed=2)
    merged = [
        (
            t,
            Usage(
                *(a + b for a, b in zip(u, v, strict=True)),
            ),
            u.requests,
            v.requests,
        )
        for (t, u), (_, v) in zip(cheap, dear, strict=True)
    ]
    return merged


def test_a_customer_whose_cheap_endpoint_goes_quiet_is_not_a_shift_at_its_endpoints_unit_costs():
    """Per customer, unit cost is a mix of endpoints: the cheap one going quiet raises it
    (spend falls). Judged against what each endpoint's requests usually cost (the stream
    layer passes that as ``expected``), it is a change of volume: never fires."""
    state, out = CostShiftState.new(PARAMS), []
    for t, usage, cheap_ok, dear_ok in cheap_endpoint_stops():
        expected = cheap_ok * unit_cost(MINI) + dear_ok * unit_cost(FOUR_O)
        out += cost_shift.update(state, t, STEP, usage, PARAMS, expected)
    assert out == []


def test_on_its_own_unit_cost_the_same_customer_is_held_while_its_spend_is_below_usual():
    """Without the endpoints' unit costs, only the spend guard holds it: spend is below
    what the hour usually costs until the baseline has learnt the lower volume."""
    state, out = CostShiftState.new(PARAMS), []
    for t, usage, _, _ in cheap_endpoint_stops(days=4.0):
        out += [(t, d) for d in cost_shift.update(state, t, STEP, usage, PARAMS)]
    assert all(t >= at(3, 10) + 12 * HOUR for t, _ in out)


@pytest.mark.parametrize(
    ("seed", "mix", "per_hour"),
    [
        (11, MINI, 165.0),
        (12, FOUR_O, 40.0),  # sparse and dear: $0.18/h, noisy unit cost
        (13, replace(FOUR_O, input_tokens=8000.0, output_tokens=800.0), 60.0),  # ~$1.7/h
        (14, replace(FOUR_O, cache_share=0.5, failed_share=0.03), 2000.0),
        (15, MINI, 20_000.0),
    ],
)
def test_fourteen_clean_days_with_poisson_noise_and_a_daily_cycle_never_fire(seed, mix, per_hour):
    decisions, state = run(traffic(14, lambda t: mix, per_hour=per_hour, seed=seed, sigma=0.8))
    assert decisions == []
    assert state.breach_since is None


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(0, 50),
            st.integers(0, 1000),  # successful requests: a count
            st.floats(0, 1),
            st.floats(0, 2e6),
            st.floats(0, 1),
            st.floats(0, 1e5),
        ),
        min_size=1,
        max_size=60,
    ),
    st.integers(1, 40),
)
def test_state_round_trips_through_json_and_continues_identically(steps, gap):
    params = CostShiftParams(warmup_s=0, min_baseline_requests=0, min_requests=1)
    state = CostShiftState.new(params)
    for i, (cost, ok, failed, inp, cached, out) in enumerate(steps):
        usage = Usage(cost, ok, round(ok * (1 + failed)), inp, inp * cached, out)
        cost_shift.update(state, START + i * gap * STEP, STEP, usage, params)
    raw = json.dumps(state.to_dict())
    restored = CostShiftState.from_dict(json.loads(raw))
    assert restored.to_dict() == state.to_dict()
    t = START + len(steps) * gap * STEP
    usage = Usage(5.0, 100.0, 100.0, 1e5, 0.0, 1e4)
    assert cost_shift.update(restored, t, STEP, usage, params) == cost_shift.update(
        state, t, STEP, usage, params
    )
    assert restored.to_dict() == state.to_dict()


def test_a_keys_state_stays_under_2_kb_as_json_even_with_an_alert_open():
    decisions, state = run(traffic(14, switch(at(13, 10), MINI, FOUR_O), per_hour=5000.0))
    assert state.episode is not None and state.episode.firing
    size = len(orjson.dumps(state.to_dict()))
    assert size < 2048, size


def test_an_old_state_version_is_refused():
    data = CostShiftState.new(PARAMS).to_dict()
    with pytest.raises(ValueError, match="version"):
        CostShiftState.from_dict({**data, "v": 0})


def test_a_state_is_one_array_of_single_floats_and_refuses_sums_of_the_wrong_length():
    decisions, state = run(traffic(2, lambda t: MINI))
    assert state.sums.typecode == "f" and len(state.sums) == 7 + 48 + 7 + 7
    data = state.to_dict()
    # The four views write through to the one array.
    again = CostShiftState.from_dict(data)
    again.short[0] += 1.0
    assert again.sums[55] == pytest.approx(state.sums[55] + 1.0)
    with pytest.raises(ValueError, match="wrong length"):
        CostShiftState.from_dict({**data, "hours": data["hours"][:-1]})


ONSET = START + 2 * DAY + 10 * HOUR  # day 2 at 10:00


def shifted(step: float, n: float, unit_at: Callable[[float], float]) -> list[tuple]:
    """Three days of ``n`` requests a step at ``unit_at(t)`` USD each (default params):
    each decision as (emitted, status, starts_at), times relative to ONSET."""
    p = CostShiftParams()
    state = CostShiftState.new(p)
    out = []
    for i in range(int(3 * DAY / step)):
        t = START + i * step
        unit = unit_at(t)
        for d in cost_shift.update(state, t, step, Usage(unit * n, n, n, 1000 * n, 0, 200 * n), p):
            out.append((t + step - ONSET, d.status, d.starts_at - ONSET))
    return out


def test_a_shift_the_hour_window_lags_is_timed_from_the_step_it_began_in():
    # 1.5x per request from day 2 at 10:00, 240 requests an hour in 5-minute steps. The
    # 15-minute window's ratio is 0.5 x (1 - e^(-steps x 5 / 15)): 0.142 after one step,
    # 0.243 after two, 0.316 after three, so the shift shows in the step at +10 min (the
    # hour's window is still at 0.08 then; it reaches 0.25 at +40 min), and the step
    # before it, at +5, was already over half the bar (+12.5 %): the shift began there.
    # The hour counts from +5 min: the alert fires when the step at +60 closes (+65) and
    # starts at +5. (Before 2026-12-03 a shortcut skipped the judging while the hour's
    # window was under +25 %: it started at +40 and fired at +100, and the baseline
    # learnt the steps between; the hour then counted from the step that showed it.)
    fired = shifted(300.0, 20.0, lambda t: 1.5 if t >= ONSET else 1.0)
    assert fired == [(65 * 60.0, "firing", 5 * 60.0)]


def test_a_shift_is_dated_back_at_most_one_step_and_only_from_a_step_half_way_there():
    # A 1.5x shift shows in the 15-minute window two steps after onset. If the step
    # before was over +12.5 % the shift began there (previous test); here each step is
    # 10 minutes: the onset step ends at 0.5 x (1 - e^(-10/15)) = 0.243 (over +12.5 %)
    # and the next shows it (0.5 x (1 - e^(-20/15)) = 0.368): the hour counts from the
    # onset step, not from an earlier one (the step before onset is at 0).
    fired = shifted(600.0, 40.0, lambda t: 1.5 if t >= ONSET else 1.0)
    assert fired == [(60 * 60.0, "firing", 0.0)]


@pytest.mark.parametrize(("creep", "from_creep"), [(1.26, True), (1.25, False)])
def test_the_step_before_counts_from_half_the_bar(creep, from_creep):
    # One 10-minute step at `creep` x, then 3x: the 3x step shows the shift. The creep
    # step left the 15-minute window at (creep - 1) x (1 - e^(-10/15)): 0.1265 at 1.26x,
    # over half the bar (+12.5 %), so the shift is dated from it; 0.1217 at 1.25x is not.
    fired = shifted(600.0, 40.0, lambda t: 3.0 if t > ONSET else creep if t == ONSET else 1.0)
    assert [(status, start) for _, status, start in fired[:1]] == [
        ("firing", 0.0 if from_creep else 600.0)
    ]
