"""The bucket series of a few keys, and the baseline their detector saw, for backtest charts.

Nothing here changes detection. A second replay of the same input (files or a topic range)
runs the pipeline's own ingest (parsing, pricing, de-duplication, lateness) and event-time
buckets with every detector off; :class:`RecordingBuckets` keeps, for the wanted keys
only, the counts row of each closed bucket (per customer, per customer and endpoint, and
the provider/model rollup the global stage gets). :func:`replay_band` then feeds a key's
buckets through the detector's own ``update`` with a config's parameters, calling it for
exactly the buckets the pipeline would (buckets with data, buckets while an episode is
open, and the zero buckets a gap is filled with), and reads the baseline before each
bucket is learnt: the band is what the detector saw, not a look-alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from detectors import retry_storm, spend_spike
from detectors.retry_storm import BucketCounts, RetryStormParams, RetryStormState
from detectors.spend_spike import SpendSpikeParams, SpendSpikeState
from stream.core.buckets import (
    COST,
    FAILURES,
    FIRST_FAILURES,
    RATE_LIMITED,
    REQUESTS,
    RETRIED,
    RETRIES,
    TOP_CUSTOMER,
    TOP_REQUESTS,
    WASTED,
    Buckets,
    RowKey,
)
from stream.core.detect import EAGER_BUCKETS, CustomerDetection
from stream.core.events import Customer
from stream.core.pipeline import Pipeline
from stream.core.pricing import PriceTable
from stream.offline.backtest import KeyLabels
from stream.offline.replay import ReplayReport
from stream.settings import Settings


def _add(into: dict[KeyLabels, list[float]], key: KeyLabels, row: list[float]) -> None:
    total = into.get(key)
    if total is None:
        into[key] = list(row[:TOP_CUSTOMER])
    else:
        for i in range(TOP_CUSTOMER):
            total[i] += row[i]


class RecordingBuckets(Buckets):
    """Event-time buckets that also keep each closed bucket's counts for ``keys``."""

    def __init__(self, settings: Settings, keys: set[KeyLabels]) -> None:
        super().__init__(settings.buckets.width_s, settings.buckets.allowed_lateness_s)
        self.keys = keys
        self.plans: dict[str, str] = {}  # customer_id -> plan, for rules matching a plan
        self.rows: dict[KeyLabels, dict[int, list[float]]] = {k: {} for k in keys}
        self.last_index: int | None = None
        # Only its provider/model rollup is used: the very rollup the global stage judges.
        self._rollups = CustomerDetection(settings, lambda _: None)
        self._want_models = any(k and k[0][0] == "provider" for k in keys)

    def pop(self, index: int) -> dict[RowKey, list[float]]:
        rows = super().pop(index)
        self.last_index = index if self.last_index is None else max(self.last_index, index)
        found: dict[KeyLabels, list[float]] = {}
        keys = self.keys
        for (customer, endpoint, _, _), row in rows.items():
            by_customer = (("customer_id", customer),)
            if by_customer in keys:
                _add(found, by_customer, row)
            by_endpoint = (("customer_id", customer), ("endpoint", endpoint))
            if by_endpoint in keys:
                _add(found, by_endpoint, row)
        if self._want_models:
            _, rollup = self._rollups.close(index, rows)
            for (provider, model), row in rollup.items():
                key: KeyLabels = (("provider", provider), ("model", model))
                if key in keys:
                    found[key] = row
        for key, row in found.items():
            self.rows[key][index] = row
        return rows


def detectors_off(settings: Settings) -> Settings:
    """A copy of ``settings`` with every detector disabled (bucketing only)."""
    det = settings.detectors
    changes: dict[str, Any] = {
        name: replace(getattr(det, name), enabled=False)
        for name in (
            "spend_spike",
            "cost_shift",
            "retry_storm",
            "retry_storm_global",
            "margin_breach",
        )
    }
    for rules in ("overrides", "windows"):  # rules could turn a detector back on
        if rules in type(det).model_fields:
            changes[rules] = []
    return settings.model_copy(update={"detectors": det.model_copy(update=changes)})


Source = Callable[[Pipeline], ReplayReport]


def record(
    source: Source,
    settings: Settings,
    prices: PriceTable,
    customers: dict[str, Customer],
    keys: set[KeyLabels],
) -> RecordingBuckets:
    """Replay ``source`` once more, detectors off, keeping the bucket rows of ``keys``."""
    quiet = detectors_off(settings)
    pipeline = Pipeline(quiet, prices, customers)
    recording = RecordingBuckets(quiet, keys)
    recording.plans = {c.customer_id: c.plan for c in customers.values()}
    pipeline.buckets = recording
    source(pipeline)
    return recording


@dataclass
class KeySeries:
    """Dense per-bucket series of one key, bucket starts ``times`` (epoch s), USD and counts."""

    key: KeyLabels
    width: float
    times: np.ndarray
    rows: np.ndarray  # shape (n, TOP_CUSTOMER + 2): the counts row of each bucket, 0 if none
    has_data: np.ndarray  # bool per bucket

    @property
    def spend(self) -> np.ndarray:
        return self.rows[:, COST]

    def error_rate(self, window: int) -> np.ndarray:
        """Failed share of the attempts in the last ``window`` buckets, as retry_storm judges;
        NaN where the window had no attempts."""
        kernel = np.ones(window)
        failures = np.convolve(self.rows[:, FAILURES], kernel)[: len(self.times)]
        requests = np.convolve(self.rows[:, REQUESTS], kernel)[: len(self.times)]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(requests > 0, failures / requests, np.nan)


