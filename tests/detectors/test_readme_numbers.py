"""Every number README.md's "What it detects" promises for spend_spike and retry_storm
(and the hystereses, calm and confirmation counts of its configuration reference), each
tested on both sides of its boundary through the detectors' public ``update()`` (and
spend_spike's ``update_many``, whose numpy path judges ordinary buckets on its own).

Each case's id names the README number it pins. Histories are flat, so a baseline is an
exact number (its standard deviation is 0, floored at 5 % of the baseline in ``z``) and a
boundary can be hit exactly: "at least" means the boundary itself fires.
"""

from __future__ import annotations

import functools
import math
from dataclasses import replace

import pytest

from detectors import retry_storm, spend_spike
from detectors.decision import Decision
from detectors.retry_storm import BucketCounts, RetryStormParams, RetryStormState
from detectors.spend_spike import SpendSpikeParams, SpendSpikeState
from tests.detectors.series import DAY_MINUTES, MINUTE, START

SPIKE = SpendSpikeParams()  # the README's numbers are the defaults
STORM = RetryStormParams()
PER_HOUR = 3600.0 / MINUTE
# A baseline of $0.47/h, where $3/h (and $20/h, $1.50/h) above it are exact floats and
# the excess, not the ratio or z, is what decides.
SMALL = 1 / 128
# Keys judged together by update_many: at 16 and more it takes its numpy path.
BATCH = 16


def exactly(f, target: float, guess: float) -> float:
    """The float next to ``guess`` at which ``f`` (the detector's own arithmetic) gives
    exactly ``target``: a boundary case that is on the boundary, not a rounding off it."""
    x = guess
    for _ in range(64):
        got = f(x)
        if got == target:
            return x
        x = math.nextafter(x, math.inf if got < target else -math.inf)
    raise AssertionError(f"no float near {guess} gives {target}")


def excess(base: float, usd_per_hour: float) -> float:
    """Spend per bucket whose excess over ``base`` is exactly ``usd_per_hour``."""
    return exactly(lambda s: (s - base) * PER_HOUR, usd_per_hour, base + usd_per_hour / PER_HOUR)


# No float of USD per 60 s bucket times 60 is exactly 1,000.0: the absolute limit is tested
# in buckets of 36 s, where $10 a bucket is exactly $1,000/h.
SHORT = 36.0


# spend_spike ---------------------------------------------------------------------------


@functools.cache
def flat(history: int, base: float, params: SpendSpikeParams, width: float) -> dict:
    """A key's state after ``history`` buckets of ``base`` USD from START, learnt with
    ``params`` (as a dict: copy it). A flat history breaches nothing: it is learnt as it
    is."""
    state = SpendSpikeState.new(params)
    for i in range(history):
        assert spend_spike.update(state, START + i * width, width, base, params) == []
    assert state.episode is None
    return state.to_dict()


def judge(
    group: list[SpendSpikeState],
    history: int,
    spends: list[float],
    params: SpendSpikeParams,
    batch: bool,
    width: float,
) -> list[Decision]:
    """``spends`` bucket after bucket from bucket ``history`` on: the decisions. ``batch``:
    judged by update_many for every key of ``group`` (which must agree), else by update for
    the first."""
    keys = len(group) if batch else 1
    out: list[list[Decision]] = [[] for _ in range(keys)]
    for i, spend in enumerate(spends, start=history):
        t = START + i * width
        if batch:
            decided = spend_spike.update_many(group, t, width, [spend] * keys, params)
        else:
            decided = {0: spend_spike.update(group[0], t, width, spend, params)}
        for k, decisions in decided.items():
            out[k] += decisions
    assert all(o == out[0] for o in out)
    return out[0]


def spike_run(
    history: int,
    base: float,
    probe: list[float],
    params: SpendSpikeParams,
    batch: bool,
    width: float = MINUTE,
) -> list[Decision]:
    """``history`` buckets of ``base`` USD from START (learnt with the defaults, so every
    case's parameters start from the same baseline), then the ``probe`` buckets: the
    decisions of the probe, by update_many for BATCH identical keys or by update for one."""
    learnt = flat(history, base, SPIKE, width)
    group = [SpendSpikeState.from_dict(learnt) for _ in range(BATCH if batch else 1)]
    return judge(group, history, probe, params, batch, width)


