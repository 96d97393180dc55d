"""A key's quiet gap is learnt without judging it, with the numbers judging it gives.

``spend_spike.update`` replays the buckets a key skipped as zero spend. While such a
bucket can't breach (no episode, up-only, the sustained rule's spent sum below zero or
its floor) it is only learnt: bucket by bucket by ``_learn_quiet`` for a stretch shorter
than ``LONG_QUIET``, with the same expressions, so the same single-precision state; at
once, in closed form, by ``_learn_quiet_span`` for a longer one, in double precision, so
the same state to single precision's rounding. The reference here judges and learns every
skipped bucket with ``_judge_and_learn``, as update did before: the same decisions, and
the state byte for byte after short gaps and within 1e-4 (relative) after long ones.
"""

from __future__ import annotations

import math
import random
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors import spend_spike
from detectors.decision import Decision
from detectors.spend_spike import SpendSpikeParams, SpendSpikeState

MINUTE = 60.0
T0 = 1_793_577_600.0  # 2026-11-02T00:00:00Z


def reference_update(
    state: SpendSpikeState, t: float, width: float, spend: float, params: SpendSpikeParams
) -> list[Decision]:
    """update() as it was: every skipped bucket judged and learnt on its own."""
    last_t = state.last_t
    if last_t is not None:
        if t <= last_t:
            return []
        gap = min(int(round((t - last_t) / width)) - 1, spend_spike.MAX_GAP_BUCKETS)
        decisions: list[Decision] = []
        for i in range(gap, 0, -1):
            bucket = spend_spike._bucket(t - i * width, width, params)
            decisions += spend_spike._judge_and_learn(state, 0.0, bucket)
        bucket = spend_spike._bucket(t, width, params)
        return decisions + spend_spike._judge_and_learn(state, spend, bucket)
    return spend_spike._judge_and_learn(state, spend, spend_spike._bucket(t, width, params))


BASE = SpendSpikeParams(warmup_s=3 * 3600.0, min_excess_usd_per_hour=0.5)
VARIANTS = {
    "defaults": SpendSpikeParams(),
    "short warm-up": BASE,
    "not seasonal": replace(BASE, seasonal=False),
    "no level": replace(BASE, sustain_level_s=None),
    "no sustained rule": replace(BASE, sustain_s=None),
    "absolute off": replace(BASE, absolute_usd_per_hour=None),
    "cheap absolute": replace(BASE, absolute_usd_per_hour=30.0, consecutive=1),
    "quick sums": replace(BASE, sustain_s=120.0, sustain_usd_per_month=1.0),
    # Sums that remember a whole day: every bucket of a long gap shows in the state.
    "long memories": replace(BASE, sustain_s=86_400.0, sustain_level_s=1e6),
}


# A key's life: (minutes since the last bucket, spend). Long and short gaps, quiet and
# busy stretches, spikes that open episodes the gaps then have to resolve.
def lives(longest: int) -> st.SearchStrategy[list[tuple[int, float]]]:
    gaps = [st.integers(1, 3), st.integers(4, min(200, longest))]
    if longest > 200:
        gaps.append(st.integers(1000, longest))
    return st.lists(
        st.tuples(
            st.one_of(*gaps),
            st.one_of(
                st.floats(0.0, 0.05),
                st.floats(0.05, 0.3),
                st.sampled_from([0.0, 1.0, 5.0]),
            ),
        ),
        min_size=1,
        max_size=120,
    )


def run(params: SpendSpikeParams, life: list[tuple[int, float]], update) -> tuple:
    state = SpendSpikeState.new(params)
    decisions: list[Decision] = []
    t = T0
    for minutes, spend in life:
        t += minutes * MINUTE
        decisions += update(state, t, MINUTE, spend, params)
    return readable(state), decisions


def readable(state: SpendSpikeState) -> dict:
    """``to_dict``, the baseline's array as a list of numbers (to_dict packs its bytes):
    ``close`` compares them to single precision's rounding."""
    data = state.to_dict()
    data["baseline"] = {**data["baseline"], "stats": state.baseline.stats.tolist()}
    return data


