"""retry_storm: failures and retries far above normal, over a short rolling window.

Per key (a customer's endpoint, or a provider/model across all customers) the detector
keeps the last ``window_buckets`` buckets of attempt counts and judges the window: the
error rate (failed attempts / attempts) and the retry share (attempts with attempt > 1),
each against an absolute floor, against ``baseline_factor`` x its own slow baseline, and
for statistical surprise (a Chernoff bound on the count at the baseline rate).
Fewer than ``min_requests`` attempts in the window is never a storm (1 failure in 3
requests is not one). Rate-limit share and the dollars burnt on failed attempts are
reported, and the dollars decide the severity together with the error rate.

>>> p = RetryStormParams(min_requests=20)
>>> s = RetryStormState.new(p)
>>> out = []
>>> for minute in range(30):
...     bad = minute >= 20
...     counts = BucketCounts(requests=100, failures=60 if bad else 1, retries=50 if bad else 1,
...                           rate_limited=55 if bad else 0, wasted_usd=0.3 if bad else 0.0,
...                           first_failures=30 if bad else 1, retried_requests=25 if bad else 1)
...     out += update(s, minute * 60.0, 60.0, counts, p)
>>> [(d.status, d.severity, d.starts_at) for d in out]
[('firing', 'critical', 1200.0)]
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from pydantic import ConfigDict, Field

from detectors import episode as episodes
from detectors.decision import Decision
from detectors.encoding import pack, unpack
from detectors.episode import CRITICAL, WARNING, Episode
from detectors.ewstats import TYPECODE, ew_update, ew_weight

NAME = "retry_storm"
STATE_VERSION = 6
# Version 5 wrote the stats as a JSON list of numbers (6: their bytes, base64); its records
# are still read, so a restarted worker restores what its predecessor wrote.
_LISTS_VERSION = 5
# Ring fields per bucket (offsets), see BucketCounts.
_REQ, _FAIL, _RETRY, _LIMITED, _WASTED, _TOP, _FIRST_FAIL, _RETRIED, _TOP_REQ = range(9)
_FIELDS = 9


@dataclass(slots=True)
class BucketCounts:
    """Attempts of one key in one bucket. Money in USD."""

    requests: float = 0.0
    failures: float = 0.0
    retries: float = 0.0
    rate_limited: float = 0.0
    wasted_usd: float = 0.0
    # Failures of the customer with the most of them: tells one customer's retry loop
    # from a provider outage in a provider/model key. Equal to ``failures`` per customer.
    top_customer_failures: float = 0.0
    # Per request rather than per attempt (first attempts that failed; requests retried at
    # least once, i.e. attempts numbered 2): independent units for the significance test,
    # as one request's chain of failing retries is one event, not five.
    first_failures: float = 0.0
    retried_requests: float = 0.0
    # Attempts of the customer with the most failures (see top_customer_failures).
    top_customer_requests: float = 0.0


@dataclass(frozen=True, slots=True)
class RetryStormParams:
    """Thresholds of the retry_storm detector (config: detectors.retry_storm)."""

    __pydantic_config__ = ConfigDict(extra="forbid")

    enabled: Annotated[bool, Field(description="Run this detector.")] = True
    window_buckets: Annotated[
        int, Field(ge=1, le=60, description="Buckets in the rolling window judged together.")
    ] = 5
    min_requests: Annotated[
        int, Field(ge=1, description="Attempts the window needs before it can be a storm.")
    ] = 10
    error_rate: Annotated[
        float, Field(gt=0, le=1, description="Fire above this share of failed attempts.")
    ] = 0.10
    retry_share: Annotated[
        float, Field(gt=0, le=1, description="Fire above this share of retries (attempt > 1).")
    ] = 0.15
    baseline_factor: Annotated[
        float, Field(ge=1, description="... and above this x the key's own baseline rate ...")
    ] = 3.0
    significance: Annotated[
        float,
        Field(
            gt=0,
            lt=1,
            description="... and this unlikely at the baseline rate (p-value "
            "bound per window; small, as it applies to every key every bucket).",
        ),
    ] = 1e-6
    min_baseline_rate: Annotated[
        float, Field(gt=0, lt=1, description="Baseline rate assumed at least, for significance.")
    ] = 0.01
    max_customer_share: Annotated[
        float,
        Field(
            gt=0,
            le=1,
            description="Above this share of failures from one customer, "
            "a provider/model storm is that customer's alone (1: no check).",
        ),
    ] = 1.0
    consecutive: Annotated[
        int, Field(ge=1, le=60, description="Breaching buckets in a row before firing.")
    ] = 2
    calm_buckets: Annotated[
        int, Field(ge=1, le=240, description="Calm buckets in a row before resolving.")
    ] = 5
    rearm_s: episodes.RearmSeconds = 900.0
    critical_error_rate: Annotated[
        float, Field(gt=0, le=1, description="Critical at this error rate ...")
    ] = 0.4
    critical_wasted_usd_per_hour: Annotated[
        float, Field(ge=0, description="... or when failed attempts burn this much, USD/h.")
    ] = 50.0
    baseline_buckets: Annotated[
        int, Field(ge=1, description="Memory of the baseline rates, in buckets.")
    ] = 1440
    warmup_buckets: Annotated[
        int, Field(ge=0, description="Judged windows before the baseline factor applies.")
    ] = 60


# RetryStormState.stats layout: n, error-rate mean and variance, retry-share mean and
# variance, then the window's ring of buckets, _FIELDS numbers each. One flat array keeps
# the state small enough for 100k keys.
_BASE_N, _ERROR_BASE, _RETRY_BASE, _RING = 0, 1, 3, 5


@dataclass(slots=True)
class RetryStormState:
    """Per-key state: baseline rates and the window's ring in one array, and the episode."""

    stats: array
    episode: Episode | None = None  # only while an alert is open or building
    last_t: float | None = None

    @classmethod
    def new(cls, params: RetryStormParams) -> RetryStormState:
        size = _RING + _FIELDS * params.window_buckets
        return cls(stats=array(TYPECODE, bytes(array(TYPECODE).itemsize * size)))

    @property
    def ring(self) -> array:
        """A copy of the window's counts, oldest slot first in storage order."""
        return self.stats[_RING:]

    def recent(self, width: float) -> list[float]:
        """The error rate of each bucket in the window, oldest first (for a sparkline)."""
        if self.last_t is None:
            return []
        stats = self.stats
        window = (len(stats) - _RING) // _FIELDS
        last = int(self.last_t // width)
        out = []
        for index in range(last - window + 1, last + 1):
            slot = _RING + index % window * _FIELDS
            requests = stats[slot + _REQ]
            out.append(float(stats[slot + _FAIL]) / requests if requests else 0.0)
        return out

    @property
    def error_baseline(self) -> float:
        return float(self.stats[_ERROR_BASE])

    @property
    def retry_baseline(self) -> float:
        return float(self.stats[_RETRY_BASE])

    @property
    def baseline_n(self) -> int:
        return int(self.stats[_BASE_N])

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": STATE_VERSION,
            "stats": pack(self.stats),
            "episode": episodes.to_dict(self.episode),
            "last_t": self.last_t,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RetryStormState:
        if data.get("v") not in (_LISTS_VERSION, STATE_VERSION):
            raise ValueError(f"retry_storm state version {data.get('v')!r} != {STATE_VERSION}")
        return cls(
            stats=unpack(TYPECODE, data["stats"]),
            episode=episodes.from_dict(data["episode"]),
            last_t=data["last_t"],
        )


def update(
    state: RetryStormState, t: float, width: float, counts: BucketCounts, params: RetryStormParams
) -> list[Decision]:
    """Add the bucket starting at ``t`` (epoch s) to the window and judge the window.

    Buckets skipped since the last call are empty; a bucket at or before the last one is
    ignored (the caller closes buckets in order).
    """
    window = (len(state.stats) - _RING) // _FIELDS
    if state.last_t is not None:
        if t <= state.last_t:
            return []
        skipped = int(round((t - state.last_t) / width)) - 1
        decisions: list[Decision] = []
        # The gap's first buckets drain the window and settle an open episode; once the
        # window holds nothing and no episode is open, the rest of the gap has nothing
        # to judge and would leave the ring as empty as it is.
        for n, i in enumerate(range(skipped, 0, -1), start=1):
            decisions += _push_empty(state, t - i * width, width, params)
            if n >= window and state.episode is None:
                break
        return decisions + _push_and_judge(state, t, width, counts, params)
    return _push_and_judge(state, t, width, counts, params)


_EMPTY = array(TYPECODE, [0.0] * _FIELDS)
# Below this many keys in a bucket numpy's fixed cost (about 0.1-0.2 ms a call) outweighs
# update()'s 3-4 us a key. Measured in the worker (bench/kafka_e2e.py, 600k events, 4
# partitions, about 55 keys a call): batching from 16 keys took it from 28,900 to 23,400
# events per CPU second; numpy's calls cost about twice there what they do in replay.
_MIN_BATCH = 128


def update_many(
    states: list[RetryStormState],
    t: float,
    width: float,
    counts: np.ndarray,
    params: RetryStormParams,
    min_batch: int = _MIN_BATCH,
) -> dict[int, list[Decision]]:
    """:func:`update` for many keys and one bucket: ``states[i]`` takes the bucket's counts
    ``counts[i]`` (a row per key, the ring's fields in order: requests, failures, retries,
    rate-limited, wasted USD, top customer's failures, first failures, retried requests,
    top customer's requests). Returns the decisions by index, only for keys that have some.

    Keys without an episode whose window, with this bucket in it, is over neither rate's
    limit (nor, after a gap, holds enough attempts to judge an empty bucket of the gap)
    decide nothing: their ring and baseline are written together with numpy, by the same
    expressions in the same order as :func:`update` (sums taken slot by slot, stored to
    the same single-precision array), so the state is the same bit for bit. Every other
    key goes through :func:`update` on its own, from its untouched state, as do all of
    them when fewer than ``min_batch`` keys could be batched.

    >>> p = RetryStormParams(min_requests=5, warmup_buckets=3)
    >>> batch = [RetryStormState.new(p) for _ in range(20)]
    >>> alone = [RetryStormState.new(p) for _ in range(20)]
    >>> for minute in range(12):
    ...     rows = np.array([[5 + k, k % 3, k % 2, 0, 0.01, k % 3, k % 3, k % 2, 5 + k]
    ...                      for k in range(20)], dtype=float) * (minute % 4 != 1)
    ...     _ = update_many(batch, minute * 60.0, 60.0, rows, p, min_batch=1)
    ...     for state, row in zip(alone, rows.tolist()):
    ...         _ = update(state, minute * 60.0, 60.0, BucketCounts(*row), p)
    >>> [s.to_dict() for s in batch] == [s.to_dict() for s in alone]
    True
    """
    out: dict[int, list[Decision]] = {}

    def on_its_own(i: int) -> None:  # update() for key i, from its state as it is
        if decisions := update(states[i], t, width, BucketCounts(*counts[i].tolist()), params):
            out[i] = decisions

    window = params.window_buckets
    size = _RING + _FIELDS * window
    index = int(t // width)
    batch: list[int] = []
    skipped: list[int] = []  # per batched key: the empty buckets before this one
    for i, state in enumerate(states):
        last = state.last_t
        if state.episode is None and len(state.stats) == size and (last is None or t > last):
            batch.append(i)
            skipped.append(0 if last is None else int(round((t - last) / width)) - 1)
        else:
            on_its_own(i)
    if len(batch) < min_batch:
        for i in batch:
            on_its_own(i)
        return dict(sorted(out.items()))
    stats = np.frombuffer(
        bytearray(b"".join([states[i].stats for i in batch])), dtype=np.float32
    ).reshape(len(batch), size)
    ring = stats[:, _RING:].reshape(len(batch), window, _FIELDS)  # a view: slot, field
    gaps = np.array(skipped)
    alone = np.zeros(len(batch), dtype=bool)  # left to update(), from the untouched state
    # A gap's empty buckets, oldest first, as update() drains them: the first empties its
    # slot, and if the window still holds enough attempts update() judges that empty
    # bucket. If not, no later one is judged either (slots only empty): the gap just
    # empties the slots of its first min(gap, window) buckets.
    for k in range(window):
        rows = np.flatnonzero(gaps > k)
        if len(rows) == 0:
            break
        ring[rows, (index - gaps[rows] + k) % window, :] = 0.0
        if k == 0:
            alone[rows] = _slot_sums(ring[rows], _REQ) >= params.min_requests
    slot = index % window
    ring[:, slot, :] = counts[batch]
    requests = _slot_sums(ring, _REQ)
    judged = requests >= params.min_requests  # below: nothing judged, nothing learnt
    with np.errstate(divide="ignore", invalid="ignore"):
        error_rate = _slot_sums(ring, _FAIL) / requests
        retry_share = _slot_sums(ring, _RETRY) / requests
    n = stats[:, _BASE_N].astype(np.float64)
    factor = np.where(n >= params.warmup_buckets, params.baseline_factor, 0.0)
    error_limit = np.maximum(params.error_rate, factor * stats[:, _ERROR_BASE].astype(np.float64))
    retry_limit = np.maximum(params.retry_share, factor * stats[:, _RETRY_BASE].astype(np.float64))
    alone |= judged & ((error_rate >= error_limit) | (retry_share >= retry_limit))
    # Judged and under both limits: no breach, so learnt (during warm-up clipped at the
    # absolute limits, which these rates are under anyway).
    learn = np.flatnonzero(judged & ~alone)
    if len(learn):
        stats[learn, _BASE_N] = n[learn] + 1.0
        learnt_n = stats[learn, _BASE_N].astype(np.int64)
        weight = np.maximum(1.0 / params.baseline_buckets, 1.0 / learnt_n)
        _ew_rows(stats, learn, _ERROR_BASE, error_rate[learn], weight)
        _ew_rows(stats, learn, _RETRY_BASE, retry_share[learn], weight)
    learnt = memoryview(stats.tobytes())
    row_bytes = size * stats.itemsize
    flags = alone.tolist()
    for j, i in enumerate(batch):
        state = states[i]
        if flags[j]:
            on_its_own(i)
            continue
        memoryview(state.stats).cast("B")[:] = learnt[j * row_bytes : (j + 1) * row_bytes]
        state.last_t = t
    return dict(sorted(out.items()))


def _slot_sums(ring: np.ndarray, field: int) -> np.ndarray:
    """``sum(stats[_RING + field :: _FIELDS])`` of each row: slot by slot, in storage
    order, in double precision (as Python's sum of the array's values)."""
    total = ring[:, 0, field].astype(np.float64)
    for slot in range(1, ring.shape[1]):
        total = total + ring[:, slot, field]
    return total


def _ew_rows(
    stats: np.ndarray, rows: np.ndarray, at: int, x: np.ndarray, weight: np.ndarray
) -> None:
    """ew_update of ``stats[row, at]`` (mean) and ``[row, at + 1]`` (variance) for each row,
    with the same expressions in the same order."""
    mean = stats[rows, at].astype(np.float64)
    d = x - mean
    stats[rows, at] = mean + weight * d
    stats[rows, at + 1] = (1.0 - weight) * (stats[rows, at + 1].astype(np.float64) + weight * d * d)


def _push_empty(
    state: RetryStormState, t: float, width: float, params: RetryStormParams
) -> list[Decision]:
    """``_push_and_judge`` of an empty bucket, short when it has nothing to judge (an idle
    key whose window holds too few attempts: most skipped buckets)."""
    stats = state.stats
    slot = _RING + int(t // width) % ((len(stats) - _RING) // _FIELDS) * _FIELDS
    stats[slot : slot + _FIELDS] = _EMPTY
    if state.episode is None and sum(stats[_RING + _REQ :: _FIELDS]) < params.min_requests:
        state.last_t = t
        return []
    return _push_and_judge(state, t, width, BucketCounts(), params)


def _push_and_judge(
    state: RetryStormState, t: float, width: float, counts: BucketCounts, params: RetryStormParams
) -> list[Decision]:
    state.last_t = t
    stats = state.stats
    window = (len(stats) - _RING) // _FIELDS
    slot = _RING + int(t // width) % window * _FIELDS
    stats[slot + _REQ] = counts.requests
    stats[slot + _FAIL] = counts.failures
    stats[slot + _RETRY] = counts.retries
    stats[slot + _LIMITED] = counts.rate_limited
    stats[slot + _WASTED] = counts.wasted_usd
    stats[slot + _TOP] = counts.top_customer_failures
    stats[slot + _FIRST_FAIL] = counts.first_failures
    stats[slot + _RETRIED] = counts.retried_requests
    stats[slot + _TOP_REQ] = counts.top_customer_requests
    requests = sum(stats[_RING + _REQ :: _FIELDS])
    if requests < params.min_requests:
        # Too few attempts to judge: an open storm is held while the few attempts still
        # fail (a retry loop on a quiet endpoint dips under the minimum), and calms when
        # they do not, or when traffic stopped altogether.
        if state.episode is None:
            return []  # what advance() returns for an idle key without a breach
        failing = requests > 0 and (
            sum(stats[_RING + _FAIL :: _FIELDS]) >= 0.5 * params.error_rate * requests
            or sum(stats[_RING + _RETRY :: _FIELDS]) >= 0.5 * params.retry_share * requests
        )
        state.episode, transitions = episodes.advance(
            state.episode,
            t,
            width,
            False,
            failing,
            WARNING,
            consecutive=params.consecutive,
            calm_needed=params.calm_buckets,
            rearm_buckets=episodes.rearm_buckets(params.rearm_s, width),
        )
        return [Decision.of(NAME, tr, {"requests": requests}) for tr in transitions]
    failures = sum(stats[_RING + _FAIL :: _FIELDS])
    retries = sum(stats[_RING + _RETRY :: _FIELDS])
    error_rate = failures / requests
    retry_share = retries / requests
    first_attempts = max(requests - retries, 1.0)
    first_failure_rate = min(1.0, sum(stats[_RING + _FIRST_FAIL :: _FIELDS]) / first_attempts)
    retried_rate = min(1.0, sum(stats[_RING + _RETRIED :: _FIELDS]) / first_attempts)
    warm = stats[_BASE_N] >= params.warmup_buckets
    factor = params.baseline_factor if warm else 0.0
    error_limit = max(params.error_rate, factor * stats[_ERROR_BASE])
    retry_limit = max(params.retry_share, factor * stats[_RETRY_BASE])
    surprise = -math.log(params.significance)
    # One customer's own retry loop is not a provider storm: most failures are theirs and
    # everyone else's attempts fail at the normal rate. (Sums taken only when needed.)
    concentrated = (
        failures > 0
        and (top_failures := sum(stats[_RING + _TOP :: _FIELDS])) / failures
        > params.max_customer_share
        and (failures - top_failures)
        < error_limit * (requests - sum(stats[_RING + _TOP_REQ :: _FIELDS]))
    )
    # Rates are judged per attempt (what the bill sees); surprise per request (what is
    # independent): the share of first attempts that failed, or that were retried.
    floor = params.min_baseline_rate
    error_surprise = first_attempts * kl_divergence(
        first_failure_rate, max(stats[_ERROR_BASE], floor)
    )
    retry_surprise = first_attempts * kl_divergence(retried_rate, max(stats[_RETRY_BASE], floor))
    breach = not concentrated and (
        (error_rate >= error_limit and error_surprise >= surprise)
        or (retry_share >= retry_limit and retry_surprise >= surprise)
    )
    # Hysteresis: an open storm stays open while rates stay above half the limits and are
    # still far from chance (a lower bar than to fire).
    elevated = (error_rate >= 0.5 * error_limit and error_surprise >= 0.25 * surprise) or (
        retry_share >= 0.5 * retry_limit and retry_surprise >= 0.25 * surprise
    )
    if state.episode is None and not breach:
        transitions = []  # what advance() returns for an idle key, without judging severity
    else:
        # Severity is judged on the newest buckets too (a storm fills the window only
        # gradually) because an episode keeps the severity it fired with.
        wasted_per_hour = _wasted_per_hour(stats, width)
        recent_rate, recent_wasted = _recent(stats, t, width, params.consecutive)
        critical = (
            max(error_rate, recent_rate) >= params.critical_error_rate
            or max(wasted_per_hour, recent_wasted) >= params.critical_wasted_usd_per_hour
        )
        state.episode, transitions = episodes.advance(
            state.episode,
            t,
            width,
            breach,
            elevated,
            CRITICAL if critical else WARNING,
            consecutive=params.consecutive,
            calm_needed=params.calm_buckets,
            rearm_buckets=episodes.rearm_buckets(params.rearm_s, width),
            began_at=_began(stats, t, width, error_limit, retry_limit) if breach else None,
        )
    # Warm-up learns every window, clipped at the absolute limits while it breaches: a key
    # that always fails 12 % learns it is no storm at 14 %, and a storm during warm-up does
    # not become the normal. After warm-up, storms are kept out of the baseline.
    if not warm:
        stats[_BASE_N] += 1
        weight = ew_weight(1.0 / params.baseline_buckets, int(stats[_BASE_N]))
        ew_update(stats, _ERROR_BASE, min(error_rate, params.error_rate), weight)
        ew_update(stats, _RETRY_BASE, min(retry_share, params.retry_share), weight)
    elif not (breach or episodes.firing(state.episode)):
        stats[_BASE_N] += 1
        weight = ew_weight(1.0 / params.baseline_buckets, int(stats[_BASE_N]))
        ew_update(stats, _ERROR_BASE, error_rate, weight)
        ew_update(stats, _RETRY_BASE, retry_share, weight)
    if not transitions:
        return []
    wasted_per_hour = _wasted_per_hour(stats, width)
    rate_limited_share = sum(stats[_RING + _LIMITED :: _FIELDS]) / requests
    values = {
        "observed": error_rate,
        "baseline": float(stats[_ERROR_BASE]),
        "threshold": error_limit,
        # The Chernoff bound as a normal deviate: exp(-n KL) ~ exp(-z^2 / 2).
        "z": math.sqrt(2.0 * error_surprise),
        "error_rate": error_rate,
        "retry_share": retry_share,
        "retry_share_baseline": float(stats[_RETRY_BASE]),
        "rate_limited_share": rate_limited_share,
        "requests": requests,
        "wasted_usd_per_hour": wasted_per_hour,
        "money_at_risk_usd_per_hour": wasted_per_hour,
        "bucket_s": width,
    }
    return [Decision.of(NAME, tr, values) for tr in transitions]


def kl_divergence(q: float, p: float) -> float:
    """KL divergence of Bernoulli(q) from Bernoulli(p), in nats; 0 when q <= p.

    By the Chernoff bound, ``n`` attempts at failure probability ``p`` show a failure
    share of at least ``q`` with probability at most ``exp(-n * kl_divergence(q, p))``:
    this is what makes "statistically unusual" exact for small counts, where a normal
    approximation would call 3 failures in 30 attempts a storm.

    >>> round(kl_divergence(0.1, 0.015), 4), kl_divergence(0.01, 0.015)
    (0.1085, 0.0)
    """
    if q <= p:
        return 0.0
    if q >= 1.0:
        return -math.log(p)
    return q * math.log(q / p) + (1.0 - q) * math.log((1.0 - q) / (1.0 - p))


def _wasted_per_hour(stats: array, width: float) -> float:
    """USD per hour burnt on failed attempts over the window."""
    window = (len(stats) - _RING) // _FIELDS
    return sum(stats[_RING + _WASTED :: _FIELDS]) * 3600.0 / (width * window)


def _began(stats: array, t: float, width: float, error_limit: float, retry_limit: float) -> float:
    """Start of the run of newest buckets whose own rates are over a limit (window-bounded).

    A window becomes significant only after a few bad buckets; the storm began with them.
    """
    window = (len(stats) - _RING) // _FIELDS
    newest = int(t // width)
    began = t
    for b in range(newest, newest - window, -1):
        slot = _RING + b % window * _FIELDS
        requests = stats[slot + _REQ]
        if not requests or (
            stats[slot + _FAIL] < error_limit * requests
            and stats[slot + _RETRY] < retry_limit * requests
        ):
            break
        began = b * width
    return began


def _recent(stats: array, t: float, width: float, buckets: int) -> tuple[float, float]:
    """(error rate, wasted USD/h) over the newest ``buckets`` buckets of the ring."""
    window = (len(stats) - _RING) // _FIELDS
    newest = int(t // width)
    requests = failures = wasted = 0.0
    for b in range(newest - min(buckets, window) + 1, newest + 1):
        slot = _RING + b % window * _FIELDS
        requests += stats[slot + _REQ]
        failures += stats[slot + _FAIL]
        wasted += stats[slot + _WASTED]
    span = width * min(buckets, window)
    return (failures / requests if requests else 0.0), wasted * 3600.0 / span