def fired(decisions: list[Decision]) -> list[tuple[str, str]]:
    return [(d.status, d.severity) for d in decisions]


FIRING = [("firing", "warning")]
CRITICAL = [("firing", "critical")]
DAY = DAY_MINUTES  # one day of one-minute buckets: the warm-up
SPIKE_CASES = [
    # (params changed, history buckets, base USD/bucket, probe USD/bucket, what fires)
    pytest.param({}, DAY, 1.0, [2.0] * 3, FIRING, id="3 in a row after one day: the 3rd fires"),
    pytest.param({}, DAY, 1.0, [2.0] * 2 + [1.0] * 3, [], id="3 buckets in a row: 2 do not"),
    pytest.param({}, DAY, 1.0, [1.25] * 3, FIRING, id="5 sd: z exactly 5 fires"),
    pytest.param({}, DAY, 1.0, [1.2499] * 3, [], id="5 sd: z 4.998 does not"),
    # With the default 5 sd (the sd floored at 5 % of the baseline) a bucket is >= 25 %
    # above baseline anyway: the 20 % decides only when z asks for less.
    pytest.param({"min_z": 0.0}, DAY, 1.0, [1.2] * 3, FIRING, id="20 %: exactly 1.2x fires"),
    pytest.param({"min_z": 0.0}, DAY, 1.0, [1.19] * 3, [], id="20 %: 1.19x does not"),
    pytest.param({}, DAY, SMALL, [excess(SMALL, 3.0)] * 3, FIRING, id="$3/h: exactly $3/h fires"),
    pytest.param({}, DAY, SMALL, [excess(SMALL, 2.9)] * 3, [], id="$3/h: $2.90/h does not"),
    pytest.param(
        {},
        DAY - 1,
        1.0,
        [2.0] * 3 + [1.0],
        [],
        id="one day: the 1st of 3 judged after 23h59 does not",
    ),
    pytest.param({}, DAY, 1.0, [3.0] * 3, CRITICAL, id="critical 3x: exactly 3x is critical"),
    pytest.param({}, DAY, 1.0, [2.99] * 3, FIRING, id="critical 3x: 2.99x is a warning"),
    pytest.param(
        {}, DAY, SMALL, [excess(SMALL, 20.0)] * 3, CRITICAL, id="critical $20/h: exactly $20/h"
    ),
    pytest.param(
        {}, DAY, SMALL, [excess(SMALL, 19.9)] * 3, FIRING, id="critical $20/h: $19.90/h warns"
    ),
]


@pytest.mark.parametrize("batch", [False, True], ids=["update", "update_many"])
@pytest.mark.parametrize(("changes", "history", "base", "probe", "expected"), SPIKE_CASES)
def test_spend_spike_keeps_the_readme_numbers(changes, history, base, probe, expected, batch):
    params = replace(SPIKE, **changes)
    assert fired(spike_run(history, base, probe, params, batch)) == expected


ABSOLUTE_CASES = [
    # (history buckets, base USD/bucket of 36 s, probe, what fires)
    pytest.param(0, 0.0, [10.0] * 3, CRITICAL, id="$1,000/h: exactly $1,000/h with no history"),
    pytest.param(0, 0.0, [9.9] * 3, [], id="$1,000/h: $990/h does not"),
    pytest.param(0, 0.0, [10.0] * 2 + [0.0] * 3, [], id="$1,000/h: 3 buckets in a row too"),
    # $900/h for an hour, then $1,000/h: $100/h above the baseline, but the limit is on the
    # spend, not on the excess.
    pytest.param(100, 9.0, [10.0] * 3, CRITICAL, id="$1,000/h: on the spend, not the excess"),
]


@pytest.mark.parametrize("batch", [False, True], ids=["update", "update_many"])
@pytest.mark.parametrize(("history", "base", "probe", "expected"), ABSOLUTE_CASES)
def test_spend_spike_fires_at_the_absolute_limit_during_warm_up(
    history, base, probe, expected, batch
):
    assert fired(spike_run(history, base, probe, SPIKE, batch, width=SHORT)) == expected


