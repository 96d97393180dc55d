"""retry_storm's figures pinned on both sides: the hold of a storm whose window has too few
attempts to judge, the significance bars (to fire, and a quarter of it to stay open), where
a storm began, the $50/h of critical burn, the baseline's memory, and the annotations of a
firing alert computed by hand.

Histories are flat, as in test_readme_numbers: a clean history learns a baseline of 0, so
the significance test runs against the 1 % floor, and the window holds the probe alone.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from detectors import retry_storm
from detectors.decision import Decision
from detectors.retry_storm import BucketCounts, RetryStormParams, RetryStormState
from tests.detectors.series import MINUTE, START
from tests.detectors.test_readme_numbers import (
    CLEAN,
    CRITICAL,
    FIRING,
    HISTORY,
    LONG,
    STORM,
    counts,
    ends,
    exactly,
    fired,
    probe,
    probe_t,
    storm_run,
    warmed,
)

STORMY = counts(200, 100)  # 50 % errors: fires on its 2nd window, whatever the bars


def kl(q: float, p: float) -> float:
    """Bernoulli KL divergence, written out: the README's p-value bound is exp(-n KL)."""
    return q * math.log(q / p) + (1 - q) * math.log((1 - q) / (1 - p))


# The hold of a window with too few attempts ------------------------------------------------

# Windows of 40 attempts (8 a bucket) are too few to judge under a minimum of 50: an open
# storm is held while they fail at half the error limit (2 in 40 is exactly 5 %) or retry at
# half the retry limit, and calms when they do not. The patterns repeat every 5 buckets, so
# every window holds the same counts once the storm has left it.
FEW = replace(STORM, min_requests=50)


