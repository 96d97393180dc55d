"""Flap damping: a breach soon after an alert went calm continues the alert (one episode,
flaps counted); later than the re-arm time it is a new alert. Boundaries on both sides."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from detectors import retry_storm, spend_spike
from detectors.episode import Episode, Transition, rearm_buckets
from detectors.retry_storm import RetryStormParams, RetryStormState
from detectors.spend_spike import SpendSpikeParams, SpendSpikeState
from tests.detectors.series import DAY_MINUTES, MINUTE, START, spend_series
from tests.detectors.test_retry_storm import counts


def old_step(ep: Episode, t: float, breach: bool, elevated: bool, c: int, calm: int) -> list:
    """Episode.step as it was before flap damping: the reference for rearm 0."""
    ep.streak = ep.streak + 1 if breach else 0
    if not ep.firing:
        if ep.streak >= c:
            ep.firing, ep.severity, ep.calm = True, "warning", 0
            ep.started_at = t - (ep.streak - 1) * MINUTE
            return [Transition("firing", "warning", ep.started_at)]
        return []
    if elevated:
        ep.calm = 0
    else:
        ep.calm += 1
        if ep.calm >= calm:
            ep.firing = False
            ended = t - (ep.calm - 1) * MINUTE
            ep.calm = 0
            return [Transition("resolved", ep.severity, ep.started_at, ended)]
    return []


verdicts = st.lists(st.tuples(st.booleans(), st.booleans()), max_size=200)


def walk(steps: list[tuple[bool, bool]]):
    """(bucket start, breach, elevated) of ``steps``; a breaching bucket is elevated too."""
    for i, (breach, elevated) in enumerate(steps):
        yield i * MINUTE, breach, elevated or breach


def step(ep: Episode, t: float, breach: bool, elevated: bool, c: int, calm: int, rearm: int):
    return ep.step(
        t, MINUTE, breach, elevated, "warning", consecutive=c, calm_needed=calm, rearm_buckets=rearm
    )


@given(verdicts, st.integers(1, 4), st.integers(1, 6))
def test_without_a_rearm_time_episodes_are_what_they_were(steps, consecutive, calm):
    new, old = Episode(), Episode()
    for t, breach, elevated in walk(steps):
        got = step(new, t, breach, elevated, consecutive, calm, 0)
        assert got == old_step(old, t, breach, elevated, consecutive, calm)


@given(verdicts, st.integers(1, 4), st.integers(1, 6), st.integers(0, 40))
def test_damping_never_adds_alerts_and_keeps_transitions_paired(steps, consecutive, calm, rearm):
    damped, plain = Episode(), Episode()
    fired = {"damped": 0, "plain": 0}
    open_ = False
    for t, breach, elevated in walk(steps):
        for tr in step(damped, t, breach, elevated, consecutive, calm, rearm):
            assert (tr.status == "firing") != open_  # firing, resolved, firing, ...
            open_ = tr.status == "firing"
            fired["damped"] += tr.status == "firing"
            if tr.status == "resolved":
                assert tr.ends_at is not None and tr.starts_at <= tr.ends_at <= t
        plain_out = step(plain, t, breach, elevated, consecutive, calm, 0)
        fired["plain"] += sum(tr.status == "firing" for tr in plain_out)
    assert fired["damped"] <= fired["plain"]


def test_the_rearm_time_covers_whole_buckets():
    assert rearm_buckets(900.0, 60.0) == 15
    assert rearm_buckets(901.0, 60.0) == 16
    assert rearm_buckets(0.0, 60.0) == 0


def spiky(gap_minutes: int) -> list[tuple[float, float]]:
    """Three days of clean traffic with two 20-minute 6x spikes ``gap_minutes`` apart."""
    onset = 2 * DAY_MINUTES + 600
    second = onset + 20 + gap_minutes
    return spend_series(days=3, seed=4, spikes=((onset, 20, 6.0), (second, 20, 6.0)))


def spend_run(series, params):
    state = SpendSpikeState.new(params)
    out = []
    for t, spend in series:
        out += spend_spike.update(state, t, MINUTE, spend, params)
    return out


def test_spend_spike_default_rearm_is_fifteen_minutes():
    assert SpendSpikeParams().rearm_s == 900.0
    assert RetryStormParams().rearm_s == 900.0


@pytest.mark.parametrize(
    ("gap", "episodes"),
    [(8, 1), (12, 1), (30, 2), (45, 2)],  # the calm starts a minute or two after a spike
)
def test_a_spike_again_soon_after_the_calm_is_the_same_alert(gap, episodes):
    decisions = spend_run(spiky(gap), SpendSpikeParams())
    firing = [d for d in decisions if d.status == "firing"]
    resolved = [d for d in decisions if d.status == "resolved"]
    assert len(firing) == episodes and len(resolved) == episodes
    if episodes == 1:
        assert resolved[0].values["flaps"] == 1.0
        assert resolved[0].starts_at == firing[0].starts_at
        onset_t = START + (2 * DAY_MINUTES + 600) * MINUTE
        second_end = onset_t + (40 + gap) * MINUTE
        assert second_end - 2 * MINUTE <= resolved[0].ends_at <= second_end + 3 * MINUTE
    else:
        assert all("flaps" not in d.values for d in decisions)


def test_with_damping_off_the_same_spikes_are_two_alerts():
    decisions = spend_run(spiky(12), SpendSpikeParams(rearm_s=0))
    assert [d.status for d in decisions] == ["firing", "resolved", "firing", "resolved"]


def calm_then_breach(rearm_s: float, quiet_minutes: int) -> list[str]:
    """An episode that goes calm, then a breach ``quiet_minutes`` after the calm began."""
    ep = Episode()
    out: list[str] = []
    seq = [True, True] + [False] * quiet_minutes + [True, True] + [False] * 60
    for i, breach in enumerate(seq):
        for tr in ep.step(
            i * MINUTE,
            MINUTE,
            breach,
            breach,
            "warning",
            consecutive=2,
            calm_needed=5,
            rearm_buckets=rearm_buckets(rearm_s, MINUTE),
        ):
            out.append(tr.status)
    return out


def test_the_rearm_boundary_on_both_sides():
    # The second breach's episode would start quiet_minutes after the calm began; it is a
    # flap while the held episode has not resolved (calm < 15 buckets when it comes).
    assert calm_then_breach(900.0, 13) == ["firing", "resolved"]  # second streak ends at 14
    assert calm_then_breach(900.0, 14) == ["firing", "resolved", "firing", "resolved"]


def test_retry_storm_flaps_are_one_alert():
    params = RetryStormParams(warmup_buckets=5, min_requests=10)
    state = RetryStormState.new(params)
    out = []
    minutes = (
        [(m, counts(20, 0, 0)) for m in range(60)]
        + [(m, counts(20, 10, 5)) for m in range(60, 70)]
        + [(m, counts(20, 0, 0)) for m in range(70, 80)]
        + [(m, counts(20, 10, 5)) for m in range(80, 90)]
        + [(m, counts(20, 0, 0)) for m in range(90, 150)]
    )
    for m, bucket in minutes:
        out += retry_storm.update(state, START + m * MINUTE, MINUTE, bucket, params)
    assert [d.status for d in out] == ["firing", "resolved"]
    assert out[-1].values["flaps"] == 1.0