def test_the_readme_numbers_are_the_spend_spike_defaults():
    assert (SPIKE.consecutive, SPIKE.relative_margin, SPIKE.min_z) == (3, 0.2, 5.0)
    assert (SPIKE.min_excess_usd_per_hour, SPIKE.warmup_s, SPIKE.calm_buckets) == (3.0, 86400, 5)
    assert (SPIKE.absolute_usd_per_hour, SPIKE.critical_ratio) == (1000.0, 3.0)
    assert (SPIKE.critical_usd_per_hour, SPIKE.resolve_margin, SPIKE.resolve_z) == (20.0, 0.1, 2.0)


# Resolving is judged by where the episode ends, after a long calm: the first bucket of the
# calm run that resolved it. (How long an alert is then held open before the resolve is
# sent is the flap damping's business.) After 4 calm buckets, 1.15x (elevated: above the
# resolve margin, below the firing one) restarts the count.
LONG = 60
SPIKE_RESOLVE_CASES = [
    # (params changed, base, the spike, the buckets after it, where the calm that resolved
    # began among them, None: still open)
    pytest.param({}, 1.0, 2.0, [1.0] * 5 + [1.15] + [1.0] * LONG, 0, id="5 calm buckets resolve"),
    pytest.param({}, 1.0, 2.0, [1.0] * 4 + [1.15] + [1.0] * LONG, 5, id="4 calm buckets do not"),
    pytest.param(
        {"resolve_z": 0.0}, 1.0, 2.0, [1.1] * LONG, None, id="resolve below 1.1x: 1.1x holds"
    ),
    pytest.param({"resolve_z": 0.0}, 1.0, 2.0, [1.099] * LONG, 0, id="resolve below 1.1x: 1.099x"),
    # z is exactly 2 at 1.1x of a $10 baseline (not of $1, where 1.1 - 1.0 is 0.1000...09)
    pytest.param(
        {"resolve_margin": 0.0}, 10.0, 15.0, [11.0] * LONG, None, id="resolve below 2 sd: z 2 holds"
    ),
    pytest.param(
        {"resolve_margin": 0.0}, 10.0, 15.0, [10.99] * LONG, 0, id="resolve below 2 sd: z 1.98"
    ),
    # Not in the README: an open spike also needs half the $3/h excess to stay open. (An
    # hour of $1.40/h at 4x is a lasting excess the sustained rule would report after the
    # spike's alert: off here, where the spike's resolve is judged.)
    pytest.param(
        {"sustain_s": None},
        SMALL,
        1.0,
        [excess(SMALL, 1.5)] * LONG,
        None,
        id="resolve below $1.50/h: $1.50/h holds",
    ),
    pytest.param(
        {"sustain_s": None},
        SMALL,
        1.0,
        [excess(SMALL, 1.4)] * LONG,
        0,
        id="resolve below $1.50/h: $1.40/h",
    ),
]


def ends(decisions: list[Decision], first: float) -> int | None:
    """Where the resolved episode ended, in buckets from ``first``; None if still open."""
    assert decisions[0].status == "firing"
    assert [d.status for d in decisions[1:]] in ([], ["resolved"])
    if len(decisions) == 1:
        return None
    return round((decisions[1].ends_at - first) / MINUTE)


@pytest.mark.parametrize("batch", [False, True], ids=["update", "update_many"])
@pytest.mark.parametrize(("changes", "base", "spike", "after", "calm_from"), SPIKE_RESOLVE_CASES)
def test_spend_spike_resolves_as_the_readme_says(changes, base, spike, after, calm_from, batch):
    params = replace(SPIKE, **changes)
    decisions = spike_run(DAY, base, [spike] * 3 + after, params, batch)
    assert ends(decisions, START + (DAY + 3) * MINUTE) == calm_from


# retry_storm ---------------------------------------------------------------------------


def counts(requests, failures, retries=0, wasted=0.0, top=None, top_requests=0.0):
    """One bucket's attempts; failures and retries are requests of their own (no chains)."""
    return BucketCounts(
        requests,
        failures,
        retries,
        0.0,
        wasted,
        failures if top is None else top,
        failures,
        retries,
        top_requests,
    )


CLEAN = counts(200, 0)
# Longer than the warm-up: the baseline factor applies (to a baseline of 0 here).
HISTORY = 100


