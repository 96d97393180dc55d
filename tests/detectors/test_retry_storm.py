import json
from dataclasses import astuple, fields

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors import retry_storm
from detectors.retry_storm import BucketCounts, RetryStormParams, RetryStormState

MINUTE = 60.0
PARAMS = RetryStormParams()


def traffic(minutes, seed, rate=40.0, error_p=0.015, storms=()):
    """Per-minute attempt counts; ``storms`` are (start, length, error share, retry share)."""
    rng = np.random.default_rng(seed)
    out = []
    for m in range(minutes):
        p_err, p_retry = error_p, error_p * 0.7
        for start, length, err, retry in storms:
            if start <= m < start + length:
                p_err, p_retry = err, retry
        n = int(rng.poisson(rate))
        failures = int(rng.binomial(n, p_err))
        retries = int(rng.binomial(n, p_retry))
        out.append((m * MINUTE, counts(n, failures, retries, failures * 0.8, failures * 0.002)))
    return out


def counts(requests, failures, retries, rate_limited=0.0, wasted=0.0, top=None, top_requests=0.0):
    """Bucket counts where failures and retries are independent requests (no chains)."""
    return BucketCounts(
        requests,
        failures,
        retries,
        rate_limited,
        wasted,
        failures if top is None else top,
        failures,
        retries,
        top_requests,
    )


def run(series, params=PARAMS, state=None):
    state = state or RetryStormState.new(params)
    out = []
    for t, counts in series:
        out += retry_storm.update(state, t, MINUTE, counts, params)
    return out, state


@pytest.mark.parametrize("seed", range(6))
def test_retry_storm_is_silent_at_the_usual_background_error_rate(seed):
    assert run(traffic(3 * 1440, seed))[0] == []


def test_retry_storm_fires_when_error_rate_jumps_and_resolves_when_it_ends():
    decisions, _ = run(traffic(600, 1, storms=((300, 30, 0.5, 0.45),)))
    assert [d.status for d in decisions] == ["firing", "resolved"]
    firing, resolved = decisions
    assert 300 * MINUTE <= firing.starts_at <= 302 * MINUTE
    assert firing.severity == "critical"
    assert firing.values["error_rate"] > 0.1
    assert firing.values["rate_limited_share"] > 0
    assert 330 * MINUTE <= resolved.ends_at <= 340 * MINUTE


def test_a_moderate_storm_is_a_warning():
    decisions, _ = run(traffic(600, 2, rate=100.0, storms=((300, 30, 0.2, 0.18),)))
    assert decisions[0].status == "firing"
    assert decisions[0].severity == "warning"


def test_a_few_failures_in_a_small_window_are_not_significant():
    # 3 of 40 attempts failing (7.5 %) twice in a row is chance at a 1.5 % baseline.
    series = [(m * MINUTE, counts(8, 1 if m % 2 else 0, 0, 0, 0)) for m in range(300)]
    series[200] = (200 * MINUTE, counts(8, 3, 0, 0, 0))
    series[201] = (201 * MINUTE, counts(8, 2, 0, 0, 0))
    assert run(series)[0] == []


def test_failures_of_one_customer_alone_are_no_provider_storm():
    params = RetryStormParams(max_customer_share=0.5)
    one = [(m * MINUTE, counts(200, 80, 70, 0, 0, top=78)) for m in range(20)]
    assert run(one, params)[0] == []
    many = [(m * MINUTE, counts(200, 80, 70, 0, 0, top=20)) for m in range(20)]
    assert run(many, params)[0][0].status == "firing"


def test_one_requests_chain_of_failing_retries_is_not_a_storm():
    # 13 attempts in the window, 4 of them one request failing and retrying: 31 % of
    # attempts failed, but one request in ten did.
    series = [(m * MINUTE, counts(3, 0, 0)) for m in range(300)]
    series[200] = (200 * MINUTE, BucketCounts(6, 4, 3, 4, 0.01, 4, 1, 1))
    assert run(series)[0] == []


def test_an_outage_is_a_provider_storm_even_when_one_customer_dominates_the_traffic():
    # 60 of 80 failures are one big customer's, but the others fail at 20 % too.
    params = RetryStormParams(max_customer_share=0.5)
    outage = [(m * MINUTE, counts(200, 80, 70, 0, 0, top=60, top_requests=100)) for m in range(20)]
    assert run(outage, params)[0][0].status == "firing"


def test_one_failure_in_three_requests_is_not_a_storm():
    series = [(m * MINUTE, counts(3, 1 if m % 2 else 0, 1, 1, 0.01)) for m in range(200)]
    assert run(series)[0] == []


def test_a_retry_loop_without_errors_is_a_storm():
    series = [(m * MINUTE, counts(100, 0, 60 if m >= 100 else 1, 0, 0.0)) for m in range(130)]
    decisions, _ = run(series)
    assert decisions[0].status == "firing"
    assert decisions[0].values["retry_share"] > 0.15


def test_a_key_learns_its_warm_up_error_rate_clipped_at_the_floor():
    # 12 % errors all through the warm-up is learnt as 10 % (the floor), so that a storm
    # during warm-up does not become the normal: just after it 3 x 10 % = 30 % is the limit
    # and 34 % fires (3 x 12 % would be 36 %).
    calm = [(m * MINUTE, counts(100, 12, 5, 0, 0)) for m in range(PARAMS.warmup_buckets)]
    decisions, state = run(calm)
    assert decisions == []
    assert state.error_baseline == pytest.approx(PARAMS.error_rate, rel=1e-6)
    storm = [((PARAMS.warmup_buckets + m) * MINUTE, counts(100, 34, 5, 0, 0)) for m in range(10)]
    assert [d.status for d in run(storm, state=state)[0]] == ["firing"]