def history(busy: int, flat: bool = False) -> list[tuple[int, float]]:
    """Every minute first, so gaps come to a warm key with a baseline (a flat one: its
    spread is the 5 % floor's)."""
    return [(1, 0.05 if flat else 0.02 + 0.01 * (m % 7)) for m in range(busy)]


@settings(max_examples=60, deadline=None)
@given(
    variant=st.sampled_from(sorted(VARIANTS)),
    busy=st.integers(0, 2000),
    life=lives(spend_spike.LONG_QUIET - 1),
)
def test_a_short_quiet_gap_is_learnt_as_judging_every_bucket_would(variant, busy, life):
    params = VARIANTS[variant]
    assert run(params, history(busy) + life, spend_spike.update) == run(
        params, history(busy) + life, reference_update
    )


def close(new: object, old: object, rel: float = 1e-4) -> bool:
    """Equal, numbers within ``rel`` of each other (or both within 1e-9 of zero)."""
    if isinstance(new, dict) and isinstance(old, dict):
        return new.keys() == old.keys() and all(close(new[k], old[k], rel) for k in new)
    if isinstance(new, list | tuple) and isinstance(old, list | tuple):
        return len(new) == len(old) and all(close(a, b, rel) for a, b in zip(new, old, strict=True))
    if isinstance(new, float) and isinstance(old, float):
        return math.isclose(new, old, rel_tol=rel, abs_tol=1e-9)
    return new == old


def same_decisions(new: list[Decision], old: list[Decision]) -> bool:
    """The same transitions at the same times, their figures within 1e-4."""
    return len(new) == len(old) and all(
        (a.alertname, a.status, a.severity, a.starts_at, a.ends_at, a.notes)
        == (b.alertname, b.status, b.severity, b.starts_at, b.ends_at, b.notes)
        and close(dict(a.values), dict(b.values))
        for a, b in zip(new, old, strict=True)
    )


# derandomize: the examples are the same each run, so an example on a knife's edge of
# single precision can't make the suite flaky; `make fuzz` has no such limit.
@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    variant=st.sampled_from(sorted(VARIANTS)),
    busy=st.integers(0, 2000),
    flat=st.booleans(),
    life=lives(1600),
)
def test_a_long_quiet_gap_is_learnt_at_once_as_judging_every_bucket_would(
    variant, busy, flat, life
):
    params = VARIANTS[variant]
    new_state, new = run(params, history(busy, flat) + life, spend_spike.update)
    old_state, old = run(params, history(busy, flat) + life, reference_update)
    assert same_decisions(new, old)
    assert close(new_state, old_state)


def test_the_quiet_path_learns_most_of_a_long_gap():
    # It is there to be used: after a day of steady spend, 1,000 quiet minutes are learnt
    # by _learn_quiet, not judged one by one (the reference judges all of them).
    params = SpendSpikeParams()
    state = SpendSpikeState.new(params)
    for m in range(1440):
        spend_spike.update(state, T0 + m * MINUTE, MINUTE, 0.05, params)
    judged = []
    original = spend_spike._judge_and_learn

    def counting(state, spend, bucket):
        judged.append(bucket.t)
        return original(state, spend, bucket)

    spend_spike._judge_and_learn = counting
    try:
        spend_spike.update(state, T0 + 2440 * MINUTE, MINUTE, 0.05, params)
    finally:
        spend_spike._judge_and_learn = original
    assert len(judged) < 10  # the first skipped bucket or so, and the new one
    assert judged[-1] == T0 + 2440 * MINUTE