def dense(recording: RecordingBuckets, key: KeyLabels) -> KeySeries | None:
    """The key's series from its first bucket with data to the last bucket closed."""
    found = recording.rows.get(key)
    if not found or recording.last_index is None:
        return None
    first = min(found)
    n = recording.last_index - first + 1
    width = recording.width
    rows = np.zeros((n, TOP_CUSTOMER + 2))
    has = np.zeros(n, dtype=bool)
    for index, row in found.items():
        rows[index - first, : len(row)] = row
        has[index - first] = True
    if key[0][0] != "provider":  # per customer: top customer is the customer itself
        rows[:, TOP_CUSTOMER] = rows[:, FAILURES]
        rows[:, TOP_REQUESTS] = rows[:, REQUESTS]
    times = (first + np.arange(n)) * width
    return KeySeries(key, width, times, rows, has)


def _counts(row: np.ndarray) -> BucketCounts:
    return BucketCounts(
        float(row[REQUESTS]),
        float(row[FAILURES]),
        float(row[RETRIES]),
        float(row[RATE_LIMITED]),
        float(row[WASTED]),
        float(row[TOP_CUSTOMER]),
        float(row[FIRST_FAILURES]),
        float(row[RETRIED]),
        float(row[TOP_REQUESTS]),
    )


@dataclass
class Band:
    """What one config's detector expected at each bucket (NaN where it judged nothing)."""

    mean: np.ndarray
    sd: np.ndarray
    threshold: np.ndarray
    fired: list[float] = field(default_factory=list)  # firing starts it decided (a check)


def _judged(series: KeySeries, max_gap: int, after: int = 0) -> np.ndarray:
    """Buckets at which a detector with ``max_gap`` gap-filling judges a key that has no
    open episode: those with data, up to ``max_gap`` zero buckets before each and (keys
    judged eagerly, see detect.EAGER_BUCKETS) ``after`` zero buckets after each."""
    idx = np.flatnonzero(series.has_data)
    judged = np.zeros(len(series.times), dtype=bool)
    for i in idx:
        judged[max(0, i - max_gap) : i + after + 1] = True
    return judged


def _run(
    series: KeySeries,
    max_gap: int,
    step: Callable[[int], tuple[float, float, float, bool]],
    after: int = 0,
) -> Band:
    n = len(series.times)
    band = Band(np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan))
    judged = _judged(series, max_gap, after)
    active = False
    for i in range(n):
        if not (judged[i] or active):
            continue
        band.mean[i], band.sd[i], band.threshold[i], active = step(i)
    return band


ParamsAt = Callable[[float], Any]  # event time -> a detector's parameters for one key


def spend_band(series: KeySeries, params_at: ParamsAt) -> Band:
    """spend_spike's baseline (mean, sd, USD per bucket) and threshold, mean x (1 + margin)."""
    first: SpendSpikeParams = params_at(float(series.times[0]))
    state = SpendSpikeState.new(first)
    width = series.width
    spend = series.spend
    fired: list[float] = []

    def step(i: int) -> tuple[float, float, float, bool]:
        t = float(series.times[i])
        params: SpendSpikeParams = params_at(t)
        if not params.enabled:
            return math.nan, math.nan, math.nan, False
        mean, sd = state.baseline.expected(t)
        for d in spend_spike.update(state, t, width, float(spend[i]), params):
            if d.status == "firing":
                fired.append(d.starts_at)
        return mean, sd, mean * (1.0 + params.relative_margin), state.episode is not None

    eager = EAGER_BUCKETS if spend_spike.zero_is_quiet(first) else 0
    band = _run(series, spend_spike.MAX_GAP_BUCKETS, step, eager)
    band.fired = fired
    return band


def error_band(series: KeySeries, params_at: ParamsAt) -> Band:
    """retry_storm's baseline error rate, and the error-rate limit it applied."""
    first: RetryStormParams = params_at(float(series.times[0]))
    state = RetryStormState.new(first)
    width = series.width
    fired: list[float] = []

    def step(i: int) -> tuple[float, float, float, bool]:
        t = float(series.times[i])
        params: RetryStormParams = params_at(t)
        if not params.enabled:
            return math.nan, math.nan, math.nan, False
        base = state.error_baseline
        warm = state.baseline_n >= params.warmup_buckets
        limit = max(params.error_rate, (params.baseline_factor if warm else 0.0) * base)
        for d in retry_storm.update(state, t, width, _counts(series.rows[i]), params):
            if d.status == "firing":
                fired.append(d.starts_at)
        return base, 0.0, limit, state.episode is not None

    band = _run(series, first.window_buckets + first.calm_buckets, step)
    band.fired = fired
    return band


def params_at(settings: Settings, detector: str, key: KeyLabels, plan: str | None) -> ParamsAt:
    """The parameters ``detector`` runs with for ``key`` at each event time: per-key
    overrides and planned windows resolved as the pipeline resolves them, where this
    version of the settings has them; else the detector's section."""
    try:
        from stream.settings.effective import Resolver
    except ImportError:  # settings without per-key overrides
        params = getattr(settings.detectors, detector)
        return lambda t: params
    resolver = Resolver(settings.detectors)
    labels = dict(key)
    customer_id, endpoint = labels.get("customer_id"), labels.get("endpoint")
    provider, model = labels.get("provider"), labels.get("model")
    return lambda t: (
        resolver.effective(detector, t, customer_id, endpoint, provider, model, plan).params
    )