def every_fifth(first: BucketCounts, rest: BucketCounts) -> list[BucketCounts]:
    return ([first] + [rest] * 4) * (LONG // 5)


QUIET_CASES = [
    # (buckets after the storm, where the calm that resolved began among them, None: held)
    pytest.param(
        every_fifth(counts(8, 2), counts(8, 0)), None, id="errors: 2 of 40 (half the limit) hold"
    ),
    pytest.param(
        every_fifth(counts(9, 2), counts(8, 0)), 4, id="errors: 2 of 41 (under half) calm"
    ),
    # 3 retries of 40 attempts (7.5 %, half the 15 %), all of one request (attempts 2 to 4):
    # the share is of attempts, as when firing.
    pytest.param(
        every_fifth(BucketCounts(8, 0, 3, 0, 0, 0, 0, 1), counts(8, 0)),
        None,
        id="retries: 3 of 40 (half the limit) hold",
    ),
    pytest.param(
        every_fifth(BucketCounts(9, 0, 3, 0, 0, 0, 0, 1), counts(8, 0)),
        4,
        id="retries: 3 of 41 (under half) calm",
    ),
    # Traffic all but stopped: a single attempt in the window, failing, still holds.
    pytest.param(every_fifth(counts(1, 1), BucketCounts()), None, id="a single failing attempt"),
    pytest.param(every_fifth(counts(1, 0), BucketCounts()), 4, id="a single attempt that works"),
]


@pytest.mark.parametrize(("after", "calm_from"), QUIET_CASES)
def test_a_storm_under_the_minimum_of_attempts_is_held_at_half_the_limits(after, calm_from):
    assert ends(storm_run([STORMY] * 2 + after, FEW), probe_t(2)) == calm_from


def test_a_storm_that_calms_under_the_minimum_resolves_as_a_retry_storm_with_its_attempts():
    decisions = storm_run([STORMY] * 2 + [counts(1, 0)] * LONG, FEW)
    assert [d.status for d in decisions] == ["firing", "resolved"]
    resolved = decisions[1]
    assert resolved.alertname == "retry_storm"
    assert resolved.values == {"requests": 5.0}  # the window's attempts when it resolved


def test_flap_damping_holds_a_storm_that_went_calm_under_the_minimum():
    # The storm leaves the window after 5 buckets; 8 buckets later it comes back: within the
    # 15-minute re-arm of the calm, so it is the same alert, its flap counted.
    storm = [counts(6, 4, 3)] * 3
    quiet = [counts(1, 0)] * 13
    decisions = storm_run(storm + quiet + storm + [counts(1, 0)] * LONG)
    assert [d.status for d in decisions] == ["firing", "resolved"]
    assert decisions[1].values["flaps"] == 1.0


# What is counted ---------------------------------------------------------------------------


def test_the_retry_share_counts_attempts_not_the_requests_retried():
    # 20 requests retried twice each: 40 of 200 attempts (20 %) are retries, over the 15 %,
    # though only 10 % of the requests were retried.
    assert fired(storm_run([BucketCounts(200, 0, 40, 0, 0, 0, 0, 20)] * 2)) == FIRING


@pytest.mark.parametrize(
    ("first_attempts", "expected"),
    [
        # 9 of 81 first attempts failed: p <= exp(-81 KL(9/81, 1 %)) = 9.1e-7 fires ...
        pytest.param(81, FIRING, id="9 of 81 first attempts fire"),
        # ... 9 of 82 (1.01e-6) does not: the 10 retries beside them are not first attempts.
        pytest.param(82, [], id="9 of 82 do not"),
    ],
)
def test_significance_counts_first_attempts_only(first_attempts, expected):
    # 10 retries, all failing, beside the first attempts: 19 failures in 91 or 92 attempts.
    bucket = BucketCounts(first_attempts + 10, 19, 10, 0, 0, 19, 9, 1)
    assert fired(storm_run([bucket] * 2 + [counts(5000, 0)])) == expected


def test_a_bucket_at_or_before_the_last_one_is_ignored():
    state = warmed()
    assert state.last_t is not None
    last = state.last_t
    before = state.to_dict()
    for t in (last, last - MINUTE):
        assert retry_storm.update(state, t, MINUTE, STORMY, STORM) == []
    assert state.to_dict() == before


# The significance bars, exactly ------------------------------------------------------------


def at_bar(surprise: float) -> float:
    """The significance whose bar, -log(significance), is exactly ``surprise``."""
    return exactly(math.log, -surprise, math.exp(-surprise))


def over_bar(surprise: float) -> float:
    """The largest significance whose bar is above ``surprise`` (a few floats share a log)."""
    significance = at_bar(surprise)
    while -math.log(significance) <= surprise:
        significance = math.nextafter(significance, 0.0)
    return significance


# One window of 200 attempts at the error (10 %) or retry (15 %) limit, judged alone.
ERRORS = counts(200, 20)
RETRIES = counts(200, 0, 30)


@pytest.mark.parametrize(
    ("bucket", "surprise"),
    [
        pytest.param(ERRORS, 200 * kl(20 / 200, 0.01), id="errors"),
        pytest.param(RETRIES, 170 * kl(30 / 170, 0.01), id="retries"),
    ],
)
def test_a_window_exactly_as_unlikely_as_the_significance_fires(bucket, surprise):
    at = replace(STORM, consecutive=1, significance=at_bar(surprise))
    assert fired(storm_run([bucket], at)) == FIRING
    stricter = replace(at, significance=over_bar(surprise))
    assert fired(storm_run([bucket], stricter)) == []


@pytest.mark.parametrize(
    ("held", "surprise"),
    [
        # 10 of 200 failing (5 %, half the limit) ...
        pytest.param(counts(40, 2), 200 * kl(10 / 200, 0.01), id="errors"),
        # ... or 15 of 200 retries (7.5 %), 15 of the 185 first attempts retried.
        pytest.param(counts(40, 0, 3), 185 * kl(15 / 185, 0.01), id="retries"),
    ],
)
def test_an_open_storm_stays_open_while_a_quarter_of_the_bar_unlikely(held, surprise):
    # The significance is set so that the held windows are exactly a quarter of its bar.
    at = replace(STORM, significance=at_bar(4 * surprise))
    assert ends(storm_run([STORMY] * 2 + [held] * LONG, at), probe_t(2)) is None
    stricter = replace(at, significance=over_bar(4 * surprise))
    assert ends(storm_run([STORMY] * 2 + [held] * LONG, stricter), probe_t(2)) == 4


def test_the_storm_bars_are_far_apart_in_probability():
    # What the two tests above pin, in the default's terms: a held window between a quarter
    # of the bar and the bar is held, though it would not fire.
    surprise = -math.log(STORM.significance)
    held = counts(40, 2)  # 200 * KL(5 %, 1 %) = 8.3: between 3.5 and 13.8
    assert 0.25 * surprise < 200 * kl(0.05, 0.01) < surprise
    assert ends(storm_run([STORMY] * 2 + [held] * LONG), probe_t(2)) is None
    # 3 of 60 (5 %): 60 * KL = 2.5, under a quarter of the bar: chance, the storm calms.
    assert 60 * kl(0.05, 0.01) < 0.25 * surprise
    assert (
        ends(storm_run([STORMY] * 2 + every_fifth(counts(12, 3), counts(12, 0))), probe_t(2)) == 4
    )


# Where a storm began -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "storm",
    [
        # 15 attempts a bucket, 3 failing (20 %): one window of 15 or 30 is chance at the 1 %
        # floor (p 1.6e-3, 2.6e-6), 45 is not (4.2e-9): the 3rd window breaches, the 4th
        # confirms it; the storm began with the 1st bucket.
        pytest.param([counts(15, 3)] * 4, id="errors"),
        pytest.param([counts(15, 0, 3)] * 5, id="retries"),
        # A first bucket exactly at the limit (2 of 20, 10 %) is part of it.
        pytest.param([counts(20, 2)] + [counts(15, 3)] * 3, id="from a bucket at the limit"),
        pytest.param([counts(20, 0, 3)] + [counts(15, 0, 3)] * 4, id="retries at the limit"),
    ],
)
def test_a_storm_starts_with_its_first_bad_bucket_not_when_it_became_significant(storm):
    decisions = storm_run(storm)
    assert fired(decisions) == FIRING
    assert decisions[0].starts_at == probe_t(0)