def gap_after_sums(
    params: SpendSpikeParams, spend: float | None, clipped: float, spent: float
) -> list[Decision]:
    """600 minutes of ``spend`` (0.02-0.04 when it is None), the sustained rule's sums then
    set to ``clipped`` and ``spent``, 99 quiet minutes and one of ``spend`` (0.02): the
    decisions, checked equal to the reference's, with the same state after."""
    new, reference = SpendSpikeState.new(params), SpendSpikeState.new(params)
    for state in (new, reference):
        for m in range(600):
            usd = 0.02 + 0.01 * (m % 3) if spend is None else spend
            spend_spike.update(state, T0 + m * MINUTE, MINUTE, usd, params)
        stats, end = state.baseline.stats, len(state.baseline.stats)
        stats[end - spend_spike._S_CLIPPED] = clipped
        stats[end - spend_spike._S_SPENT] = spent
    later, last = T0 + 700 * MINUTE, 0.02 if spend is None else spend
    fired = spend_spike.update(new, later, MINUTE, last, params)
    assert fired == reference_update(reference, later, MINUTE, last, params)
    assert new.to_dict() == reference.to_dict()
    return fired


def test_a_gap_that_starts_with_an_excess_building_is_judged_and_fires_as_before():
    # The sustained rule's sums as a lasting excess leaves them, the key quiet after it: the
    # first skipped buckets can still breach, so they are judged, not learnt quietly.
    params = replace(BASE, seasonal=False, consecutive=1)
    fired = gap_after_sums(params, None, clipped=5.0, spent=5.0)  # far above, for a while
    assert fired and fired[0].status == "firing" and fired[0].starts_at == T0 + 600 * MINUTE


def test_a_series_below_zero_is_judged_through_its_gaps():
    # Unit-free series may go below zero with gaps filled as zeros (skip_gaps off): a zero
    # is then above the baseline and may be building an excess, so it is judged.
    params = replace(BASE, seasonal=False, sustain_usd_per_month=0.0, min_excess_usd_per_hour=0.0)
    life = [(1, -1.0 - 0.1 * (m % 5)) for m in range(400)] + [(30, -1.0), (45, -1.2)]
    new, reference = run(params, life, spend_spike.update), run(params, life, reference_update)
    assert new == reference
    assert any(d.status == "firing" for d in reference[1])


def test_with_no_floor_a_spent_sum_at_zero_fires_nothing_after_a_gap():
    # With the sustained rule's floor at 0 a spent sum of exactly 0 is at the floor; the
    # gap is judged (only a sum strictly below the floor is taken for quiet), and even a
    # clipped sum far above the baseline fires nothing: a lasting excess must be one.
    params = replace(BASE, seasonal=False, consecutive=1, sustain_usd_per_month=0.0)
    assert gap_after_sums(params, 0.0, clipped=100.0, spent=0.0) == []
    fired = gap_after_sums(params, 0.0, clipped=100.0, spent=0.001)
    assert fired and fired[0].status == "firing" and fired[0].starts_at == T0 + 600 * MINUTE


def test_a_long_gap_after_a_busier_spell_expects_at_most_the_level_cap():
    # Five times the usual spend for 5 hours, worth too little to report: the level the
    # sustained rule follows is at its cap (2x) when the key goes quiet for 20 hours.
    params = replace(BASE, sustain_usd_per_month=1e6, min_excess_usd_per_hour=1e6)
    life = [(1, 0.01)] * 1500 + [(1, 0.05)] * 300 + [(1200, 0.01), (1, 0.01)]
    new_state, new = run(params, life, spend_spike.update)
    old_state, old = run(params, life, reference_update)
    assert same_decisions(new, old) and close(new_state, old_state)


# Many keys at once: update_many learns the gaps of every key that comes back in a bucket
# as rows of one matrix (_learn_quiet_rows), short gaps and long ones apart.
def fleet(seed: int, keys: int, entries: int) -> list[list[tuple[int, float]]]:
    """Each key's life: a day of history at its own spend, then gaps of every length
    (mostly short, some over LONG_QUIET, a few of most of a day) and spends that include
    spikes; keys start at different minutes so they come back in shared buckets and not."""
    rng = random.Random(seed)
    out = []
    for k in range(keys):
        usual = 0.01 + 0.005 * (k % 9)
        life = [(1 + (k % 3 == 0) * rng.randint(0, 1), usual * (1 + 0.3 * rng.random()))]
        life += [(1, usual * (1 + 0.3 * rng.random())) for _ in range(300 + 37 * k)]
        for _ in range(entries):
            roll = rng.random()
            gap = (
                rng.randint(1, 3)
                if roll < 0.35
                else rng.randint(4, 63)
                if roll < 0.7
                else rng.randint(64, 400)
                if roll < 0.93
                else rng.randint(1000, 1500)
            )
            spend = rng.choice([0.0, usual, usual * 1.2, usual * 8, 1.5, 5.0])
            life.append((gap, spend))
        out.append(life)
    return out


