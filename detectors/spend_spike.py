"""spend_spike: spend in a bucket far above what this key usually spends at this hour.

A bucket breaches when all of these hold (each guards against a different false alarm):
the spend is above the seasonal baseline by ``relative_margin`` (the on-call rule of
thumb, 20 %), it is statistically unusual (``min_z`` standard deviations), and the excess
is worth money (``min_excess_usd_per_hour``). ``consecutive`` breaching buckets fire an
alert; it resolves after ``calm_buckets`` buckets below ``resolve_margin`` or ``resolve_z``.
Until the key has ``warmup_s`` of history only ``absolute_usd_per_hour`` can fire.
Breaching buckets are learnt clipped, so a spike does not teach the baseline that spikes
are normal.

A decision made during warm-up has no baseline to compare with, so its figures say so:
no ``baseline``, ``baseline_sd``, ``ratio`` or ``z``; ``threshold`` is the absolute limit
per bucket (USD), ``absolute_usd_per_hour`` the limit itself, ``warmup_s`` and
``history_s`` how far the key is from a baseline, and ``money_at_risk_usd_per_hour`` the
whole observed spend per hour: with nothing known to be normal yet, none of it is
explained (at or above the limit when the alert fires, so never $0 then).

>>> p = SpendSpikeParams(warmup_s=3600, min_excess_usd_per_hour=1.0, seasonal=False)
>>> state = SpendSpikeState.new(p)
>>> out = []
>>> for minute in range(120):
...     spend = 0.10 + 0.01 * (minute % 3) if minute < 100 else 1.0   # $/min: 10x at 100
...     out += update(state, minute * 60.0, 60.0, spend, p)
>>> [(d.status, d.severity, d.starts_at) for d in out]
[('firing', 'critical', 6000.0)]
>>> round(out[0].values["ratio"], 1)
9.1
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import ConfigDict, Field

from detectors import episode as episodes
from detectors.decision import HOURS_PER_MONTH, Decision
from detectors.episode import CRITICAL, WARNING, Episode, Transition
from detectors.ewstats import (
    _MEAN,
    _N,
    _SLOTS,
    _VAR,
    SECONDS_PER_SLOT,
    SLOTS_PER_DAY,
    SeasonalBaseline,
)

NAME = "spend_spike"
STATE_VERSION = 6
# Version 5 wrote the baseline's array as a JSON list of numbers (6: its bytes, base64);
# its records are still read, so a restarted worker restores what its predecessor wrote.
_LISTS_VERSION = 5
# The last buckets' spend kept in the state's array, for the alert's sparkline.
RECENT = 12
# Before them, the sustained rule's sums, as offsets from the array's end: the clipped
# excess, its variance (weights squared) and the excess as spent (each EW, per bucket
# over sustain_s); then the key's level, spend and what its baseline expected (EW over
# sustain_level_s), whose ratio (above 1, at most sustain_level_max) scales what the
# sustained rule expects.
_S_CLIPPED, _S_VAR, _S_SPENT, _L_SPENT, _L_EXPECTED = (RECENT + i for i in range(5, 0, -1))
TAIL = RECENT + 5
# How much of the gap since a key's last bucket is replayed as zero-spend buckets: older
# zeros have decayed out of a baseline with a few days of memory anyway.
MAX_GAP_BUCKETS = 1440
# SeasonalBaseline.expected's default: an hour's own statistics once it has this many.
_MIN_SLOT_COUNT = 10
# A quiet stretch of a key this long (buckets) or longer is learnt at once, in closed
# form (_learn_quiet_span); a shorter one bucket by bucket (_learn_quiet).
LONG_QUIET = 64
_COUNT_CAP = 1 << 24  # a seasonal slot's count stays exact in single precision


@dataclass(frozen=True, slots=True)
class SpendSpikeParams:
    """Thresholds of the spend_spike detector (config: detectors.spend_spike)."""

    __pydantic_config__ = ConfigDict(extra="forbid")

    enabled: Annotated[bool, Field(description="Run this detector.")] = True
    relative_margin: Annotated[
        float, Field(gt=0, description="Fire only above baseline x (1 + this); 0.2 = 20 %.")
    ] = 0.2
    min_z: Annotated[
        float, Field(ge=0, description="Fire only this many standard deviations above baseline.")
    ] = 5.0
    min_excess_usd_per_hour: Annotated[
        float, Field(ge=0, description="Fire only when spend above baseline is worth this, USD/h.")
    ] = 3.0
    consecutive: Annotated[
        int,
        Field(
            ge=1,
            le=60,
            description="Breaching buckets in a row before firing (the sustained rule, "
            "whose window confirms it, fires at once).",
        ),
    ] = 3
    resolve_margin: Annotated[
        float, Field(ge=0, description="Resolve below baseline x (1 + this) (hysteresis) ...")
    ] = 0.1
    resolve_z: Annotated[
        float, Field(ge=0, description="... or below this many standard deviations above it.")
    ] = 2.0
    calm_buckets: Annotated[
        int, Field(ge=1, le=240, description="Calm buckets in a row before resolving.")
    ] = 5
    rearm_s: episodes.RearmSeconds = 900.0
    critical_ratio: Annotated[
        float, Field(gt=1, description="Critical when spend is at least this x baseline ...")
    ] = 3.0
    critical_usd_per_hour: Annotated[
        float, Field(ge=0, description="... and the excess is at least this, USD/h.")
    ] = 20.0
    absolute_usd_per_hour: Annotated[
        float | None,
        Field(ge=0, description="Critical at this spend rate even during warm-up (null: off)."),
    ] = 1000.0
    warmup_s: Annotated[
        float, Field(ge=0, description="History a key needs before relative alerts, seconds.")
    ] = 86_400.0
    baseline_days: Annotated[
        float, Field(gt=0, description="Memory of the baseline, days (EW half-weight horizon).")
    ] = 3.0
    seasonal: Annotated[
        bool, Field(description="Learn a profile per hour of the UTC day (daily seasonality).")
    ] = True
    confirm_s: Annotated[
        float | None,
        Field(
            ge=0,
            description="Breaching time before firing, seconds (buckets: this over the "
            "bucket width, at least 1); null: consecutive buckets.",
        ),
    ] = None
    calm_s: Annotated[
        float | None,
        Field(
            ge=0,
            description="Calm time before resolving, seconds (at least 1 bucket); "
            "null: calm_buckets.",
        ),
    ] = None
    direction: Annotated[
        Literal["up", "down", "both"],
        Field(
            description="Which way a bucket may breach: up (above baseline; USD spend, "
            "where a night-time drop must not page), down, or both."
        ),
    ] = "up"
    skip_gaps: Annotated[
        bool,
        Field(
            description="Buckets without data are skipped (neither judged nor learnt) "
            "instead of judged as zero; for series whose gaps are missing data."
        ),
    ] = False
    clip_z: Annotated[
        float,
        Field(gt=0, description="Breaching buckets are learnt clipped at baseline + this sd."),
    ] = 3.0
    sustain_s: Annotated[
        float | None,
        Field(
            gt=0,
            le=86_400,
            description="Sustained rule: the excess over baseline summed with this EW time "
            "constant, seconds, so a lasting excess under min_excess_usd_per_hour is seen; "
            "null: off.",
        ),
    ] = 1200.0
    sustain_z: Annotated[
        float,
        Field(
            ge=0,
            description="... fires when that sum is this many standard deviations above "
            "baseline (each bucket counted at most clip_z: a brief spike is not lasting) ...",
        ),
    ] = 5.0
    sustain_margin: Annotated[
        float,
        Field(gt=0, description="... spend over the window is baseline x (1 + this) ..."),
    ] = 0.5
    sustain_usd_per_month: Annotated[
        float,
        Field(
            ge=0,
            description="... and the excess, at its rate over the window, is worth this "
            "over a month (730 h), USD.",
        ),
    ] = 100.0
    sustain_level_s: Annotated[
        float | None,
        Field(
            gt=0,
            description="The sustained rule follows the key's level (spend over what the "
            "baseline expected, EW over this long, seconds): a busier day than the "
            "baseline's days, as a Monday after the weekend it learnt, is expected within "
            "hours, a 40-minute loop hardly moves it; null: off.",
        ),
    ] = 10_800.0
    sustain_level_max: Annotated[
        float,
        Field(
            ge=1,
            description="... followed up to this many times the baseline: growth beyond "
            "it is an excess to report.",
        ),
    ] = 2.0
    no_data_buckets: Annotated[
        int | None,
        Field(
            ge=1,
            description="With skip_gaps: this many buckets in a row without data are an "
            "alert of their own (fired and resolved when data returns, figure "
            "missing_s); null: off.",
        ),
    ] = None


# The unit-free series mode (``spendwatch replay --series``, or per key in config): time,
# not buckets, for confirmation and calm; no USD rule or floor; gaps skipped; both ways.
SERIES_MODE: dict[str, Any] = {
    "confirm_s": 0.0,
    "calm_s": 600.0,
    "rearm_s": 3600.0,
    "absolute_usd_per_hour": None,
    "min_excess_usd_per_hour": 0.0,
    "critical_usd_per_hour": 0.0,
    "sustain_s": None,
    "skip_gaps": True,
    "no_data_buckets": 3,
    "direction": "both",
}


def in_buckets(seconds: float | None, buckets: int, width: float) -> int:
    """A period given in time as whole buckets (at least 1), or ``buckets`` without one.

    >>> in_buckets(None, 3, 60.0), in_buckets(600.0, 3, 60.0), in_buckets(0.0, 3, 3600.0)
    (3, 10, 1)
    """
    if seconds is None:
        return buckets
    return max(1, episodes.whole_buckets(seconds, width))


def baseline_alpha(params: SpendSpikeParams, width: float) -> float:
    """EW weight per learnt value, so a slot (or the series) remembers ``baseline_days``."""
    per_day = 86_400.0 / width
    if params.seasonal:
        per_day /= 24.0
    return min(1.0, 1.0 / max(1.0, per_day * params.baseline_days))


@dataclass(slots=True)
class SpendSpikeState:
    """Per-key state: the seasonal baseline, the episode, and the last bucket judged."""

    baseline: SeasonalBaseline
    episode: Episode | None = None  # only while an alert is open or building
    last_t: float | None = None
    slow: bool = False  # the episode was started by the sustained rule alone

    @classmethod
    def new(cls, params: SpendSpikeParams) -> SpendSpikeState:
        return cls(baseline=SeasonalBaseline(seasonal=params.seasonal, tail=TAIL))

    def recent(self, width: float) -> list[float]:
        """The spend of the last buckets judged (up to ``RECENT``), oldest first."""
        if self.last_t is None:
            return []
        stats = self.baseline.stats
        start = len(stats) - RECENT
        last = int(self.last_t // width)
        count = min(RECENT, self.baseline.n)
        return [float(stats[start + i % RECENT]) for i in range(last - count + 1, last + 1)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": STATE_VERSION,
            "baseline": self.baseline.to_dict(),
            "episode": episodes.to_dict(self.episode),
            "last_t": self.last_t,
            "slow": self.slow,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SpendSpikeState:
        """The state written by ``to_dict``, or by version 5 (the same, the array as a list
        of numbers); a version 4 state (before the sustained rule) keeps its baseline and
        gains empty sums."""
        version = data.get("v")
        if version == 4:
            baseline = dict(data["baseline"])
            stats = list(baseline["stats"])
            baseline["stats"] = stats[:-RECENT] + [0.0] * (TAIL - RECENT) + stats[-RECENT:]
            baseline["tail"] = TAIL
            data = {**data, "baseline": baseline}
        elif version not in (_LISTS_VERSION, STATE_VERSION):
            raise ValueError(f"spend_spike state version {version!r} != {STATE_VERSION}")
        return cls(
            baseline=SeasonalBaseline.from_dict(data["baseline"]),
            episode=episodes.from_dict(data["episode"]),
            last_t=data["last_t"],
            slow=data.get("slow", False),
        )


@dataclass(slots=True)
class _Bucket:
    """What every key judged for one bucket shares: its place in the day and in the
    recent ring, the per-hour scale, and the parameters as plain numbers. Built once per
    bucket (and gap bucket), not once per key; the same expressions give the same numbers.
    """

    t: float
    width: float
    params: SpendSpikeParams
    alpha: float
    per_hour: float
    recent_at: int  # offset of this bucket in the recent ring (from the array's end)
    slot_at: int  # this hour's (mean, var, count) in a seasonal baseline
    warmup_s: float
    fire_ratio: float
    min_z: float
    min_excess: float
    absolute: float | None
    clip_z: float
    rearm: int  # flap damping, in buckets
    consecutive: int
    calm: int
    up: bool  # which ways a bucket may breach
    down: bool
    resolve_z: float
    sustain: bool  # the sustained rule, and its numbers:
    level: bool  # the sustained rule follows the key's level
    decay: float  # per bucket, of the sums
    decay_var: float  # of the variance sum (weights squared)
    spent_per_hour: float  # from the spent sum to an excess rate, USD/h
    sustain_z: float
    sustain_ratio: float
    sustain_floor: float  # USD/h
    level_decay: float  # per bucket, of the level's sums
    level_max: float
    window2: float  # (sum of the weights)^2: the baseline mean's error enters the sum so
    samples: float  # the most values an EW mean stands for (its effective sample size)

    def quiet_sums(self, spent: float) -> bool:
        """True when the sustained rule can't fire on an empty bucket after a spent sum
        of ``spent``: the sum after it is at most decay x this (minus what is expected),
        so below zero or worth less than the rule's floor it stays there (or the rule is
        off)."""
        return (
            not self.sustain
            or spent < 0.0
            or spent * self.decay * self.spent_per_hour < self.sustain_floor
        )

    @classmethod
    def of(cls, t: float, width: float, params: SpendSpikeParams) -> _Bucket:
        return cls(
            t,
            width,
            params,
            baseline_alpha(params, width),
            3600.0 / width,
            RECENT - int(t // width) % RECENT,
            _SLOTS + 3 * (int(t // SECONDS_PER_SLOT) % SLOTS_PER_DAY),
            params.warmup_s,
            1.0 + params.relative_margin,
            params.min_z,
            params.min_excess_usd_per_hour,
            params.absolute_usd_per_hour,
            params.clip_z,
            episodes.rearm_buckets(params.rearm_s, width),
            in_buckets(params.confirm_s, params.consecutive, width),
            in_buckets(params.calm_s, params.calm_buckets, width),
            params.direction != "down",
            params.direction != "up",
            params.resolve_z,
            params.sustain_s is not None,
            params.sustain_level_s is not None,
            *_sustain_numbers(params, width),
        )


def _sustain_numbers(params: SpendSpikeParams, width: float) -> tuple[float, ...]:
    """The sustained rule's numbers for buckets of ``width`` seconds: the decay of its
    sums per bucket (and squared), the factor from the spent sum to USD/h (its EW mean),
    the z, the ratio to the mean, the floor in USD/h, the level's decay per bucket and
    bound, the squared sum of the weights and the baseline's effective sample size. A sum
    of excesses over an estimated mean is off by the estimate's error times the weights:
    with the mean learnt from n values, that adds (sum of weights)^2 x variance / n to the
    sum's variance, so a young baseline (an hour of the day seen once) needs a larger
    excess."""
    decay = math.exp(-width / params.sustain_s) if params.sustain_s else 0.0
    alpha = baseline_alpha(params, width)
    return (
        decay,
        decay * decay,
        (1.0 - decay) * 3600.0 / width,
        params.sustain_z,
        params.sustain_margin,
        params.sustain_usd_per_month / HOURS_PER_MONTH,
        math.exp(-width / params.sustain_level_s) if params.sustain_level_s else 0.0,
        params.sustain_level_max,
        1.0 / (1.0 - decay) ** 2,
        (2.0 - alpha) / alpha,
    )


# Buckets of the last (params, width) seen, by start time: every key of a bucket, and
# the gap buckets keys replay, share them. Bounded: cleared when full.
_buckets: dict[float, _Bucket] = {}
_buckets_of: tuple[SpendSpikeParams | None, float] = (None, 0.0)


def _bucket(t: float, width: float, params: SpendSpikeParams) -> _Bucket:
    global _buckets_of
    if params is not _buckets_of[0] or width != _buckets_of[1] or len(_buckets) > 4096:
        _buckets.clear()
        _buckets_of = (params, width)
    bucket = _buckets.get(t)
    if bucket is None:
        bucket = _buckets[t] = _Bucket.of(t, width, params)
    return bucket


def update(
    state: SpendSpikeState, t: float, width: float, spend: float, params: SpendSpikeParams
) -> list[Decision]:
    """Judge and learn the spend (USD) of the bucket starting at ``t`` (epoch s).

    Buckets skipped since the last call count as zero spend. Out-of-order calls for a
    bucket at or before the last one are ignored (the caller closes buckets in order).
    """
    last_t = state.last_t
    if last_t is not None:
        if t <= last_t:
            return []
        if params.skip_gaps:
            missing = _no_data(last_t, t, width, params)
            return missing + _judge_and_learn(state, spend, _bucket(t, width, params))
        gap = min(int(round((t - last_t) / width)) - 1, MAX_GAP_BUCKETS)
        if gap > 0:
            decisions: list[Decision] = []
            quiet = zero_is_quiet(params)
            i = gap
            while i > 0:
                if quiet and state.episode is None:
                    done = _learn_quiet_span(state, t, i, width, params) if i >= LONG_QUIET else 0
                    i -= done or _learn_quiet(state, t, i, width, params)
                    if i == 0:
                        break
                decisions += _judge_and_learn(state, 0.0, _bucket(t - i * width, width, params))
                i -= 1
            return decisions + _judge_and_learn(state, spend, _bucket(t, width, params))
    return _judge_and_learn(state, spend, _bucket(t, width, params))


def _learn_quiet(
    state: SpendSpikeState, t: float, count: int, width: float, params: SpendSpikeParams
) -> int:
    """Learn zero-spend buckets ``t - count * width`` .. ``t - width`` in order as
    :func:`_judge_and_learn` would, as long as none of them can breach; how many it learnt.

    A zero bucket of a key without an episode, judged up-only with the absolute rule off
    or above zero (:func:`zero_is_quiet`), breaches by no point rule, and nothing builds
    up in it (its residual is not above zero while the baseline is not below it). Nor can
    the sustained rule fire once its spent sum is below zero or worth less than the
    rule's floor: a zero bucket decays the sum and takes off what was expected. Such a
    bucket decides nothing and is learnt as it is: here the learning alone, the same
    expressions in the same order (so the same single-precision numbers), without the
    judging. The first bucket that can't be shown quiet is left to the caller.
    """
    baseline = state.baseline
    stats = baseline.stats
    end = len(stats)
    seasonal = baseline.seasonal
    sustain, level = params.sustain_s is not None, params.sustain_level_s is not None
    first = _bucket(t - count * width, width, params)
    alpha, clip_z = first.alpha, first.clip_z
    decay, decay_var, level_decay, level_max = (
        first.decay,
        first.decay_var,
        first.level_decay,
        first.level_max,
    )
    at_spent, at_clipped, at_var = end - _S_SPENT, end - _S_CLIPPED, end - _S_VAR
    at_level_spent, at_level_expected = end - _L_SPENT, end - _L_EXPECTED
    done = 0
    while done < count:
        if not first.quiet_sums(stats[at_spent]):
            break
        bucket_t = t - (count - done) * width  # as the caller's loop writes it
        at = _SLOTS + 3 * (int(bucket_t // SECONDS_PER_SLOT) % SLOTS_PER_DAY) if seasonal else 0
        if seasonal and stats[at + 2] >= _MIN_SLOT_COUNT:
            mean, sd = float(stats[at]), math.sqrt(max(0.0, stats[at + 1]))
        else:
            mean, sd = float(stats[_MEAN]), math.sqrt(max(0.0, stats[_VAR]))
        if mean < 0.0:
            break
        stats[end - (RECENT - int(bucket_t // width) % RECENT)] = 0.0
        if sustain:
            expected = mean
            if level:
                level_spent, level_expected = stats[at_level_spent], stats[at_level_expected]
                if level_spent > level_expected > 0.0:
                    expected = mean * min(level_spent / level_expected, level_max)
                stats[at_level_spent] = level_decay * level_spent + 0.0
                stats[at_level_expected] = level_decay * level_expected + mean
            sd_eff = max(sd, 0.05 * mean, 1e-9)
            residual = 0.0 - expected
            stats[at_clipped] = decay * stats[at_clipped] + min(residual, clip_z * sd_eff)
            stats[at_var] = decay_var * stats[at_var] + sd_eff * sd_eff
            stats[at_spent] = decay * stats[at_spent] + residual
        stats[_N] += 1
        weight = max(alpha, 1.0 / int(stats[_N]))
        d = 0.0 - stats[_MEAN]
        stats[_MEAN] += weight * d
        stats[_VAR] = (1.0 - weight) * (stats[_VAR] + weight * d * d)
        if seasonal:
            slot_count = int(stats[at + 2]) + 1
            stats[at + 2] = min(slot_count, 1 << 24)
            weight = max(alpha, 1.0 / slot_count)
            d = 0.0 - stats[at]
            stats[at] += weight * d
            stats[at + 1] = (1.0 - weight) * (stats[at + 1] + weight * d * d)
        done += 1
    if done:
        state.last_t = t - (count - done + 1) * width
    return done


def _learn_quiet_span(
    state: SpendSpikeState, t: float, count: int, width: float, params: SpendSpikeParams
) -> int:
    """Learn zero-spend buckets ``t - count * width`` .. ``t - width`` at once: ``count``
    if the first of them is quiet (as in :func:`_learn_quiet`, and then so is every one
    after it), else 0 and nothing learnt. One key's row of :func:`_learn_quiet_rows`.
    """
    stats = state.baseline.stats
    held = np.frombuffer(bytearray(stats), dtype=np.float32).reshape(1, len(stats))
    seasonal = state.baseline.seasonal
    if not _learn_quiet_rows(held, np.array([count]), t, width, params, seasonal)[0]:
        return 0
    memoryview(stats).cast("B")[:] = held[0].tobytes()
    state.last_t = t - width
    return count


def _learn_quiet_rows(
    stats: np.ndarray,
    gaps: np.ndarray,
    t: float,
    width: float,
    params: SpendSpikeParams,
    seasonal: bool,
) -> np.ndarray:
    """Quiet gaps of many keys learnt at once, in place: row ``i`` of ``stats`` (keys'
    arrays side by side, single precision) learns its ``gaps[i]`` zero-spend buckets
    ``t - gaps[i] * width`` .. ``t - width``. Returns where a row was learnt; a row whose
    first skipped bucket is not quiet (its spent sum, a baseline below zero, a level too
    slow for the closed form) is left untouched, for :func:`update` to judge.

    With nothing spent, each bucket multiplies an exponentially weighted mean, and its
    mean square, by one minus its weight: after k buckets by the product of those, at
    whatever weights (1/n while young, alpha after). So the baseline's mean and variance
    after the stretch, and before each of its buckets (for what the sums expected), come
    in closed form per hour of the day; the rule's sums and the level are weighted sums
    of those, taken as dot products. In double precision: the state agrees with learning
    bucket by bucket to single precision's rounding, not bit for bit.

    The matrix has a column per bucket of the longest gap, aligned at its end (column c
    is the bucket ``t - (G - c) * width``), so every row shares the columns' hours of the
    day and the sums' weights; a row's columns before its gap multiply by one and add
    zero.
    """
    f64 = np.float64
    bucket = _bucket(t - width, width, params)  # what every bucket of the gap shares
    end = stats.shape[1]
    view = stats.astype(f64)
    ok = view[:, _MEAN] >= 0.0
    if seasonal:
        ok &= (view[:, _SLOTS : _SLOTS + 3 * SLOTS_PER_DAY : 3] >= 0.0).all(axis=1)
    if bucket.sustain:
        spent0 = view[:, end - _S_SPENT]  # quiet_sums, row by row
        ok &= (spent0 < 0.0) | (
            spent0 * bucket.decay * bucket.spent_per_hour < bucket.sustain_floor
        )
    if bucket.level:
        ok &= gaps * width / float(params.sustain_level_s or 1.0) <= 500.0
    rows = np.flatnonzero(ok)
    if len(rows) == 0:
        return ok
    v, g = view[rows], gaps[rows].astype(f64)
    count = int(g.max())
    columns = np.arange(count, dtype=f64)
    steps = columns - (count - g)[:, None]  # a row's buckets count from 0; before: < 0
    active = steps >= 0.0
    steps = np.maximum(steps, 0.0)
    alpha = bucket.alpha
    # The whole key: the product of (1 - weight) before each bucket, and after all.
    n0, m0, v0 = v[:, _N : _N + 1], v[:, _MEAN : _MEAN + 1], v[:, _VAR : _VAR + 1]
    keep = np.where(active, 1.0 - np.maximum(alpha, 1.0 / (n0 + 1.0 + steps)), 1.0)
    after = np.cumprod(keep, axis=1)
    before = np.concatenate((np.ones((len(rows), 1)), after[:, :-1]), axis=1)
    mean = m0 * before
    var = before * v0 + before * (1.0 - before) * m0 * m0
    if seasonal:
        _slot_rows(v, t, count, width, alpha, active, mean, var)
    if bucket.sustain:
        expected = mean
        if bucket.level:
            decay_l = bucket.level_decay
            level_spent = v[:, end - _L_SPENT : end - _L_SPENT + 1]
            level_expected = v[:, end - _L_EXPECTED : end - _L_EXPECTED + 1]
            added = np.cumsum(np.where(active, mean * decay_l ** -(steps + 1.0), 0.0), axis=1)
            powers = decay_l**steps
            spent_l = powers * level_spent
            expected_l = powers * (
                level_expected + np.concatenate((np.zeros((len(rows), 1)), added[:, :-1]), axis=1)
            )
            busier = (spent_l > expected_l) & (expected_l > 0.0)
            ratio = np.minimum(spent_l / np.where(busier, expected_l, 1.0), bucket.level_max)
            expected = np.where(busier, mean * ratio, mean)
            last = decay_l**g
            v[:, end - _L_SPENT] = last * level_spent[:, 0]
            v[:, end - _L_EXPECTED] = last * (level_expected[:, 0] + added[:, -1])
        sd_eff = np.maximum(np.maximum(np.sqrt(np.maximum(var, 0.0)), 0.05 * mean), 1e-9)
        back = count - 1.0 - columns
        taken = np.where(active, expected, 0.0) @ (bucket.decay**back)
        decayed = bucket.decay**g
        v[:, end - _S_CLIPPED] = decayed * v[:, end - _S_CLIPPED] - taken
        v[:, end - _S_SPENT] = decayed * v[:, end - _S_SPENT] - taken
        v[:, end - _S_VAR] = bucket.decay_var**g * v[:, end - _S_VAR] + np.where(
            active, sd_eff * sd_eff, 0.0
        ) @ (bucket.decay_var**back)
    p = after[:, -1]
    v[:, _N] = np.minimum(n0[:, 0] + g, _COUNT_CAP)
    m0, v0 = m0[:, 0], v0[:, 0]
    v[:, _MEAN], v[:, _VAR] = m0 * p, p * v0 + p * (1.0 - p) * m0 * m0
    for back_n in range(1, min(count, RECENT) + 1):  # the recent ring's empty buckets
        at = end - (RECENT - int((t - back_n * width) // width) % RECENT)
        v[g >= back_n, at] = 0.0
    stats[rows] = v.astype(np.float32)
    return ok


def _slot_rows(
    v: np.ndarray,
    t: float,
    count: int,
    width: float,
    alpha: float,
    active: np.ndarray,
    mean: np.ndarray,
    var: np.ndarray,
) -> None:
    """_learn_quiet_rows' hours of the day: each row's hours in ``v`` learn their empty
    buckets; ``mean`` and ``var`` take the hour's where it has its own statistics. The
    columns are taken grouped by hour (an hour may come twice in a day-long gap), so each
    hour's products are running sums of logs restarted per hour, and its count before a
    bucket the active buckets before it."""
    rows = len(v)
    slots = v[:, _SLOTS : _SLOTS + 3 * SLOTS_PER_DAY].reshape(rows, SLOTS_PER_DAY, 3)
    times = t - (count - np.arange(count, dtype=np.float64)) * width
    hour = (np.floor(times / SECONDS_PER_SLOT).astype(np.int64)) % SLOTS_PER_DAY
    order = np.argsort(hour, kind="stable")
    sorted_hour = hour[order]
    firsts = np.concatenate(([0], np.flatnonzero(np.diff(sorted_hour)) + 1))
    group = np.repeat(firsts, np.diff(np.append(firsts, count)))  # each column's first
    on = active[:, order]
    prior = np.cumsum(on, axis=1) - on  # active buckets before, in the whole row
    occurred = prior - prior[:, group]
    slot = slots[:, sorted_hour]  # rows x columns x 3
    seen = np.minimum(slot[:, :, 2] + occurred, _COUNT_CAP)
    logs = np.where(
        on, np.log(np.maximum(1.0 - np.maximum(alpha, 1.0 / (seen + 1.0)), 1e-300)), 0.0
    )
    total = np.cumsum(logs, axis=1)
    base = (total - logs)[:, group]
    before, after = np.exp(total - logs - base), np.exp(total - base)
    own = on & (seen >= _MIN_SLOT_COUNT)
    sm, sv = slot[:, :, 0], slot[:, :, 1]
    unsort = np.empty_like(order)
    unsort[order] = np.arange(count)
    mean_own = (sm * before)[:, unsort]
    var_own = (before * sv + before * (1.0 - before) * sm * sm)[:, unsort]
    own = own[:, unsort]
    np.copyto(mean, mean_own, where=own)
    np.copyto(var, var_own, where=own)
    lasts = np.append(firsts[1:], count) - 1
    hours = sorted_hour[firsts]
    p = after[:, lasts]
    sm, sv = slots[:, hours, 0], slots[:, hours, 1]
    slots[:, hours, 0], slots[:, hours, 1] = sm * p, p * sv + p * (1.0 - p) * sm * sm
    learnt = prior[:, lasts] + on[:, lasts] - prior[:, firsts]
    slots[:, hours, 2] = np.minimum(slots[:, hours, 2] + learnt, _COUNT_CAP)
    v[:, _SLOTS : _SLOTS + 3 * SLOTS_PER_DAY] = slots.reshape(rows, -1)


def _no_data(last_t: float, t: float, width: float, params: SpendSpikeParams) -> list[Decision]:
    """A skipped gap of at least ``no_data_buckets`` buckets as an alert that fired when
    its last needed bucket closed without data and resolved when data came back at ``t``.

    >>> p = SpendSpikeParams(skip_gaps=True, no_data_buckets=3)
    >>> [(d.status, d.starts_at, d.ends_at, d.values["missing_s"])
    ...  for d in _no_data(600.0, 960.0, 60.0, p)]    # 5 buckets without data
    [('firing', 660.0, None, 300.0), ('resolved', 660.0, 960.0, 300.0)]
    >>> _no_data(600.0, 900.0, 60.0, SpendSpikeParams(skip_gaps=True, no_data_buckets=5))
    []
    """
    needed = params.no_data_buckets
    missing = int(round((t - last_t) / width)) - 1
    if needed is None or missing < needed:
        return []
    start = last_t + width
    values = {"observed": 0.0, "missing_s": missing * width, "bucket_s": width}
    fired = Transition("firing", WARNING, start)
    resolved = Transition("resolved", WARNING, start, t)
    return [Decision.of(NAME, fired, values), Decision.of(NAME, resolved, values)]


def zero_is_quiet(params: SpendSpikeParams) -> bool:
    """True when a bucket without spend can neither breach nor start an episode: then
    judging a quiet key's empty bucket when it closes, or later as part of a gap, learns
    the same and decides nothing either way."""
    return (
        params.absolute_usd_per_hour is None or params.absolute_usd_per_hour > 0
    ) and params.direction == "up"


def update_many(
    states: Sequence[SpendSpikeState],
    t: float,
    width: float,
    spends: Sequence[float],
    params: SpendSpikeParams,
) -> dict[int, list[Decision]]:
    """:func:`update` for many keys and one bucket: ``states[i]`` learns ``spends[i]``.

    Returns the decisions by index, only for keys that have some. Keys that learn an
    ordinary bucket (no episode, no breach, no gap) are judged and learnt together with
    numpy, by the same expressions in float64 as :func:`_judge_and_learn`, stored to the
    same single-precision arrays, so the results are identical. Keys back after a quiet
    gap of ``BATCH_QUIET`` buckets or more learn it together first, in closed form
    (:func:`_learn_quiet_rows`: the same state as update() to single precision's
    rounding), then judge this bucket with the ordinary ones. Every other key goes
    through :func:`update` on its own.

    >>> p = SpendSpikeParams(warmup_s=600, seasonal=False)
    >>> batch = [SpendSpikeState.new(p) for _ in range(20)]
    >>> alone = [SpendSpikeState.new(p) for _ in range(20)]
    >>> for minute in range(30):
    ...     spends = [0.01 * (k + 1) * (1 + minute % 3) for k in range(20)]
    ...     _ = update_many(batch, minute * 60.0, 60.0, spends, p)
    ...     for state, spend in zip(alone, spends):
    ...         _ = update(state, minute * 60.0, 60.0, spend, p)
    >>> [s.to_dict() for s in batch] == [s.to_dict() for s in alone]
    True
    """
    out: dict[int, list[Decision]] = {}
    if params.direction != "up" or params.skip_gaps:  # the batch judges up-only, with zeros
        for i, state in enumerate(states):
            if decisions := update(state, t, width, spends[i], params):
                out[i] = decisions
        return out
    seasonal = params.seasonal
    size = _SLOTS + (3 * SLOTS_PER_DAY if seasonal else 0) + TAIL
    batch: list[int] = []
    quiet: list[int] = []  # after a long gap, to learn as a batch first
    gaps: list[int] = []
    previous = t - width
    quiet_gaps = zero_is_quiet(params)
    for i, state in enumerate(states):
        last = state.last_t
        if (
            state.episode is None
            and state.baseline.seasonal is seasonal
            and len(state.baseline.stats) == size
        ):
            if last is None or last == previous:
                batch.append(i)
                continue
            gap = int(round((t - last) / width)) - 1 if t > last else -1
            if gap == 0:
                batch.append(i)
                continue
            if quiet_gaps and gap >= BATCH_QUIET:
                quiet.append(i)
                gaps.append(min(gap, MAX_GAP_BUCKETS))
                continue
        if decisions := update(state, t, width, spends[i], params):
            out[i] = decisions
    # Gaps learnt together, in closed form (update() learns a long one so alone), to single
    # precision's rounding: the keys learnt then judge this bucket as ordinary keys, the
    # others on their own. Short and long gaps apart, so a short one is not padded to a day.
    for low, high in _GAP_BINS:
        rows_of = [j for j, gap in enumerate(gaps) if low <= gap < high]
        if not rows_of:
            continue
        held = np.frombuffer(
            bytearray(b"".join([states[quiet[j]].baseline.stats for j in rows_of])),
            dtype=np.float32,
        ).reshape(len(rows_of), size)
        lengths = np.array([gaps[j] for j in rows_of])
        learnt = _learn_quiet_rows(held, lengths, t, width, params, seasonal).tolist()
        for row, j in enumerate(rows_of):
            i, state = quiet[j], states[quiet[j]]
            if learnt[row]:
                memoryview(state.baseline.stats).cast("B")[:] = held[row].tobytes()
                state.last_t = previous
                batch.append(i)
            elif decisions := update(state, t, width, spends[i], params):
                out[i] = decisions
    if len(batch) < _MIN_BATCH:
        for i in batch:
            if decisions := update(states[i], t, width, spends[i], params):
                out[i] = decisions
        return dict(sorted(out.items()))
    # The keys' arrays side by side in one buffer, learnt as rows of one matrix in place.
    rows = bytearray(b"".join([states[i].baseline.stats for i in batch]))
    stats = np.frombuffer(rows, dtype=np.float32).reshape(len(batch), size)
    spend = np.array([spends[i] for i in batch], dtype=np.float64)
    breaching = _learn_ordinary(stats, spend, _bucket(t, width, params), seasonal).tolist()
    row_bytes, learnt = size * stats.itemsize, memoryview(rows)
    for j, i in enumerate(batch):
        state = states[i]
        if breaching[j]:  # judged on its own, from its untouched state
            if decisions := update(state, t, width, spends[i], params):
                out[i] = decisions
            continue
        memoryview(state.baseline.stats).cast("B")[:] = learnt[j * row_bytes : (j + 1) * row_bytes]
        state.last_t = t
    return dict(sorted(out.items()))


# Below this many ordinary keys in a bucket numpy's per-call cost outweighs its speed.
_MIN_BATCH = 16
# update_many learns the gaps of this many buckets or more of every key in a bucket as
# one matrix (_learn_quiet_rows); a shorter one as update() does, exactly (a loop of a
# few buckets costs less than its share of a matrix).
BATCH_QUIET = 8
# The matrices of one bucket, by gap length: a row costs its matrix's longest gap, so gaps
# of about the same length go together (each matrix also costs numpy's calls, ~0.25 ms).
_GAP_BINS = ((0, LONG_QUIET), (LONG_QUIET, 256), (256, 1024), (1024, MAX_GAP_BUCKETS + 1))


def _learn_ordinary(
    stats: np.ndarray, spend: np.ndarray, bucket: _Bucket, seasonal: bool
) -> np.ndarray:
    """_judge_and_learn of rows without an episode, in place (float64 maths, stored in
    single precision as the arrays do). True where a row breaches: its learning here is
    to be discarded, as it needs the episode logic."""
    f64 = np.float64
    at = bucket.slot_at if seasonal else 0
    stats[:, stats.shape[1] - bucket.recent_at] = spend
    if seasonal:
        use_slot = stats[:, at + 2] >= _MIN_SLOT_COUNT
        mean = np.where(use_slot, stats[:, at], stats[:, _MEAN]).astype(f64)
        var = np.where(use_slot, stats[:, at + 1], stats[:, _VAR]).astype(f64)
        learnt_from = np.where(use_slot, stats[:, at + 2], stats[:, _N]).astype(f64)
    else:
        mean, var = stats[:, _MEAN].astype(f64), stats[:, _VAR].astype(f64)
        learnt_from = stats[:, _N].astype(f64)
    sd = np.sqrt(np.maximum(0.0, var))
    per_hour = bucket.per_hour
    excess_per_hour = (spend - mean) * per_hour
    z = (spend - mean) / np.maximum(np.maximum(sd, 0.05 * mean), 1e-9)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(mean > 0, spend / mean, np.where(spend > 0, np.inf, 1.0))
    warm = stats[:, _N].astype(f64) * bucket.width >= bucket.warmup_s
    breach: np.ndarray = (
        warm
        & (ratio >= bucket.fire_ratio)
        & (z >= bucket.min_z)
        & (excess_per_hour >= bucket.min_excess)
    )
    if bucket.absolute is not None:
        breach |= spend * per_hour >= bucket.absolute
    if bucket.sustain:
        end = stats.shape[1]
        expected = mean
        if bucket.level:
            level_spent = stats[:, end - _L_SPENT].astype(f64)
            level_expected = stats[:, end - _L_EXPECTED].astype(f64)
            busier = (level_spent > level_expected) & (level_expected > 0.0)
            with np.errstate(divide="ignore", invalid="ignore"):
                level = np.minimum(level_spent / level_expected, bucket.level_max)
                expected = np.where(busier, mean * level, mean)
            stats[:, end - _L_SPENT] = bucket.level_decay * level_spent + spend
            stats[:, end - _L_EXPECTED] = bucket.level_decay * level_expected + mean
        sd_eff = np.maximum(np.maximum(sd, 0.05 * mean), 1e-9)
        residual = spend - expected
        clipped = bucket.decay * stats[:, end - _S_CLIPPED].astype(f64) + np.minimum(
            residual, bucket.clip_z * sd_eff
        )
        var_sum = bucket.decay_var * stats[:, end - _S_VAR].astype(f64) + sd_eff * sd_eff
        spent = bucket.decay * stats[:, end - _S_SPENT].astype(f64) + residual
        stats[:, end - _S_CLIPPED] = clipped
        stats[:, end - _S_VAR] = var_sum
        stats[:, end - _S_SPENT] = spent
        excess = spent * bucket.spent_per_hour
        samples = np.minimum(np.maximum(learnt_from, 1.0), bucket.samples)
        error = bucket.window2 * sd_eff * sd_eff / samples
        sustained_z = clipped / np.sqrt(var_sum + error)
        # Rows where a lasting excess is building learn at another weight: judged alone.
        breach |= warm & (sustained_z >= bucket.resolve_z) & (residual > 0.0)
        breach |= (
            warm
            & (sustained_z >= bucket.sustain_z)
            & (excess > 0.0)
            & (excess >= bucket.sustain_floor)
            & (excess >= bucket.sustain_ratio * expected * per_hour)
        )
    # No episode and no breach: the bucket is learnt as it is (not clipped).
    alpha = bucket.alpha
    stats[:, _N] = stats[:, _N].astype(f64) + 1
    weight = np.maximum(alpha, 1.0 / stats[:, _N].astype(f64))
    d = spend - stats[:, _MEAN].astype(f64)
    stats[:, _MEAN] = stats[:, _MEAN].astype(f64) + weight * d
    stats[:, _VAR] = (1.0 - weight) * (stats[:, _VAR].astype(f64) + weight * d * d)
    if seasonal:
        count = stats[:, at + 2].astype(f64) + 1
        stats[:, at + 2] = np.minimum(count, 1 << 24)
        weight = np.maximum(alpha, 1.0 / count)
        d = spend - stats[:, at].astype(f64)
        stats[:, at] = stats[:, at].astype(f64) + weight * d
        stats[:, at + 1] = (1.0 - weight) * (stats[:, at + 1].astype(f64) + weight * d * d)
    return breach


def _judge_and_learn(state: SpendSpikeState, spend: float, bucket: _Bucket) -> list[Decision]:
    # SeasonalBaseline.expected and .update written out (this runs for every key in every
    # bucket): the same expressions in the same order give the same numbers.
    t = bucket.t
    state.last_t = t
    baseline = state.baseline
    stats = baseline.stats
    stats[len(stats) - bucket.recent_at] = spend
    seasonal = baseline.seasonal
    at = bucket.slot_at if seasonal else 0
    if seasonal and stats[at + 2] >= _MIN_SLOT_COUNT:
        mean, sd, learnt_from = float(stats[at]), math.sqrt(max(0.0, stats[at + 1])), at + 2
    else:
        mean, sd, learnt_from = float(stats[_MEAN]), math.sqrt(max(0.0, stats[_VAR])), _N
    per_hour = bucket.per_hour
    excess_per_hour = (spend - mean) * per_hour
    # A perfectly flat history has sd 0; a floor keeps z finite and meaningful.
    z = (spend - mean) / max(sd, 0.05 * mean, 1e-9)
    ratio = spend / mean if mean > 0 else math.inf if spend > 0 else 1.0
    # History is counted in learnt buckets (gaps count up to MAX_GAP_BUCKETS), so a
    # sparse key warms up no sooner than a busy one.
    width = bucket.width
    warm = int(stats[_N]) * width >= bucket.warmup_s
    relative = (
        warm
        and ratio >= bucket.fire_ratio
        and z >= bucket.min_z
        and excess_per_hour >= bucket.min_excess
    )
    absolute = bucket.absolute is not None and spend * per_hour >= bucket.absolute
    if not bucket.up:
        relative = False
    lower = (
        bucket.down
        and warm
        and spend <= mean * (2.0 - bucket.fire_ratio)
        and -z >= bucket.min_z
        and -excess_per_hour >= bucket.min_excess
    )
    sustained = building = False
    sustained_z = sustained_excess = 0.0
    expected = mean
    if bucket.sustain:
        end = len(stats)
        if bucket.level:
            level_spent, level_expected = stats[end - _L_SPENT], stats[end - _L_EXPECTED]
            if level_spent > level_expected > 0.0:  # a busier day than the baseline's
                expected = mean * min(level_spent / level_expected, bucket.level_max)
            stats[end - _L_SPENT] = bucket.level_decay * level_spent + spend
            stats[end - _L_EXPECTED] = bucket.level_decay * level_expected + mean
        sd_eff = max(sd, 0.05 * mean, 1e-9)
        residual = spend - expected
        clipped = bucket.decay * stats[end - _S_CLIPPED] + min(residual, bucket.clip_z * sd_eff)
        var_sum = bucket.decay_var * stats[end - _S_VAR] + sd_eff * sd_eff
        spent = bucket.decay * stats[end - _S_SPENT] + residual
        stats[end - _S_CLIPPED] = clipped
        stats[end - _S_VAR] = var_sum
        stats[end - _S_SPENT] = spent
        samples = min(max(float(stats[learnt_from]), 1.0), bucket.samples)
        sustained_z = clipped / math.sqrt(var_sum + bucket.window2 * sd_eff * sd_eff / samples)
        sustained_excess = spent * bucket.spent_per_hour
        # A lasting excess building up is not learnt at a young hour's 1/n weight: the
        # baseline would take in half of it within the hour that should report it.
        building = warm and sustained_z >= bucket.resolve_z and residual > 0.0
        sustained = (
            warm
            and bucket.up
            and sustained_z >= bucket.sustain_z
            and sustained_excess > 0.0  # an excess, whatever the floor (it may be 0)
            and sustained_excess >= bucket.sustain_floor
            and sustained_excess >= bucket.sustain_ratio * expected * per_hour
        )
    # The sustained rule starts an episode or carries its own; it does not hold open one
    # a spike started (the sums still remember the spike for a while after it).
    if sustained and state.episode is not None and not state.slow:
        sustained = False
    breach = relative or absolute or lower or sustained
    params = bucket.params
    if state.episode is None and not breach:
        transitions: list[Transition] = []  # advance()'s answer for an idle key, no severity
    else:
        if state.episode is None:  # a new episode: which rule starts it
            state.slow = not (relative or absolute or lower)
        elevated = absolute or (
            bucket.up
            and ratio >= 1.0 + params.resolve_margin
            and z >= params.resolve_z
            and excess_per_hour >= 0.5 * params.min_excess_usd_per_hour
        )
        if state.slow:  # a lasting excess stays open while its sums say so (hysteresis:
            elevated = elevated or (  # half its ratio and money, resolve_z)
                sustained_z >= params.resolve_z
                and sustained_excess >= 0.5 * bucket.sustain_floor
                and sustained_excess >= 0.5 * bucket.sustain_ratio * expected * per_hour
            )
        critical = absolute or (
            bucket.up
            and ratio >= params.critical_ratio
            and excess_per_hour >= params.critical_usd_per_hour
        )
        if bucket.down:
            elevated = elevated or (
                spend <= mean * (1.0 - params.resolve_margin)
                and -z >= params.resolve_z
                and -excess_per_hour >= 0.5 * params.min_excess_usd_per_hour
            )
            critical = critical or (
                lower
                and spend * params.critical_ratio <= mean
                and -excess_per_hour >= params.critical_usd_per_hour
            )
        severity = CRITICAL if critical else WARNING
        state.episode, transitions = episodes.advance(
            state.episode,
            t,
            width,
            breach,
            elevated,
            severity,
            consecutive=1 if state.slow else bucket.consecutive,
            calm_needed=bucket.calm,
            rearm_buckets=bucket.rearm,
        )
    # Learn the bucket, clipped while it looks anomalous so spikes stay anomalous.
    episode = state.episode
    learnt = (
        min(spend, mean + bucket.clip_z * sd)
        if (breach or (episode is not None and episode.firing)) and warm
        else spend
    )
    if bucket.down and learnt < mean and warm and (breach or episode is not None):
        learnt = max(learnt, mean - bucket.clip_z * sd)  # a drop is learnt clipped too
    alpha = bucket.alpha
    stats[_N] += 1
    weight = alpha if building else max(alpha, 1.0 / int(stats[_N]))
    d = learnt - stats[_MEAN]
    stats[_MEAN] += weight * d
    stats[_VAR] = (1.0 - weight) * (stats[_VAR] + weight * d * d)
    if seasonal:
        count = int(stats[at + 2]) + 1
        stats[at + 2] = min(count, 1 << 24)  # exact in single precision
        weight = alpha if building else max(alpha, 1.0 / count)
        d = learnt - stats[at]
        stats[at] += weight * d
        stats[at + 1] = (1.0 - weight) * (stats[at + 1] + weight * d * d)
    if not transitions:
        return []
    slow = state.slow
    if state.episode is None:
        state.slow = False
        if bucket.sustain and not slow:  # a spike's alert is over: its excess is told
            end = len(stats)
            stats[end - _S_CLIPPED] = stats[end - _S_SPENT] = 0.0
    if not warm:
        values = _warmup_values(spend, bucket, int(stats[_N]) * width)
        return [Decision.of(NAME, tr, values) for tr in transitions]
    values = {
        "observed": spend,
        "baseline": mean,
        "baseline_sd": sd,
        "ratio": ratio if math.isfinite(ratio) else 0.0,
        "z": z,
        "threshold": mean * (1.0 + params.relative_margin),
        "money_at_risk_usd_per_hour": max(0.0, excess_per_hour),
        "bucket_s": width,
    }
    if slow:  # the figures of the lasting excess, over the rule's window
        values["sustained_z"] = sustained_z
        values["sustained_excess_usd_per_hour"] = sustained_excess
        values["sustain_s"] = float(params.sustain_s or 0.0)
        values["money_at_risk_usd_per_hour"] = max(0.0, sustained_excess)
    if bucket.down:  # two-sided: which way this bucket went
        values["direction"] = 1.0 if spend >= mean else -1.0
    return [Decision.of(NAME, tr, values) for tr in transitions]


def _warmup_values(spend: float, bucket: _Bucket, history_s: float) -> dict[str, float]:
    """The figures of a decision made before the key has a baseline (only the absolute
    limit can have fired): what was spent (USD per bucket), against that limit; all of it
    at risk. ``history_s``: the key's history, seconds, this bucket included.

    >>> p = SpendSpikeParams(absolute_usd_per_hour=50.0, consecutive=1)
    >>> [d] = update(SpendSpikeState.new(p), 0.0, 60.0, 1.0, p)    # $1/min = $60/h
    >>> "ratio" in d.values, d.values["money_at_risk_usd_per_hour"], d.values["threshold"]
    (False, 60.0, 0.8333333333333334)
    """
    values = {"observed": spend}
    if bucket.absolute is not None:
        values["threshold"] = bucket.absolute / bucket.per_hour
        values["absolute_usd_per_hour"] = bucket.absolute
    values["money_at_risk_usd_per_hour"] = spend * bucket.per_hour
    values["history_s"] = history_s
    values["warmup_s"] = bucket.warmup_s
    values["bucket_s"] = bucket.width
    return values