def warmed(
    history: int = HISTORY, usual: BucketCounts = CLEAN, params: RetryStormParams = STORM
) -> RetryStormState:
    """A key after ``history`` buckets of ``usual`` attempts."""
    state = RetryStormState.new(params)
    for i in range(history):
        assert retry_storm.update(state, START + i * MINUTE, MINUTE, usual, params) == []
    return state


def probe(
    state: RetryStormState, buckets: list[BucketCounts], params: RetryStormParams = STORM
) -> list[Decision]:
    """After a silence as long as the window (so that the window holds the probe alone,
    with no ramp from the history), the probe's buckets: their decisions."""
    assert state.last_t is not None
    first = state.last_t + (params.window_buckets + 1) * MINUTE
    out: list[Decision] = []
    for i, bucket in enumerate(buckets):
        out += retry_storm.update(state, first + i * MINUTE, MINUTE, bucket, params)
    return out


def storm_run(buckets: list[BucketCounts], params: RetryStormParams = STORM) -> list[Decision]:
    return probe(warmed(params=params), buckets, params)


def probe_t(i: int) -> float:
    """Start of the probe's bucket ``i`` after a warmed() history."""
    return START + (HISTORY + STORM.window_buckets + i) * MINUTE


DILUTED = counts(5000, 0)  # enough clean attempts to end any breach in the window
STORM_CASES = [
    # (probe buckets, what fires)
    pytest.param([counts(200, 20)] * 2, FIRING, id="10 % errors: exactly 10 % fires"),
    pytest.param([counts(200, 19)] * 6, [], id="10 % errors: 9.5 % does not"),
    pytest.param([counts(200, 0, 30)] * 2, FIRING, id="15 % retries: exactly 15 % fires"),
    pytest.param([counts(200, 0, 29)] * 6, [], id="15 % retries: 14.5 % does not"),
    pytest.param([counts(200, 40)] * 2, FIRING, id="2 windows in a row: the 2nd fires"),
    pytest.param([counts(200, 40), DILUTED], [], id="2 windows in a row: 1 does not"),
    # 9 of 81 first attempts failing at the baseline floor of 1 %: p <= exp(-81 KL) = 9.1e-7.
    pytest.param([counts(81, 9)] * 2 + [DILUTED], FIRING, id="p 1e-6: p 9.1e-7 fires"),
    # 9 of 82: p <= 1.01e-6 in the first window; the second (18 of 164) alone is not enough.
    pytest.param([counts(82, 9)] * 2 + [DILUTED], [], id="p 1e-6: p 1.01e-6 does not"),
    # 10 attempts in the window may be a storm (9 failures is one: critical at 90 %), 9 not.
    pytest.param([counts(10, 9), BucketCounts()], CRITICAL, id="10 attempts: a window of 10"),
    pytest.param([counts(9, 9), BucketCounts()], [], id="10 attempts: a window of 9 is not"),
    # 20 % of attempts failed either way: 10 requests failing once each ...
    pytest.param([counts(50, 10)] * 2, FIRING, id="per request: 10 failed requests fire"),
    # ... or 2 requests failing 5 times each: 2 failed requests of 42.
    pytest.param(
        [BucketCounts(50, 10, 8, 0.0, 0.0, 10, 2, 2)] * 2, [], id="per request: 2 retried do not"
    ),
    pytest.param([counts(200, 80)] * 2, CRITICAL, id="critical 40 %: exactly 40 % is critical"),
    pytest.param([counts(200, 78)] * 2, FIRING, id="critical 40 %: 39 % is a warning"),
    # $50/h burnt is judged on the newest buckets (2, the confirmation): 0.84 USD a minute
    pytest.param([counts(200, 40, wasted=0.84)] * 2, CRITICAL, id="critical $50/h: $50.40/h"),
    pytest.param([counts(200, 40, wasted=0.83)] * 2, FIRING, id="critical $50/h: $49.80/h warns"),
]


@pytest.mark.parametrize(("buckets", "expected"), STORM_CASES)
def test_retry_storm_keeps_the_readme_numbers(buckets, expected):
    assert fired(storm_run(buckets)) == expected


# A key that usually fails 1 in 16 attempts (6.25 %): after warm-up its own 3x (18.75 %) is
# the limit, above the 10 % floor. 320 attempts a bucket make 18 % significant at once.
USUAL = counts(320, 20)