def run_fleet(params: SpendSpikeParams, lives: list[list[tuple[int, float]]], together: bool):
    """Every key's buckets in time order, all keys with a bucket at the same minute in one
    update_many call (``together``), or each key by the reference."""
    at: dict[float, list[tuple[int, float]]] = {}
    for k, life in enumerate(lives):
        t = T0
        for minutes, spend in life:
            t += minutes * MINUTE
            at.setdefault(t, []).append((k, spend))
    states = [SpendSpikeState.new(params) for _ in lives]
    decisions: list[list[Decision]] = [[] for _ in lives]
    alone = None if together else reference_update
    for t in sorted(at):
        keys = [k for k, _ in at[t]]
        spends = [spend for _, spend in at[t]]
        judge_bucket(states, keys, t, spends, params, decisions, alone)
    return [readable(s) for s in states], decisions


def judge_bucket(states, keys, t, spends, params, decisions, alone) -> None:
    """The bucket at ``t`` of ``keys``: together by update_many (``alone`` None), or each
    key by ``alone``; their decisions added to ``decisions``, by key."""
    if alone is None:
        decided = spend_spike.update_many([states[k] for k in keys], t, MINUTE, spends, params)
        for j, made in decided.items():
            decisions[keys[j]] += made
        return
    for k, spend in zip(keys, spends, strict=True):
        decisions[k] += alone(states[k], t, MINUTE, spend, params)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("seed", [1, 2])
def test_gaps_learnt_as_a_batch_decide_and_learn_as_judging_every_bucket(variant, seed):
    params = VARIANTS[variant]
    lives = fleet(seed, keys=40, entries=14)
    new_states, new = run_fleet(params, lives, together=True)
    old_states, old = run_fleet(params, lives, together=False)
    for k in range(len(lives)):
        assert same_decisions(new[k], old[k]), k
        assert close(new_states[k], old_states[k]), k
    if variant in ("short warm-up", "cheap absolute"):
        assert any(old), "the fleet's traffic makes decisions to compare"


def test_the_batch_learns_each_gap_as_update_learns_it_alone():
    # A key's row learns the same in a matrix of 30 keys' gaps of other lengths as alone
    # (update()'s _learn_quiet_span, a matrix of one): to double precision's rounding
    # before it is stored, so within 1e-6 after.
    params = SpendSpikeParams()
    states = []
    for k in range(30):
        state = SpendSpikeState.new(params)
        for m in range(200 + 50 * k):
            spend_spike.update(state, T0 + m * MINUTE, MINUTE, 0.02 + 0.01 * (m * k % 7), params)
        states.append(state)
    t = T0 + 3000 * MINUTE
    gaps = [64 + 47 * k for k in range(30)]
    for state, gap in zip(states, gaps, strict=True):
        state.last_t = t - (gap + 1) * MINUTE
    alone = [SpendSpikeState.from_dict(s.to_dict()) for s in states]
    size = len(states[0].baseline.stats)
    held = np.frombuffer(
        bytearray(b"".join(s.baseline.stats for s in states)), dtype=np.float32
    ).reshape(len(states), size)
    learnt = spend_spike._learn_quiet_rows(held, np.array(gaps), t, MINUTE, params, True)
    assert learnt.all()
    for row, (state, gap) in enumerate(zip(alone, gaps, strict=True)):
        assert spend_spike._learn_quiet_span(state, t, gap, MINUTE, params) == gap
        expected = np.frombuffer(state.baseline.stats, dtype=np.float32)
        np.testing.assert_allclose(held[row], expected, rtol=1e-6, atol=1e-12)