def test_the_threshold_rises_for_a_key_that_always_fails_more():
    # A key whose normal error rate is 12 % learns in warm-up that this is its normal
    # (clipped at the absolute 10 %): 12 % and 14 % are no storm, 45 % is.
    params = RetryStormParams(error_rate=0.10, baseline_factor=3.0)
    calm = [(m * MINUTE, counts(100, 12, 5, 0, 0)) for m in range(200)]
    decisions, state = run(calm, params)
    assert decisions == []
    assert 0.10 <= state.error_baseline <= 0.12  # learnt clipped at the limit in warm-up
    worse = [((200 + m) * MINUTE, counts(100, 14, 5, 0, 0)) for m in range(30)]
    assert run(worse, params, state)[0] == []
    storm = [((230 + m) * MINUTE, counts(100, 45, 40, 0, 0)) for m in range(10)]
    assert run(storm, params, state)[0][0].status == "firing"


@settings(max_examples=25, deadline=None)
@given(st.integers(min_value=1, max_value=599))
def test_state_round_trip_mid_stream_gives_the_same_decisions(cut):
    series = traffic(600, 3, storms=((300, 30, 0.5, 0.45),))
    whole, _ = run(series)
    first, state = run(series[:cut])
    restored = RetryStormState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert first + run(series[cut:], state=restored)[0] == whole


def window(state):
    """The ring's buckets, each as the 9 numbers of a BucketCounts, in storage order."""
    per_bucket = len(fields(BucketCounts))
    ring = state.ring.tolist()
    assert len(ring) == PARAMS.window_buckets * per_bucket
    return [ring[i : i + per_bucket] for i in range(0, len(ring), per_bucket)]


def test_gaps_empty_the_window():
    state = RetryStormState.new(PARAMS)
    run([(m * MINUTE, counts(100, 60, 50, 0, 0)) for m in range(3)], state=state)
    assert sum(bucket[0] for bucket in window(state)) == 300  # requests of the 3 buckets
    latest = counts(10, 1, 2, 1, 0.5)
    run([(500 * MINUTE, latest)], state=state)
    # the new bucket's numbers in its slot, every other slot (the storm's 3) empty
    assert sorted(window(state)) == [[0.0] * 9] * 4 + [list(astuple(latest))]


def test_a_storm_on_a_quiet_key_resolves_when_its_few_attempts_succeed_again():
    storm = [(m * MINUTE, counts(6, 4, 3)) for m in range(10)]
    quiet = [((10 + m) * MINUTE, counts(1, 0, 0)) for m in range(20)]  # window < min_requests
    decisions, _ = run(storm + quiet)
    assert [d.status for d in decisions] == ["firing", "resolved"]
    assert decisions[1].ends_at <= (10 + PARAMS.window_buckets) * MINUTE  # once the window clears


def test_a_storm_on_a_quiet_key_is_held_while_its_few_attempts_still_fail():
    storm = [(m * MINUTE, counts(6, 4, 3)) for m in range(10)]
    failing = [((10 + m) * MINUTE, counts(1, 1, 1)) for m in range(20)]
    decisions, _ = run(storm + failing)
    assert [d.status for d in decisions] == ["firing"]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 12) | st.integers(13, 60),  # buckets skipped before this one
            st.integers(0, 60),  # attempts
            st.floats(0.0, 1.0),  # failing share
        ),
        min_size=1,
        max_size=80,
    )
)
def test_skipped_buckets_are_judged_as_empty_buckets_would_be(steps):
    """update()'s short way through skipped buckets ends where judging each empty bucket
    does, however long the gap: same decisions, same state."""
    params = RetryStormParams(warmup_buckets=5, min_requests=10)
    fast, slow = RetryStormState.new(params), RetryStormState.new(params)
    got, want = [], []
    minute = 0
    for skipped, n, share in steps:
        if slow.last_t is not None:
            for i in range(skipped, 0, -1):
                want += retry_storm._push_and_judge(
                    slow, (minute + skipped - i) * MINUTE, MINUTE, BucketCounts(), params
                )
        minute += skipped
        bucket = counts(n, round(n * share), round(n * share / 2))
        got += retry_storm.update(fast, minute * MINUTE, MINUTE, bucket, params)
        want += retry_storm._push_and_judge(slow, minute * MINUTE, MINUTE, bucket, params)
        minute += 1
    assert got == want
    assert fast.to_dict() == slow.to_dict()


def test_a_storm_followed_by_a_long_silence_resolves_where_the_window_drained():
    """A key quiet for longer than the window and the calm: the resolve ends where judging
    every empty bucket ends it, not late (the short way once judged the gap's last
    buckets against the window of before the silence)."""
    params = RetryStormParams()
    clean = [(m * MINUTE, counts(200, 0, 0)) for m in range(100)]
    storm = [((100 + m) * MINUTE, counts(200, 100, 50)) for m in range(10)]
    after = [(210 * MINUTE, counts(200, 0, 0))]
    decisions, _ = run(clean + storm + after, params)
    filled = [((110 + m) * MINUTE, BucketCounts()) for m in range(100)]
    every, _ = run(clean + storm + filled + after, params)
    assert [d.status for d in decisions] == ["firing", "resolved"]
    assert decisions[1].ends_at == every[1].ends_at < 120 * MINUTE
