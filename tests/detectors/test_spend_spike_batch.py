"""update_many is update for many keys at once: whatever the traffic and the mode, the
keys judged together end with the decisions and the state they get one by one. Its numpy
path judges ordinary buckets itself; the series mode (both ways, gaps skipped) goes key by
key. Traffic: per key a level, noise, a spike, a lasting excess under the $3/h floor, a
drop, quiet stretches (gaps) and a day of history first. A gap shorter than BATCH_QUIET
is learnt as update() learns it, exactly; a longer one in closed form, in a matrix of
every key back in that bucket: the same decisions, the state to single precision's
rounding."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from detectors import spend_spike
from detectors.spend_spike import SERIES_MODE, SpendSpikeParams, SpendSpikeState
from tests.detectors import test_spend_spike_quiet_gaps as quiet_gaps
from tests.detectors.series import DAY_MINUTES, MINUTE, START
from tests.detectors.test_spend_spike_quiet_gaps import close, same_decisions

KEYS = 20  # at least _MIN_BATCH: the numpy path runs
MINUTES = DAY_MINUTES + 300


def traffic(seed: int, gap: int = 15) -> np.ndarray:
    """USD per minute, keys x minutes; NaN where a key has no bucket (a gap)."""
    rng = np.random.default_rng(seed)
    level = rng.uniform(0.002, 0.2, size=(KEYS, 1))
    spend = level * rng.gamma(4.0, 0.25, size=(KEYS, MINUTES))
    spend[rng.random((KEYS, MINUTES)) < 0.2] = 0.0  # idle minutes
    for k in range(KEYS):
        at = DAY_MINUTES + int(rng.integers(0, 200))
        kind = k % 4
        if kind == 0:  # a spike
            spend[k, at : at + 5] *= 30.0
        elif kind == 1:  # a lasting excess, 3x for 60 minutes
            spend[k, at : at + 60] *= 3.0
        elif kind == 2:  # a drop
            spend[k, at : at + 40] *= 0.05
        else:  # a gap of missing buckets
            spend[k, at : at + gap] = np.nan
    return spend


def run(params: SpendSpikeParams, spend: np.ndarray, together: bool):
    states = [SpendSpikeState.new(params) for _ in range(KEYS)]
    decided: list[list] = [[] for _ in range(KEYS)]
    alone = None if together else spend_spike.update
    for minute in range(MINUTES):
        t = START + minute * MINUTE
        keys = [k for k in range(KEYS) if not np.isnan(spend[k, minute])]
        values = [float(spend[k, minute]) for k in keys]
        quiet_gaps.judge_bucket(states, keys, t, values, params, decided, alone)
    return decided, states


MODES = {
    "usd defaults": SpendSpikeParams(),
    "usd, no floor": SpendSpikeParams(min_excess_usd_per_hour=0.0),
    "usd, not seasonal": SpendSpikeParams(seasonal=False, min_excess_usd_per_hour=0.5),
    "series mode": replace(SpendSpikeParams(), **SERIES_MODE),
    "both ways, zeros judged": SpendSpikeParams(
        direction="both", min_z=1.5, min_excess_usd_per_hour=0.5
    ),
}


@pytest.mark.parametrize("gap", [spend_spike.BATCH_QUIET - 1, 15])
@pytest.mark.parametrize("seed", [1])
@pytest.mark.parametrize("mode", MODES)
def test_update_many_decides_and_learns_as_update_one_key_at_a_time(mode, seed, gap):
    spend = traffic(seed, gap)
    together, states_together = run(MODES[mode], spend, together=True)
    alone, states_alone = run(MODES[mode], spend, together=False)
    if gap < spend_spike.BATCH_QUIET:
        assert together == alone
        assert [s.to_dict() for s in states_together] == [s.to_dict() for s in states_alone]
    else:
        assert all(same_decisions(a, b) for a, b in zip(together, alone, strict=True))
        assert close(readable(states_together), readable(states_alone))
    if mode == "usd, no floor":  # the traffic does make decisions to compare
        assert sum(len(d) for d in alone) > 0


def readable(states: list[SpendSpikeState]) -> list[dict]:
    return [quiet_gaps.readable(state) for state in states]


def test_a_gap_of_8_buckets_is_learnt_in_the_batch_and_one_of_7_alone(monkeypatch):
    # The README's number: update_many learns gaps of 8 buckets or more as a matrix.
    batched: list[int] = []
    learn_rows = spend_spike._learn_quiet_rows

    def spy(stats, gaps, *args):
        batched.extend(gaps.tolist())
        return learn_rows(stats, gaps, *args)

    monkeypatch.setattr(spend_spike, "_learn_quiet_rows", spy)
    params = SpendSpikeParams()
    states = [SpendSpikeState.new(params) for _ in range(KEYS)]
    for minute in range(120):
        t = START + minute * MINUTE
        spend_spike.update_many(states, t, MINUTE, [0.05] * KEYS, params)
    t = START + 119 * MINUTE
    skipped = {0: 7, 1: 8}  # key: buckets without a call
    for key, gap in skipped.items():
        states[key].last_t = t - gap * MINUTE
    spend_spike.update_many(states, t + MINUTE, MINUTE, [0.05] * KEYS, params)
    assert batched == [8]