@pytest.mark.parametrize(
    ("failures", "expected"),
    [
        pytest.param(60, FIRING, id="3x baseline: exactly 3x (18.75 %) fires"),
        pytest.param(58, [], id="3x baseline: 2.9x (18.1 %) does not, though above 10 %"),
    ],
)
def test_retry_storm_fires_at_three_times_the_keys_own_error_rate(failures, expected):
    state = warmed(usual=USUAL)
    assert state.error_baseline == 0.0625
    assert fired(probe(state, [counts(320, failures)] * 4)) == expected


@pytest.mark.parametrize(
    ("history", "expected"),
    [
        # 54 windows of history, 4 more while the silence empties the window, the storm's
        # 1st: its 2nd window, which confirms it, is the 60th judged.
        pytest.param(54, FIRING, id="60 windows of warm-up: the 60th judges on the floor"),
        pytest.param(55, [], id="60 windows of warm-up: the 61st on 3x the baseline"),
    ],
)
def test_retry_storm_applies_the_baseline_factor_after_sixty_windows(history, expected):
    """2.9x the usual rate, above the 10 % floor: a storm while the key warms up (the floor
    alone), none once its own 3x applies."""
    state = warmed(history, USUAL)
    assert state.baseline_n == history  # windows judged so far
    assert fired(probe(state, [counts(320, 58)] * 2)) == expected


GLOBAL = RetryStormParams(min_requests=50, max_customer_share=0.5)  # retry_storm_global


@pytest.mark.parametrize(
    ("failures", "top", "top_requests", "expected"),
    [
        # 40 of 80 failures are one customer's, the other 450 attempts fail 40 times (< 10 %).
        pytest.param(80, 40, 150, FIRING, id="one customer alone: half of the failures is a storm"),
        # 41 of 80 failures are one customer's; the other 400 attempts fail 39 times (< 10 %).
        pytest.param(80, 41, 200, [], id="one customer alone: 41 of 80 failures and others fine"),
        # 41 of 80 again, but the other 380 attempts fail 39 times (> 10 %): an outage.
        pytest.param(80, 41, 220, FIRING, id="one customer alone: 41 of 80 and others fail too"),
        # 41 of 81, the other 400 attempts failing 40 times: 10 %, the limit, is an outage.
        pytest.param(81, 41, 200, FIRING, id="one customer alone: others at exactly 10 %"),
    ],
)
def test_a_provider_storm_must_not_come_from_one_customer_alone(
    failures, top, top_requests, expected
):
    buckets = [counts(600, failures, top=top, top_requests=top_requests)] * 2
    assert fired(storm_run(buckets, GLOBAL)) == expected


def test_the_readme_numbers_are_the_retry_storm_defaults():
    assert (STORM.window_buckets, STORM.error_rate, STORM.retry_share) == (5, 0.10, 0.15)
    assert (STORM.baseline_factor, STORM.significance, STORM.warmup_buckets) == (3.0, 1e-6, 60)
    assert (STORM.consecutive, STORM.calm_buckets) == (2, 5)
    assert (STORM.critical_error_rate, STORM.critical_wasted_usd_per_hour) == (0.4, 50.0)


# Elevated, not a storm: 6.8 % of a window with 4 diluted buckets in it, for 5 buckets.
AGAIN = counts(2000, 1500)
STORM_RESOLVE_CASES = [
    # (storm bucket, the buckets after two of them, where the calm that resolved began
    # among them, None: still open)
    pytest.param(
        counts(200, 100), [DILUTED] * 5 + [AGAIN] + [DILUTED] * LONG, 0, id="5 calm buckets resolve"
    ),
    # AGAIN keeps the window elevated from bucket 4 to 8
    pytest.param(
        counts(200, 100), [DILUTED] * 4 + [AGAIN] + [DILUTED] * LONG, 9, id="4 calm buckets do not"
    ),
    # An open storm stays open while the window's rates are at half the limits. The window
    # holds only the held buckets from the 5th on.
    pytest.param(
        counts(200, 100), [counts(200, 10)] * LONG, None, id="resolve below 5 % errors: 5 % holds"
    ),
    pytest.param(
        counts(200, 100), [counts(200, 9)] * LONG, 4, id="resolve below 5 % errors: 4.5 %"
    ),
    pytest.param(
        counts(200, 0, 100),
        [counts(200, 0, 15)] * LONG,
        None,
        id="resolve below 7.5 % retries: 7.5 % holds",
    ),
    pytest.param(
        counts(200, 0, 100), [counts(200, 0, 14)] * LONG, 4, id="resolve below 7.5 % retries: 7 %"
    ),
    # Silence: the window holds the storm for 5 buckets, and calms as it empties.
    pytest.param(
        counts(200, 100), [BucketCounts()] * LONG, 4, id="a 5-bucket window: empty after 5"
    ),
]