def test_a_storm_does_not_start_at_a_bucket_under_the_limit_before_it():
    # 1 of 20 (5 %) before the storm's buckets: not part of it.
    decisions = storm_run([counts(20, 1)] + [counts(15, 3)] * 4)
    assert fired(decisions) == FIRING
    assert decisions[0].starts_at == probe_t(1)


# $50/h burnt on failed attempts: critical, on the newest 2 buckets ---------------------------

# No float of USD per 60 s bucket is exactly $50/h over two of them: in buckets of 36 s,
# $0.50 a bucket is (0.50 + 0.50) x 3600 / 72 = $50.00/h.
SHORT = 36.0


def burn_run(wasted_per_bucket: float) -> list[Decision]:
    state = RetryStormState.new(STORM)
    for i in range(HISTORY):
        assert retry_storm.update(state, START + i * SHORT, SHORT, CLEAN, STORM) == []
    first = START + (HISTORY + STORM.window_buckets + 1) * SHORT
    out: list[Decision] = []
    for i in range(2):  # 20 % errors: a warning by its rate
        bucket = counts(200, 40, wasted=wasted_per_bucket)
        out += retry_storm.update(state, first + i * SHORT, SHORT, bucket, STORM)
    return out


@pytest.mark.parametrize(
    ("wasted", "expected"),
    [
        pytest.param(0.5, CRITICAL, id="exactly $50/h is critical"),
        pytest.param(0.4999, FIRING, id="$49.99/h is a warning"),
    ],
)
def test_fifty_dollars_an_hour_burnt_on_failures_is_critical(wasted, expected):
    decisions = burn_run(wasted)
    assert fired(decisions) == expected
    # Over the whole 5-bucket window (3 of them empty) the burn is 2/5 of it.
    assert decisions[0].values["wasted_usd_per_hour"] == pytest.approx(20.0, rel=1e-3)


def test_newest_buckets_without_attempts_do_not_make_a_storm_critical():
    # 30 % errors in 3 buckets, confirmed once a clean bucket has left the window and
    # traffic has stopped: its newest 2 buckets have no attempts, so the window's 30 %
    # judges it, a warning.
    storm = [counts(200, 0), counts(20, 0)] + [counts(20, 6)] * 3
    assert storm_run(storm + [BucketCounts()]) == []
    decisions = storm_run(storm + [BucketCounts()] * 2)
    assert fired(decisions) == FIRING
    assert decisions[0].values["error_rate"] == pytest.approx(18 / 60)


