"""spend_spike cases that the mutation run (``make mutation``) showed no test had: each
pins a behaviour the detector's users see (a decision, a figure, the learnt state that
later decisions come from) at a place where a changed operator or constant went unseen.

The quiet-gap cases compare with the reference of test_spend_spike_quiet_gaps (every
skipped bucket judged and learnt on its own), the others with numbers from the rules.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from detectors import spend_spike
from detectors.ewstats import SeasonalBaseline
from detectors.spend_spike import SpendSpikeParams, SpendSpikeState
from tests.detectors.test_spend_spike_pins import (
    DAY,
    DECAY,
    DOWN,
    ONE,
    SPIKE,
    agree,
    at,
    lasting_excess,
    probe,
)
from tests.detectors.test_spend_spike_quiet_gaps import (
    BASE,
    MINUTE,
    T0,
    close,
    history,
    reference_update,
    run,
    same_decisions,
)

# A key's life as test_spend_spike_quiet_gaps writes it: (minutes since the last bucket,
# spend), from T0 (midnight UTC).
Life = list[tuple[int, float]]


def numbers(state: dict) -> dict:
    """A state as to_dict writes it, with the baseline's array as a list of numbers
    (however to_dict encodes it), for close()."""
    stats = SeasonalBaseline.from_dict(state["baseline"]).stats.tolist()
    return {**state, "baseline": {**state["baseline"], "stats": stats}}


def as_judging_every_bucket(params: SpendSpikeParams, life: Life) -> tuple[dict, list]:
    """The life through update and through the reference: the same decisions and the same
    state (to single precision's rounding); the state (its array as numbers) and the
    decisions."""
    new_state, new = run(params, life, spend_spike.update)
    old_state, old = run(params, life, reference_update)
    assert same_decisions(new, old)
    assert close(numbers(new_state), numbers(old_state))
    return numbers(new_state), new


# Long quiet gaps (learnt at once, in closed form) ----------------------------------------


def test_a_long_quiet_gap_of_a_key_without_hours_of_the_day_is_learnt_as_judged():
    """Not seasonal: 300 busy minutes, 199 quiet ones, one more: every one of them counts
    in the key's history, and the baseline is where judging each would leave it."""
    state, decisions = as_judging_every_bucket(
        replace(BASE, seasonal=False), history(300) + [(200, 0.03)]
    )
    assert decisions == []
    assert state["baseline"]["stats"][0] == 300 + 199 + 1


def test_a_series_below_zero_is_judged_through_a_long_gap():
    """A unit-free series around -1.2 with a gap of 99 buckets filled as zeros: a zero is
    far above its baseline, so the gap is judged, and the excess it builds fires there."""
    params = replace(BASE, seasonal=False, sustain_usd_per_month=0.0, min_excess_usd_per_hour=0.0)
    life = [(1, -1.0 - 0.1 * (m % 5)) for m in range(400)] + [(100, -1.0)]
    _, decisions = as_judging_every_bucket(params, life)
    assert [d.status for d in decisions][:1] == ["firing"]
    assert T0 + 400 * MINUTE <= decisions[0].starts_at < T0 + 499 * MINUTE  # in the gap


def test_a_long_gap_through_an_hour_of_the_day_below_zero_is_judged_there():
    """Seasonal, one hour of the day (01:00) below zero, the others above: a long gap that
    crosses 01:00 is an excess over that hour's baseline, judged and fired there."""
    params = replace(BASE, sustain_usd_per_month=0.0, min_excess_usd_per_hour=0.0)
    day: Life = [(1, -0.05 if 60 <= m < 120 else 0.05) for m in range(1440)]
    _, decisions = as_judging_every_bucket(params, day + [(200, 0.05)])
    assert [d.status for d in decisions][:1] == ["firing"]
    t0 = run(params, day, reference_update)[0]["last_t"]
    assert t0 + 60 * MINUTE < decisions[0].starts_at < t0 + 121 * MINUTE


def test_a_long_gap_too_long_for_the_level_closed_form_still_counts_every_bucket():
    """A level that follows within a minute: 1,000 quiet buckets are too many for the
    closed form (its weights, e^1000, overflow), so they are learnt one by one, every one
    of them."""
    params = replace(BASE, sustain_level_s=60.0)
    state, _ = as_judging_every_bucket(params, history(300) + [(1000, 0.03)])
    assert state["baseline"]["stats"][0] == 300 + 999 + 1


def test_a_day_long_gap_in_which_an_hour_of_the_day_comes_of_age_is_learnt_as_judged():
    """An hour (23:00) at $0.10, five minutes of 00:00 at $0.05, then a day without data
    (1,440 buckets, the most a gap replays): 00:00 is met twice, and its 10th bucket, in the
    gap, is the first judged on the hour's own baseline ($0.025, not the key's $0.089).
    With sums that remember the whole day the state shows which one it was."""
    params = replace(BASE, sustain_s=86_400.0, sustain_level_s=1e6)
    life: Life = [(1, 0.10)] * 60 + [(1, 0.05)] * 5 + [(1441, 0.05)]
    life[0] = (-60, 0.10)  # 23:00 the day before (T0 - 60 minutes) to 23:59, then 00:00
    as_judging_every_bucket(params, life)


# update_many's numpy path: which keys it may not judge together --------------------------
#
# update_many learns a key's bucket in its batch only when its numpy judging says the bucket
# breaches nothing; a key it flags is judged alone by update. A flag too many costs time, a
# flag too few loses a decision: these are keys it must flag.


def test_update_many_judges_a_spike_over_a_baseline_below_zero_as_update():
    """Sixteen unit-free series around -1.0 (the USD rules' floors at 0), every third
    jumping to +1.0 for 3 buckets: each jump is far above its baseline and fires,
    critical, as update fires it, and the batch learns every key as update does."""
    params = replace(SPIKE, warmup_s=600.0, seasonal=False, min_excess_usd_per_hour=0.0)
    rows = [[-1.0 - 0.01 * k - 0.1 * ((b + k) % 3) for b in range(60)] for k in range(16)]
    for k in range(0, 16, 3):
        rows[k][40:43] = [1.0] * 3
    decided = agree(params, rows)
    for k, decisions in enumerate(decided):
        expected = [("firing", "critical"), ("resolved", "critical")] if k % 3 == 0 else []
        assert [(d.status, d.severity) for d in decisions] == expected, k


def test_update_many_judges_a_lasting_excess_under_the_resolve_z_as_update():
    """The sustained rule asking for 1 sd (less than the 2 sd that make an excess count as
    building) and hardly any money (1.01x, no monthly floor): 16 keys (+-30 % noise) go
    from their level to 1.1x of it. Their lasting excess fires on the rule alone, at about
    1 sd, before it counts as building: judged alone, as update judges it, on the window's
    figures."""
    params = replace(SPIKE, warmup_s=600.0, seasonal=False, sustain_level_s=None, sustain_z=1.0)
    params = replace(params, sustain_margin=0.01, sustain_usd_per_month=0.0)

    def spend(k: int, b: int) -> float:
        return 0.01 * (k + 1) * (1 + 0.3 * ((b * 7 + k) % 3 - 1)) * (1.1 if b >= 60 else 1.0)

    rows = [[spend(k, b) for b in range(100)] for k in range(16)]
    for decisions in agree(params, rows):
        assert decisions[0].status == "firing"
        assert 1.0 <= decisions[0].values["sustained_z"] < params.resolve_z


def test_a_new_key_that_spends_once_then_goes_quiet_is_learnt_as_judged():
    """One bucket of $0.03 (its level's expectation still 0: there was no baseline to
    expect anything), then 199 quiet minutes: the first of them expects the baseline
    itself, not a busier level (spend over an expectation of 0 is no ratio)."""
    state, decisions = as_judging_every_bucket(BASE, [(0, 0.03), (200, 0.03)])
    assert decisions == []
    assert state["baseline"]["stats"][0] == 201


def test_a_long_gap_after_a_busier_spell_follows_the_level_from_its_first_bucket():
    """Three hours at $0.01, one at $0.02 (a busier level, followed), then 150 quiet
    minutes with sums that remember a day: the level's expectation before the gap's first
    bucket is what the busier hour left, and the state is as judging each bucket leaves it."""
    params = replace(BASE, sustain_s=86_400.0, sustain_level_s=10_800.0)
    as_judging_every_bucket(params, [(1, 0.01)] * 180 + [(1, 0.02)] * 60 + [(151, 0.01)])


# Short quiet gaps (learnt bucket by bucket) ------------------------------------------------


def test_a_short_quiet_gap_after_a_flat_history_counts_the_floor_of_the_sd():
    """A flat $0.05 a minute (sd 0), then 30 quiet minutes: each adds the floor of the
    baseline's sd (5 % of it) to the sustained rule's variance, as judging it would, so a
    later excess is measured against the same spread."""
    state, decisions = as_judging_every_bucket(BASE, history(300, flat=True) + [(31, 0.05)])
    assert decisions == []
    assert state["baseline"]["stats"][0] == 300 + 30 + 1


# update() judging one key ------------------------------------------------------------------


def test_a_lasting_excess_stays_open_while_its_window_holds_half_the_monthly_floor():
    """A $0.06/h baseline (where the 1.01x asks next to nothing), one bucket $0.10 over it,
    then calm: the window's excess ($0.29/h, decaying by DECAY a bucket) holds the alert
    open while it is worth at least half of $100 a month; the calm that resolves it starts
    at the first bucket under that, and the resolve comes after 15 buckets of flap damping."""
    params = replace(ONE, sustain_margin=0.01)
    base, residual, half = 1 / 1024, 0.1, 0.5 * 100 / 730
    last = max(k for k in range(100) if lasting_excess(residual) * DECAY**k >= half)
    assert last == 29
    decisions, _ = probe(DAY, base, [base + residual] + [base] * (last + 15), params)
    assert [(d.status, d.ends_at) for d in decisions] == [
        ("firing", None),
        ("resolved", at(DAY + last + 1)),
    ]
    assert decisions[1].values["sustained_excess_usd_per_hour"] < half


@pytest.mark.parametrize(("after", "resolves"), [(9.0, False), (9.5, True)])
def test_an_open_drop_is_held_only_under_the_resolve_margin_when_z_asks_nothing(after, resolves):
    """A drop to half of $10 for 3 buckets, then ``after``, with resolve_z 0: held open at
    or under 0.9x the baseline (10 % under it), calm at 0.95x, though still under it."""
    params = replace(DOWN, resolve_z=0.0)
    decisions, _ = probe(DAY, 10.0, [5.0] * 3 + [after] * 60, params)
    assert [d.status for d in decisions] == (["firing", "resolved"] if resolves else ["firing"])


def test_a_drop_is_learnt_clipped_at_3_sd_under_the_baseline():
    """Not seasonal, a baseline around $1.00 with sd $0.10, then 3 buckets of $0 (a drop):
    each is learnt as the baseline minus 3 sd ($0.70), so the baseline moves down by 0.3 of
    what learning $0 would take off it."""
    params = replace(DOWN, seasonal=False)
    state = SpendSpikeState.new(params)
    for i in range(DAY):
        assert spend_spike.update(state, at(i), MINUTE, 1.0 + 0.1 * (-1) ** i, params) == []
    mean = state.baseline.stats[1]
    assert state.baseline.stats[2] ** 0.5 == pytest.approx(0.1)
    decisions = []
    for i in range(DAY, DAY + 3):
        decisions += spend_spike.update(state, at(i), MINUTE, 0.0, params)
    assert [d.status for d in decisions] == ["firing"]
    # Each moves it by its weight (1/n, about 1/DAY) x 3 sd: 0.3 of the 1.0 that learning
    # $0 as it is would take off, 3 x 1.0 / DAY in all.
    assert mean - 3 * 0.35 / DAY < state.baseline.stats[1] < mean - 3 * 0.25 / DAY


def test_a_warm_keys_alert_is_named_spend_spike():
    """The alert layer routes and groups by the alert's name: a warm key's firing and
    resolve say spend_spike, as a warm-up alert does."""
    decisions, _ = probe(DAY, 1.0, [4.0] * 3 + [1.0] * 15)
    assert [(d.alertname, d.status) for d in decisions] == [
        ("spend_spike", "firing"),
        ("spend_spike", "resolved"),
    ]


def test_one_params_judges_keys_of_two_bucket_widths_as_each_alone():
    """The same parameters for a key in 60 s buckets and one in hourly buckets, called in
    turn for the same bucket starts: each decides and learns as it does on its own (the
    per-bucket numbers shared between keys are per width)."""
    params = replace(SPIKE, seasonal=False, absolute_usd_per_hour=30.0, consecutive=1)
    spends = [0.1, 0.1, 0.6, 0.6, 0.6, 0.1]  # $0.60 a minute is $36/h, a bucket an hour $0.60/h
    together = {60.0: SpendSpikeState.new(params), 3600.0: SpendSpikeState.new(params)}
    alone = {60.0: SpendSpikeState.new(params), 3600.0: SpendSpikeState.new(params)}
    decided: dict[float, list] = {60.0: [], 3600.0: []}
    for i, spend in enumerate(spends):
        t = at(0) + i * 3600.0
        for width, state in together.items():
            decided[width] += spend_spike.update(state, t, width, spend, params)
    for width, state in alone.items():
        expected = []
        for i, spend in enumerate(spends):
            expected += spend_spike.update(state, at(0) + i * 3600.0, width, spend, params)
        assert decided[width] == expected, width
        assert together[width].to_dict() == state.to_dict(), width
    assert [d.status for d in decided[60.0]][:1] == ["firing"] and decided[3600.0] == []


@pytest.mark.parametrize("batch", [False, True])
@pytest.mark.parametrize(("spend", "fires"), [(0.0, False), (0.01, True)])
def test_with_every_floor_at_zero_the_lasting_excess_needs_an_excess(spend, fires, batch):
    """sustain_z and sustain_usd_per_month 0 (both allowed): a key that spends nothing
    against a baseline of nothing has no lasting excess to report (it fired a $0 one);
    a cent a minute over that baseline does. By update and by update_many alike."""
    params = SpendSpikeParams(
        warmup_s=600.0, seasonal=False, sustain_z=0.0, sustain_usd_per_month=0.0
    )
    states = [SpendSpikeState.new(params) for _ in range(20)]
    fired = []
    for minute in range(30):
        amount = spend if minute >= 15 else 0.0
        t = minute * 60.0
        if batch:
            decided = spend_spike.update_many(states, t, 60.0, [amount] * 20, params)
            fired += [d for d in decided.get(0, []) if d.status == "firing"]
        else:
            decisions = spend_spike.update(states[0], t, 60.0, amount, params)
            fired += [d for d in decisions if d.status == "firing"]
    assert bool(fired) is fires