@pytest.mark.parametrize(("storm", "after", "calm_from"), STORM_RESOLVE_CASES)
def test_retry_storm_resolves_as_the_readme_says(storm, after, calm_from):
    assert ends(storm_run([storm] * 2 + after), probe_t(2)) == calm_from


# The sustained rule (README: "A lasting excess under the floor"): an excess summed over
# an EW window of 20 minutes fires at 5 sd, 1.5x the baseline and $100 a month, each
# bucket counted at most 3 sd. Relaxed in each case: the numbers not under test. The
# baseline's memory is made long and the level is not followed, so the lasting excess is
# not learnt while it is judged (the level has cases of its own).
LASTING = 150
SLOW = {"baseline_days": 90.0, "sustain_level_s": None}
NO_FAST_RULE = {"min_excess_usd_per_hour": 1e9}
SUSTAINED_CASES = [
    pytest.param(
        {**SLOW, "sustain_margin": 0.01},
        SMALL,
        [SMALL + 0.15 / PER_HOUR] * LASTING,
        FIRING,
        id="$100/month: $0.15/h lasting fires",
    ),
    pytest.param(
        {**SLOW, "sustain_margin": 0.01},
        SMALL,
        [SMALL + 0.13 / PER_HOUR] * LASTING,
        [],
        id="$100/month: $0.13/h lasting does not",
    ),
    pytest.param(SLOW, SMALL, [1.53 * SMALL] * LASTING, FIRING, id="1.5x: 1.53x lasting fires"),
    pytest.param(SLOW, SMALL, [1.47 * SMALL] * LASTING, [], id="1.5x: 1.47x does not"),
    pytest.param(
        {**SLOW, "sustain_margin": 0.01, "sustain_usd_per_month": 0.0},
        1.0,
        [1.047] * LASTING,
        FIRING,
        id="5 sd: 4.7 % lasting fires (z 5.02)",
    ),
    pytest.param(
        {**SLOW, "sustain_margin": 0.01, "sustain_usd_per_month": 0.0},
        1.0,
        [1.046] * LASTING,
        [],
        id="5 sd: 4.6 % does not",
    ),
    pytest.param(
        {**NO_FAST_RULE, "sustain_level_s": None},
        SMALL,
        [10 * SMALL] * 9 + [SMALL] * LASTING,
        FIRING,
        id="3 sd a bucket: 9 buckets at 10x last",
    ),
    pytest.param(
        {**NO_FAST_RULE, "sustain_level_s": None},
        SMALL,
        [10 * SMALL] * 8 + [SMALL] * LASTING,
        [],
        id="3 sd a bucket: 8 buckets at 10x do not",
    ),
    pytest.param(
        {**SLOW, "sustain_s": None},
        SMALL,
        [3 * SMALL] * LASTING,
        [],
        id="sustain_s null: off",
    ),
]


@pytest.mark.parametrize("batch", [False, True], ids=["update", "update_many"])
@pytest.mark.parametrize(("changes", "base", "probe", "expected"), SUSTAINED_CASES)
def test_a_lasting_excess_fires_as_the_readme_says(changes, base, probe, expected, batch):
    decisions = spike_run(DAY, base, probe, replace(SPIKE, **changes), batch)
    firing = [d for d in decisions if d.status == "firing"]
    assert fired(firing) == expected
    if firing:  # the figures of the lasting excess, not the last bucket's
        values = firing[0].values
        assert values["sustained_z"] >= replace(SPIKE, **changes).sustain_z
        assert values["money_at_risk_usd_per_hour"] == values["sustained_excess_usd_per_hour"]
        assert values["sustain_s"] == 1200.0