# The baseline ------------------------------------------------------------------------------

# One bucket a window, so each window's rate is its bucket's; a memory of 4 windows, and a
# warm-up of 3 windows.
SHORT_MEMORY = replace(STORM, window_buckets=1, baseline_buckets=4, warmup_buckets=3)


def learn(rates: list[int], params: RetryStormParams = SHORT_MEMORY) -> RetryStormState:
    """A key after buckets of 100 attempts with ``rates`` failures (and none retried)."""
    state = RetryStormState.new(params)
    for i, failures in enumerate(rates):
        bucket = counts(100, failures)
        assert retry_storm.update(state, START + i * MINUTE, MINUTE, bucket, params) == []
    return state


def test_the_baseline_is_a_running_mean_then_an_ew_mean_with_its_memory():
    # 8 % four times: the mean of the first 4 windows (weight 1/n), 2 in warm-up, 2 after.
    state = learn([8, 8, 8, 8])
    assert state.error_baseline == pytest.approx(0.08, rel=1e-6)
    assert state.baseline_n == 4
    # Then 0 %: each window weighs 1/4 (the memory), so the baseline falls by a quarter.
    state = learn([8, 8, 8, 8, 0, 0])
    assert state.error_baseline == pytest.approx(0.08 * 0.75 * 0.75, rel=1e-6)
    assert state.baseline_n == 6


def test_warm_up_windows_weigh_as_the_memory_says_too():
    # A warm-up of 10 windows with a memory of 2: from the 2nd window on each weighs 1/2.
    params = replace(SHORT_MEMORY, baseline_buckets=2, warmup_buckets=10)
    state = learn([8, 0, 0, 0], params)
    assert state.error_baseline == pytest.approx(0.08 / 8, rel=1e-6)


def test_an_open_storm_teaches_the_baseline_nothing_while_it_is_held():
    # After warm-up at 6.25 % (a limit of 3x, 18.75 %): a storm fires, then is held at 12 %
    # (over half the limit, and unlikely at 6.25 %) for an hour.
    state = warmed(usual=counts(320, 20))
    baseline = state.error_baseline
    decisions = probe(state, [STORMY] * 2 + [counts(200, 24)] * LONG)
    assert fired(decisions) == CRITICAL and len(decisions) == 1  # still open
    assert state.error_baseline == baseline


# What a firing alert says ------------------------------------------------------------------


def test_a_firing_storm_carries_its_figures():
    # A key that usually fails 1 in 16 attempts and retries 1 in 20: its limits are 3x,
    # 18.75 % and 15 %. Two buckets of 200 attempts: 50 failed (40 of the 180 first
    # attempts), 20 were retries of 20 requests, 30 rate-limited, $0.25 burnt in each.
    state = warmed(usual=counts(320, 20, 16))
    bucket = BucketCounts(200, 50, 20, 30, 0.25, 50, 40, 20)
    decisions = probe(state, [bucket] * 2)
    assert fired(decisions) == FIRING
    (firing,) = decisions
    assert firing.alertname == "retry_storm"
    assert firing.starts_at == probe_t(0)
    assert firing.values == pytest.approx(
        {
            "observed": 100 / 400,  # the window's error rate
            "error_rate": 100 / 400,
            "baseline": 1 / 16,
            "threshold": 3 / 16,
            # p <= exp(-n KL) of 80 failed among 360 first attempts, as a normal deviate
            "z": math.sqrt(2 * 360 * kl(80 / 360, 1 / 16)),
            "retry_share": 40 / 400,
            "retry_share_baseline": 1 / 20,
            "rate_limited_share": 60 / 400,
            "requests": 400.0,
            # $0.50 over the 5-minute window
            "wasted_usd_per_hour": 6.0,
            "money_at_risk_usd_per_hour": 6.0,
            "bucket_s": 60.0,
        },
        rel=1e-6,
    )
