"""spend_spike's judging pinned on both sides of its rules, with the figures of its
decisions computed by hand: what a firing, resolving and warm-up decision says, where a
spike's sums are cleared, the hour-of-day profile's 10 buckets, the baseline's memory,
the rules of a drop (direction down or both), the sustained rule's own episodes and the
figures it reports, and update_many's choice of which keys it may learn in one batch.

Histories are flat, as in test_readme_numbers: a flat history learns a baseline that is an
exact number with a standard deviation of 0 (floored at 5 % of the baseline in ``z``), so
the figures of a decision can be written down from the rules.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from detectors import spend_spike
from detectors.decision import Decision
from detectors.spend_spike import RECENT, SpendSpikeParams, SpendSpikeState
from tests.detectors.series import DAY_MINUTES, MINUTE, START
from tests.detectors.test_readme_numbers import BATCH, exactly, flat, judge

DAY = DAY_MINUTES
PER_HOUR = 3600.0 / MINUTE
SPIKE = SpendSpikeParams()
BOTH = ["update", "update_many"]
# Offsets of the sustained rule's sums from the end of the state's array (the layout the
# module documents): the clipped excess, its variance, the excess as spent, the level's
# spend and what the baseline expected of it.
S_CLIPPED, S_VAR, S_SPENT, L_SPENT, L_EXPECTED = (RECENT + i for i in range(5, 0, -1))


def states(
    history: int, base: float, params: SpendSpikeParams, keys: int = 1, width: float = MINUTE
) -> list[SpendSpikeState]:
    """``keys`` copies of a key after ``history`` buckets of ``base`` USD from START."""
    learnt = flat(history, base, params, width)
    return [SpendSpikeState.from_dict(learnt) for _ in range(keys)]


def probe(
    history: int,
    base: float,
    spends: list[float],
    params: SpendSpikeParams = SPIKE,
    how: str = "update",
    width: float = MINUTE,
) -> tuple[list[Decision], SpendSpikeState]:
    """A flat history, then ``spends`` bucket after bucket: the decisions and the state.
    ``how``: judged by update for one key, or by update_many for BATCH identical keys (its
    numpy path), which must agree with each other."""
    batch = how == "update_many"
    group = states(history, base, params, BATCH if batch else 1, width)
    decisions = judge(group, history, spends, params, batch, width)
    assert all(s.to_dict() == group[0].to_dict() for s in group)
    return decisions, group[0]


def tail(state: SpendSpikeState, offset: int) -> float:
    stats = state.baseline.stats.tolist()
    return stats[len(stats) - offset]


def at(i: int) -> float:
    """Start of bucket ``i`` (one-minute buckets from START)."""
    return START + i * MINUTE


# The figures of a decision --------------------------------------------------------------


@pytest.mark.parametrize("how", BOTH)
def test_a_firing_spike_reports_its_figures_as_the_rules_compute_them(how):
    """A day of $1.00 a minute, then $4.00 for 3 minutes. Breaching buckets are learnt
    clipped at baseline + 3 sd (sd 0), so the 3rd is judged against the same $1.00:
    ratio 4, z = 3 / (5 % of 1.00) = 60, excess 3 x 60 = $180/h, critical (>= 3x and
    >= $20/h), threshold 1.00 x 1.2, starting at the first of the 3."""
    decisions, state = probe(DAY, 1.0, [4.0] * 3, how=how)
    assert [(d.status, d.severity, d.starts_at, d.ends_at) for d in decisions] == [
        ("firing", "critical", at(DAY), None)
    ]
    assert decisions[0].values == {
        "observed": 4.0,
        "baseline": 1.0,
        "baseline_sd": 0.0,
        "ratio": 4.0,
        "z": 3.0 / (0.05 * 1.0),
        "threshold": 1.0 * 1.2,
        "money_at_risk_usd_per_hour": 3.0 * PER_HOUR,
        "bucket_s": 60.0,
    }
    assert state.episode is not None and state.episode.firing and not state.slow
    assert state.baseline.stats.tolist()[1] == 1.0  # the spike was learnt clipped


def test_a_resolving_spike_reports_the_calm_bucket_and_clears_the_spike_from_its_sums():
    """After the spike, calm at the baseline: 5 calm buckets resolve it, held by flap
    damping for 15 buckets (900 s) from the start of the calm, which is where it ends. The
    resolve carries the 15th calm bucket's figures (ratio 1, z 0, no money at risk). A
    spike's alert that is over leaves no excess in the sustained rule's sums: the clipped
    and spent sums are 0 (the variance sum is not an excess and is kept)."""
    decisions, state = probe(DAY, 1.0, [4.0] * 3 + [1.0] * 15)
    assert [(d.status, d.severity, d.starts_at, d.ends_at) for d in decisions] == [
        ("firing", "critical", at(DAY), None),
        ("resolved", "critical", at(DAY), at(DAY + 3)),
    ]
    assert decisions[1].values == {
        "observed": 1.0,
        "baseline": 1.0,
        "baseline_sd": 0.0,
        "ratio": 1.0,
        "z": 0.0,
        "threshold": 1.2,
        "money_at_risk_usd_per_hour": 0.0,
        "bucket_s": 60.0,
    }
    assert state.episode is None and not state.slow
    assert tail(state, S_CLIPPED) == 0.0 and tail(state, S_SPENT) == 0.0
    assert tail(state, S_VAR) > 0.0
    # 14 calm buckets are not enough: the resolve waits for the 15th.
    held, state = probe(DAY, 1.0, [4.0] * 3 + [1.0] * 14)
    assert [d.status for d in held] == ["firing"]
    assert tail(state, S_CLIPPED) != 0.0 and tail(state, S_SPENT) != 0.0


def test_a_warm_up_decision_reports_the_limit_and_the_history():
    """During warm-up only the absolute limit fires: the figures are what was spent
    against it ($1.00 a minute is $60/h, the limit's $60/h is $1.00 a bucket), all of it
    at risk, and how far the key is from a baseline (history counts this bucket)."""
    params = replace(SPIKE, absolute_usd_per_hour=60.0, consecutive=1, calm_buckets=1)
    params = replace(params, rearm_s=0.0)
    state = SpendSpikeState.new(params)
    out = []
    for i, spend in enumerate([0.5, 0.5, 1.0, 0.25]):
        out += spend_spike.update(state, at(i), MINUTE, spend, params)
    assert [(d.status, d.severity, d.starts_at, d.ends_at) for d in out] == [
        ("firing", "critical", at(2), None),
        ("resolved", "critical", at(2), at(3)),
    ]
    assert out[0].values == {
        "observed": 1.0,
        "threshold": 1.0,
        "absolute_usd_per_hour": 60.0,
        "money_at_risk_usd_per_hour": 60.0,
        "history_s": 180.0,
        "warmup_s": 86_400.0,
        "bucket_s": 60.0,
    }
    assert out[1].values == {
        "observed": 0.25,
        "threshold": 1.0,
        "absolute_usd_per_hour": 60.0,
        "money_at_risk_usd_per_hour": 15.0,
        "history_s": 240.0,
        "warmup_s": 86_400.0,
        "bucket_s": 60.0,
    }


# update_many against update ---------------------------------------------------------------


def agree(params: SpendSpikeParams, spends: list[list[float]], width: float = MINUTE):
    """Keys x buckets of spend (NaN: no call) judged by update_many and by update one key
    at a time: the same decisions for the same keys and the same states, or the batch is
    wrong. Returns the decisions, key by key."""
    keys = len(spends)
    together = [SpendSpikeState.new(params) for _ in range(keys)]
    alone = [SpendSpikeState.new(params) for _ in range(keys)]
    decided: list[list[Decision]] = [[] for _ in range(keys)]
    for b in range(len(spends[0])):
        t = START + b * width
        called = [k for k in range(keys) if not math.isnan(spends[k][b])]
        want = {}
        for k in called:
            if decisions := spend_spike.update(alone[k], t, width, spends[k][b], params):
                want[k] = decisions
                decided[k] += decisions
        got = spend_spike.update_many(
            [together[k] for k in called], t, width, [spends[k][b] for k in called], params
        )
        assert {called[j]: d for j, d in got.items()} == want, b
    assert [s.to_dict() for s in together] == [s.to_dict() for s in alone]
    return decided


def excesses(
    keys: int,
    buckets: int,
    history: int,
    length: int,
    scale: float = 0.01,
    step: float = 0.05,
    noise: float = 0.3,
) -> list[list[float]]:
    """Per key a level (``scale`` x its number) with +-``noise`` (a share), then from
    ``history`` an excess of 1x, 1 + ``step``, ... (by key) for ``length`` buckets; every
    5th key spikes 10x for 3 buckets instead, and every 7th skips 4 buckets (a gap)
    before its excess."""
    out = []
    for k in range(keys):
        base = scale * (k + 1)
        row = [base * (1 + noise * ((b * 7 + k) % 3 - 1)) for b in range(buckets)]
        for b in range(history, min(buckets, history + length)):
            row[b] *= 1 + step * k
        if k % 5 == 4:
            row[history : history + length] = [base * (1 + 0.1 * (b % 3)) for b in range(length)]
            row[history : history + 3] = [10 * base] * 3
        if k % 7 == 6:
            row[history - 4 : history] = [math.nan] * 4
        out.append(row)
    return out


# The hour-of-day profile and the baseline's memory ---------------------------------------


def hours(first: list[float], second: list[float], params: SpendSpikeParams) -> SpendSpikeState:
    """A key that spent ``first`` in hour 0 (one a minute from START) and ``second`` in
    the first minutes of hour 1."""
    state = SpendSpikeState.new(params)
    for i, spend in enumerate(first + second):
        minute = i if i < len(first) else 60 + i - len(first)
        assert spend_spike.update(state, at(minute), MINUTE, spend, params) == []
    return state


@pytest.mark.parametrize("how", BOTH)
@pytest.mark.parametrize(("seen", "fires"), [(10, True), (9, False)])
def test_an_hour_of_the_day_is_judged_on_its_own_once_it_has_10_buckets(seen, fires, how):
    """Hour 0 at $2.00 a minute, hour 1 at $1.00. The 1st minute after ``seen`` minutes of
    hour 1 at $3.00: with 10 of them the hour's own baseline ($1.00, sd 0) is used, 3x and
    $120/h over it, critical; with 9 the key's whole history is (about $1.87, sd about
    0.34: z under 5), it does not. Warm-up ends at this bucket."""
    params = replace(SPIKE, warmup_s=(60 + seen) * MINUTE, consecutive=1)
    group = [hours([2.0] * 60, [1.0] * seen, params) for _ in range(BATCH)]
    t = at(60 + seen)
    if how == "update_many":
        decided = spend_spike.update_many(group, t, MINUTE, [3.0] * BATCH, params)
        decisions = decided.get(0, [])
        assert all(decided.get(k, []) == decisions for k in range(BATCH))
    else:
        decisions = spend_spike.update(group[0], t, MINUTE, 3.0, params)
    if fires:
        assert [(d.status, d.severity, d.starts_at) for d in decisions] == [
            ("firing", "critical", t)
        ]
        values = decisions[0].values
        assert (values["baseline"], values["baseline_sd"], values["ratio"]) == (1.0, 0.0, 3.0)
    else:
        assert decisions == []
        mean = (60 * 2.0 + seen * 1.0) / (60 + seen)  # every bucket at 1/n: the plain mean
        assert group[0].baseline.stats.tolist()[1] == pytest.approx(
            (mean * (60 + seen) + 3.0) / (61 + seen), rel=1e-6
        )


@pytest.mark.parametrize(
    ("changes", "width", "alpha"),
    [
        # 24 buckets a day (hourly, not seasonal), 1 day: 1/24 per bucket
        pytest.param({"seasonal": False, "baseline_days": 1.0}, 3600.0, 1 / 24, id="flat 1/24"),
        # seasonal: each hour of the day sees 1 bucket a day; 24 days: 1/24
        pytest.param({"baseline_days": 24.0}, 3600.0, 1 / 24, id="seasonal 1/24"),
        # under one bucket of memory: each bucket replaces the baseline (weight 1)
        pytest.param({"seasonal": False, "baseline_days": 1 / 48}, 3600.0, 1.0, id="weight 1"),
        # a day of 60 s buckets, seasonal (60 an hour), 3 days: 1/180
        pytest.param({}, 60.0, 1 / 180, id="defaults 1/180"),
    ],
)
def test_the_baseline_remembers_baseline_days(changes, width, alpha):
    """Each learnt bucket moves the mean by max(alpha, 1/n) of its difference, alpha = 1 /
    (buckets a day, per hour of the day if seasonal, x baseline_days), at most 1. After
    200 buckets at $0 (n past 1/alpha), one at $24 moves the mean to 24 x alpha.
    (Warm-up is off the table: nothing is judged, everything is learnt as it is.)"""
    params = replace(SPIKE, warmup_s=1e9, absolute_usd_per_hour=None, sustain_s=None)
    params = replace(params, **changes)
    state = SpendSpikeState.new(params)
    for i in range(200):
        spend_spike.update(state, START + i * width, width, 0.0, params)
    spend_spike.update(state, START + 200 * width, width, 24.0, params)
    stats = state.baseline.stats.tolist()
    assert stats[:2] == [201.0, pytest.approx(24.0 * alpha, rel=1e-6)]
    if params.seasonal:  # the hour's own mean: its count is 201 / 24 buckets, 1/n
        slot = 3 + 3 * int((200 * width) // 3600 % 24)
        count = sum(1 for i in range(201) if int((i * width) // 3600) % 24 == slot // 3 - 1)
        assert stats[slot : slot + 3 : 2] == [pytest.approx(24.0 / count, rel=1e-6), count]


# A drop (direction down, or both) ----------------------------------------------------------

DOWN = replace(SPIKE, direction="down")
# $0.0625 a minute: $3/h under it (the floor) is $0.0125, where the excess decides.
SIXTEENTH = 1 / 16


def below(base: float, usd_per_hour: float) -> float:
    """Spend per bucket exactly ``usd_per_hour`` under ``base`` (by the detector's sums)."""
    return exactly(lambda s: (base - s) * PER_HOUR, usd_per_hour, base - usd_per_hour / PER_HOUR)


DROP_CASES = [
    # (params changed, base, the drop's 3 buckets, what fires)
    # z: (s - 1) / (5 % of 1) <= -5 at s = 0.75 (ratio 0.75 <= 0.8, $15/h under)
    pytest.param({}, 1.0, 0.75, [("firing", "warning")], id="-5 sd: 0.75 fires"),
    pytest.param({}, 1.0, 0.7501, [], id="-5 sd: 0.7501 does not"),
    # ratio: s <= 1 x (2 - 1.2) = 0.8 when z asks nothing
    pytest.param({"min_z": 0.0}, 1.0, 0.8, [("firing", "warning")], id="0.8x: 0.8 fires"),
    pytest.param({"min_z": 0.0}, 1.0, 0.81, [], id="0.8x: 0.81 does not"),
    # the $3/h floor under the baseline
    pytest.param(
        {"min_z": 0.0}, SIXTEENTH, below(SIXTEENTH, 3.0), [("firing", "warning")], id="-$3/h"
    ),
    pytest.param({"min_z": 0.0}, SIXTEENTH, below(SIXTEENTH, 2.9), [], id="-$2.90/h does not"),
    # critical: s x 3 <= baseline and $20/h under it
    pytest.param({}, 1.0, 1 / 3, [("firing", "critical")], id="critical: a third"),
    pytest.param({}, 1.0, 0.34, [("firing", "warning")], id="critical: 0.34 warns"),
    # (at $0.375, a third is $0.125: the $20/h, to $0.0417, decides)
    pytest.param({}, 0.375, below(0.375, 20.0), [("firing", "critical")], id="critical: -$20/h"),
    pytest.param({}, 0.375, below(0.375, 19.9), [("firing", "warning")], id="-$19.90/h warns"),
    # up-only (the default) never fires on a drop; both ways does
    pytest.param({"direction": "up"}, 1.0, 0.0, [], id="up: a drop to 0 does not"),
    pytest.param({"direction": "both"}, 1.0, 0.75, [("firing", "warning")], id="both: 0.75"),
]


@pytest.mark.parametrize(("changes", "base", "drop", "expected"), DROP_CASES)
def test_a_drop_fires_on_its_rules(changes, base, drop, expected):
    """direction down: a bucket breaches at or under baseline x (2 - 1.2), 5 sd and $3/h
    under it (the up rules mirrored); critical at a third of it and $20/h under it."""
    params = replace(DOWN, **changes)
    decisions, state = probe(DAY, base, [drop] * 3, params)
    assert [(d.status, d.severity) for d in decisions] == expected
    if expected:
        d = decisions[0]
        assert d.starts_at == at(DAY)
        assert d.values["direction"] == -1.0
        assert d.values["money_at_risk_usd_per_hour"] == 0.0  # nothing is spent too much
        assert d.values["z"] == (drop - base) / (0.05 * base)
        # A drop is learnt clipped (at baseline - 3 sd, sd 0): the baseline stays.
        assert state.baseline.stats.tolist()[1:3] == [base, 0.0]


@pytest.mark.parametrize(
    ("after", "calm_from"),
    [
        # Held open at or under baseline x (1 - 0.1) and 2 sd: at $9 of a $10 baseline z
        # is exactly -2 (at 0.9 of $1, 0.9 - 1.0 is a hair under 0.1)
        pytest.param(9.0, None, id="0.9x holds"),
        pytest.param(9.01, 0, id="0.901x resolves"),
    ],
)
def test_an_open_drop_stays_open_under_the_resolve_margin(after, calm_from):
    """A drop to half of $10 for 3 buckets, then ``after`` for an hour: at $9 (10 % and 2 sd
    under, $60/h, over half the $3/h floor) it stays open; at $9.01 the calm starts at
    once. The resolve says the calm bucket went down (direction -1)."""
    decisions, state = probe(DAY, 10.0, [5.0] * 3 + [after] * 60, DOWN)
    assert decisions[0].status == "firing"
    if calm_from is None:
        assert [d.status for d in decisions] == ["firing"]
        return
    assert [(d.status, d.ends_at) for d in decisions] == [
        ("firing", None),
        ("resolved", at(DAY + 3 + calm_from)),
    ]
    assert decisions[1].values["direction"] == -1.0


def test_a_drop_needs_half_the_floor_to_stay_open():
    """Under the margin and 2 sd, but $1.40/h under a $0.0625 baseline (under half of
    $3/h): calm; $1.50/h: held."""
    params = replace(DOWN, min_z=0.0)
    for usd, resolves in [(1.5, False), (1.4, True)]:
        after = below(SIXTEENTH, usd)
        decisions, _ = probe(DAY, SIXTEENTH, [0.0] * 3 + [after] * 60, params)
        assert [d.status for d in decisions] == (
            ["firing", "resolved"] if resolves else ["firing"]
        ), usd


def test_both_ways_a_spike_says_up_and_an_ordinary_dip_is_learnt_as_it_is():
    """Two-sided, a spike's figures say direction +1, also on a calm bucket at the
    baseline (spend >= baseline). A dip that breaches nothing (0.9: 2 sd) is learnt as it
    is, 1/180 of its difference (not clipped)."""
    params = replace(SPIKE, direction="both", rearm_s=0.0)
    decisions, _ = probe(DAY, 1.0, [4.0] * 3 + [1.0] * 5, params)
    assert [(d.status, d.values["direction"]) for d in decisions] == [
        ("firing", 1.0),
        ("resolved", 1.0),
    ]
    decisions, state = probe(DAY, 1.0, [0.9], params)
    assert decisions == []
    assert state.baseline.stats.tolist()[1] == pytest.approx(1.0 - 0.1 / 180, rel=1e-7)


AGREE_CASES = [
    # (params, width, history buckets, scale, step, noise, a lasting excess fires?)
    pytest.param(
        replace(SPIKE, warmup_s=600.0, seasonal=False, sustain_level_s=None),
        MINUTE,
        60,
        0.01,
        0.055,
        0.3,
        True,
        id="not seasonal, warm after 10 minutes",
    ),
    # Warm before an hour of the day has 10 buckets: judged on the key's whole history.
    pytest.param(
        replace(SPIKE, warmup_s=600.0, sustain_level_s=None),
        MINUTE,
        15,
        0.01,
        0.055,
        0.3,
        False,
        id="young hours",
    ),
    pytest.param(
        replace(SPIKE, warmup_s=600.0), MINUTE, 120, 0.01, 0.04, 0.2, False, id="level followed"
    ),
    # Hourly buckets: every hour of the day has a bucket a day, warm after a day.
    pytest.param(
        replace(SPIKE, sustain_s=7200.0, baseline_days=30.0, sustain_level_s=None),
        3600.0,
        30,
        1.0,
        0.055,
        0.3,
        False,
        id="hourly",
    ),
]


@pytest.mark.parametrize(
    ("params", "width", "history", "scale", "step", "noise", "lasting"), AGREE_CASES
)
def test_update_many_decides_and_learns_as_update(
    params, width, history, scale, step, noise, lasting
):
    """update_many's numpy path is update for the keys it judges together: keys warm
    before their hour of the day has 10 buckets, keys with a lasting excess building (learnt
    at the long-run weight, so judged alone), spikes, gaps, hourly buckets."""
    spends = excesses(20, history + 80, history, 40, scale, step, noise)
    decided = agree(params, spends, width)
    assert decided[4] and decided[4][0].severity == "critical"  # a spike
    slow = [d for ds in decided for d in ds if "sustained_z" in d.values]
    assert bool(slow) is lasting


@pytest.mark.parametrize("how", BOTH)
@pytest.mark.parametrize("sustain_s", [None, 1200.0])
def test_a_key_that_spent_nothing_fires_on_any_spend_worth_the_floor(how, sustain_s):
    """A day of $0 learns a baseline of $0: any spend is infinitely many times it (reported
    as ratio 0, not a number to print), z is the spend over the 1e-9 floor of the sd, and
    $0.50 a minute is $30/h over it: critical. The spike is learnt clipped (the baseline
    stays $0); calm at $0 resolves after 15 buckets of flap damping, with ratio 1 (nothing
    over nothing)."""
    params = replace(SPIKE, sustain_s=sustain_s)
    decisions, state = probe(DAY, 0.0, [0.5] * 3 + [0.0] * 15, params, how)
    assert [(d.status, d.severity, d.starts_at, d.ends_at) for d in decisions] == [
        ("firing", "critical", at(DAY), None),
        ("resolved", "critical", at(DAY), at(DAY + 3)),
    ]
    common = {"baseline": 0.0, "baseline_sd": 0.0, "threshold": 0.0, "bucket_s": 60.0}
    assert decisions[0].values == {
        **common,
        "observed": 0.5,
        "ratio": 0.0,
        "z": 0.5 / 1e-9,
        "money_at_risk_usd_per_hour": 30.0,
    }
    assert decisions[1].values == {
        **common,
        "observed": 0.0,
        "ratio": 1.0,
        "z": 0.0,
        "money_at_risk_usd_per_hour": 0.0,
    }
    assert state.baseline.stats.tolist()[1:3] == [0.0, 0.0]


# The sustained rule, one bucket at a time ----------------------------------------------------

# The fast rule off and clipping out of the way (clip_z 1000: a bucket counts in full; the
# baseline's sd is 0, so the breaching bucket is still learnt at the baseline), one bucket
# to fire, the level not followed (it would expect a little more after the excess): the
# sums are written down from the rule.
ONE = replace(
    SPIKE, min_excess_usd_per_hour=1e9, clip_z=1000.0, consecutive=1, sustain_level_s=None
)
DECAY = math.exp(-MINUTE / 1200.0)  # the sums' weight per bucket (sustain_s 1,200 s)


def lasting_z(residual: float, base: float, samples: float) -> float:
    """The sustained z of one bucket ``residual`` over a flat baseline after a day: the
    clipped sum is the residual; its variance is the steady sum of (5 % of the baseline)^2
    per bucket, plus the baseline mean's error, (sum of weights)^2 sd^2 / samples."""
    sd = 0.05 * base
    return residual / math.sqrt(sd * sd / (1 - DECAY**2) + sd * sd / (1 - DECAY) ** 2 / samples)


def lasting_excess(residual: float) -> float:
    """USD/h of one bucket's residual in the spent sum: its EW mean x buckets an hour."""
    return residual * (1 - DECAY) * PER_HOUR


def test_a_lasting_excess_reports_the_figures_of_its_window():
    """$12 a minute over $1 (an hour of the day seen 60 times: the error of its mean counts
    with 60 samples): the window's z and excess by hand, the money at risk the window's,
    critical as a spike of 12x would be, and it is the sustained rule's own episode."""
    decisions, state = probe(DAY, 1.0, [12.0], ONE)
    assert [(d.status, d.severity, d.starts_at) for d in decisions] == [
        ("firing", "critical", at(DAY))
    ]
    values = dict(decisions[0].values)
    assert values.pop("sustained_z") == pytest.approx(lasting_z(11.0, 1.0, 60), rel=1e-5)
    excess = lasting_excess(11.0)
    assert values.pop("sustained_excess_usd_per_hour") == pytest.approx(excess, rel=1e-6)
    assert values.pop("money_at_risk_usd_per_hour") == pytest.approx(excess, rel=1e-6)
    assert values == {
        "observed": 12.0,
        "baseline": 1.0,
        "baseline_sd": 0.0,
        "ratio": 12.0,
        "z": (12.0 - 1.0) / (0.05 * 1.0),
        "threshold": 1.2,
        "bucket_s": 60.0,
        "sustain_s": 1200.0,
    }
    assert state.slow and state.episode is not None and state.episode.firing
    assert state.baseline.stats.tolist()[1:3] == [1.0, 0.0]


# (2 - alpha) / alpha: the most samples an EW mean stands for; 19 at alpha 0.1 (a flat
# baseline of 1/144 day of one-minute buckets: 10 buckets).
SHORT_MEMORY = replace(ONE, seasonal=False, baseline_days=1 / 144)
LASTING_CASES = [
    # (params, base, residual of the bucket, fires): each floor on both sides
    # 5 sd, the mean's error counted with the hour's 60 buckets (the 1.5x asked little)
    *[
        pytest.param(
            replace(ONE, sustain_margin=0.01),
            1.0,
            5.0 * 1.0 / lasting_z(1.0, 1.0, 60) * f,
            f > 1,
            id=f"5 sd, 60 samples x{f}",
        )
        for f in (1.01, 0.99)
    ],
    # ... and with the 19 an EW mean of alpha 0.1 stands for (not its 1,440 buckets)
    *[
        pytest.param(
            replace(SHORT_MEMORY, sustain_margin=0.01),
            1.0,
            5.0 * 1.0 / lasting_z(1.0, 1.0, 19) * f,
            f > 1,
            id=f"5 sd, 19 samples x{f}",
        )
        for f in (1.01, 0.99)
    ],
    # 1.5x: the window's excess at least half the baseline, per hour
    *[
        pytest.param(ONE, 1.0, 0.5 / (1 - DECAY) * f, f > 1, id=f"1.5x x{f}")
        for f in (1.005, 0.995)
    ],
    # $100 a month (730 h) over a $0.06/h baseline, where the 1.01x asks less
    *[
        pytest.param(
            replace(ONE, sustain_margin=0.01),
            1 / 1024,
            100 / 730 / ((1 - DECAY) * PER_HOUR) * f,
            f > 1,
            id=f"$100/month x{f}",
        )
        for f in (1.01, 0.99)
    ],
]


@pytest.mark.parametrize("how", BOTH)
@pytest.mark.parametrize(("params", "base", "residual", "fires"), LASTING_CASES)
def test_a_lasting_excess_fires_at_each_floor_of_its_window(params, base, residual, fires, how):
    """The sustained rule fires when its window's z is >= 5, its excess >= $100/month and
    >= 0.5x the baseline per hour, all of it written down for one bucket."""
    decisions, _ = probe(DAY, base, [base + residual], params, how)
    assert [(d.status, "sustained_z" in d.values) for d in decisions] == (
        [("firing", True)] if fires else []
    )


def test_a_lasting_excess_stays_open_while_its_window_holds_half_its_floors():
    """After the $12 bucket, calm at $1: the window's excess decays by DECAY a bucket and
    holds the alert open while >= half of 0.5x the baseline ($15/h; z stays over 2 far
    longer): 32.19 x DECAY^k >= 15 until k = 15, so the calm begins 16 buckets after the
    excess and the resolve, after 15 buckets of flap damping, ends there."""
    last = max(k for k in range(60) if lasting_excess(11.0) * DECAY**k >= 0.25 * PER_HOUR)
    assert last == 15
    decisions, state = probe(DAY, 1.0, [12.0] + [1.0] * (last + 15), ONE)
    assert [(d.status, d.ends_at) for d in decisions] == [
        ("firing", None),
        ("resolved", at(DAY + last + 1)),
    ]
    resolved = decisions[1].values
    assert resolved["sustained_excess_usd_per_hour"] < 0.25 * PER_HOUR
    assert resolved["sustained_z"] >= 2.0
    assert not state.slow and state.episode is None
    # Over, the window keeps what it learnt (a lasting excess's sums are not cleared).
    assert tail(state, S_SPENT) == pytest.approx(11.0 * DECAY ** (last + 15), rel=1e-4)
    # One bucket short of the resolve it is still open.
    decisions, state = probe(DAY, 1.0, [12.0] + [1.0] * (last + 14), ONE)
    assert [d.status for d in decisions] == ["firing"] and state.slow


def test_a_spike_is_not_held_open_by_the_sums_it_filled():
    """The same $12 bucket with the fast rule on is a spike: its calm begins at the next
    bucket, although the sums would still say 'lasting' there (32.19 x DECAY >= $30/h), and
    the resolve has no figures of the window."""
    params = replace(ONE, min_excess_usd_per_hour=3.0)
    assert lasting_excess(11.0) * DECAY >= 0.5 * PER_HOUR
    decisions, state = probe(DAY, 1.0, [12.0] + [1.0] * 15, params)
    assert [(d.status, d.ends_at) for d in decisions] == [
        ("firing", None),
        ("resolved", at(DAY + 1)),
    ]
    assert all("sustained_z" not in d.values for d in decisions)
    assert not state.slow


# update(): order and gaps ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "gap", "learnt"),
    [
        # a gap's buckets are learnt as zero spend, the last 1,440 of them at most
        pytest.param(SPIKE, 5, 10 + 5 + 1, id="5 zeros"),
        pytest.param(SPIKE, 2000, 10 + 1440 + 1, id="at most 1,440 zeros"),
        # with skip_gaps they are neither judged nor learnt
        pytest.param(replace(SPIKE, skip_gaps=True), 5, 10 + 1, id="skipped"),
    ],
)
def test_update_learns_a_gap_and_ignores_buckets_out_of_order(params, gap, learnt):
    """A bucket at or before the last one judged is ignored (nothing decided, nothing
    learnt); a bucket ``gap`` buckets after the last is preceded by the gap's zeros."""
    state = SpendSpikeState.new(params)
    for i in range(10):
        spend_spike.update(state, at(i), MINUTE, 1.0, params)
    before = state.to_dict()
    for t in (at(9), at(3)):
        assert spend_spike.update(state, t, MINUTE, 100.0, params) == []
        assert state.to_dict() == before
    assert spend_spike.update(state, at(10 + gap), MINUTE, 1.0, params) == []
    assert state.last_t == at(10 + gap)
    assert state.baseline.stats.tolist()[0] == learnt
    assert state.recent(MINUTE)[-1] == 1.0