def test_the_readme_numbers_are_the_sustained_rule_defaults():
    assert (SPIKE.sustain_s, SPIKE.sustain_z) == (1200.0, 5.0)
    assert (SPIKE.sustain_margin, SPIKE.sustain_usd_per_month) == (0.5, 100.0)
    assert (SPIKE.sustain_level_s, SPIKE.sustain_level_max) == (10_800.0, 2.0)


def test_a_lasting_excess_resolves_once_its_window_is_calm():
    lasting = [3 * SMALL] * 60
    decisions = spike_run(DAY, SMALL, lasting + [SMALL] * 120, replace(SPIKE, **SLOW), False)
    assert [d.status for d in decisions] == ["firing", "resolved"]
    fired_at, resolved = decisions[0], decisions[1]
    # Open while the window still holds the excess, closed within the hour after it.
    end = START + (DAY + 60) * MINUTE
    assert end + 10 * MINUTE < resolved.ends_at < end + 45 * MINUTE
    # Resolved by the hysteresis: half the 1.5x (the excess under 0.25x the baseline).
    assert resolved.values["sustained_excess_usd_per_hour"] < 0.25 * SMALL * PER_HOUR
    assert resolved.values["sustained_z"] >= SPIKE.resolve_z
    assert fired_at.starts_at < end


def ramp(to: float, hours: int = 8, then: int = 8) -> list[float]:
    """SMALL rising linearly to ``to`` x SMALL over ``hours``, then staying there."""
    up = [SMALL * (1 + (to - 1) * (i + 1) / (60 * hours)) for i in range(60 * hours)]
    return up + [to * SMALL] * (60 * then)


LEVEL_CASES = [
    # (params changed, the day, what fires): a day 1.8x busier than the baseline's days,
    # reached over 8 hours as a Monday after the weekend, is followed by the level (3 h).
    pytest.param({}, ramp(1.8), [], id="level 3 h: a 1.8x day is followed"),
    pytest.param({"sustain_level_s": None}, ramp(1.8), FIRING, id="level off: it is reported"),
    # Faster than the level follows: twice the baseline reached in 2 hours fires at 3 h
    # (at 1.5 h it is followed).
    pytest.param({}, ramp(2.0, hours=2), FIRING, id="level 3 h: 2x within 2 hours fires"),
    pytest.param(
        {"sustain_level_s": 5400.0}, ramp(2.0, hours=2), [], id="level 1.5 h: it is followed"
    ),
    # Followed up to 2x: beyond, 1.5x over the level's 2x (3x the baseline) fires.
    pytest.param({}, ramp(3.3), FIRING, id="level up to 2x: a 3.3x day fires"),
    pytest.param({}, ramp(2.7), [], id="level up to 2x: a 2.7x day does not"),
]


@pytest.mark.parametrize("batch", [False, True], ids=["update", "update_many"])
@pytest.mark.parametrize(("changes", "day", "expected"), LEVEL_CASES)
def test_the_sustained_rule_follows_a_busier_day_as_the_readme_says(changes, day, expected, batch):
    params = replace(SPIKE, baseline_days=90.0, **changes)
    decisions = spike_run(DAY, SMALL, day, params, batch)
    assert fired([d for d in decisions if d.status == "firing"]) == expected


@pytest.mark.parametrize(
    "day",
    [ramp(2.7) + [2.3 * SMALL] * 120, ramp(3.3)],  # the level bound holds it, it fires
    ids=["2.7x then 2.3x", "3.3x"],
)
def test_update_many_follows_the_level_exactly_as_update(day):
    params = replace(SPIKE, baseline_days=90.0)
    learnt = flat(DAY, SMALL, SPIKE, MINUTE)
    batch = [SpendSpikeState.from_dict(learnt) for _ in range(BATCH)]
    alone = SpendSpikeState.from_dict(learnt)
    for i, spend in enumerate(day, start=DAY):
        t = START + i * MINUTE
        spend_spike.update_many(batch, t, MINUTE, [spend] * BATCH, params)
        spend_spike.update(alone, t, MINUTE, spend, params)
    assert all(state.to_dict() == alone.to_dict() for state in batch)
