"""Detect: event-time buckets per key, closed by the watermark and handed to the detectors.

Events are summed into the open bucket of their (customer, endpoint, provider, model):
one dict lookup per event. When the watermark (newest event time) passes a bucket's end
plus the allowed lateness, the bucket is closed: its rows are rolled up per customer, per
(customer, endpoint) and per (provider, model), and each detector judges the keys that had
data or have an episode open. Later events for a closed bucket are counted and dropped.

The per-customer part (:class:`CustomerDetection`) and the cross-customer part
(:class:`GlobalDetection`, fed by per-bucket rollups) are separate so that a Kafka
worker can run the first keyed by customer and the second on the rollups of all of them.
State lives in plain mappings (a dict here, a Faust table in the worker).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from detectors import margin_breach, retry_storm, spend_spike
from detectors.decision import Decision
from detectors.margin_breach import MarginBreachState, MarginTerms
from detectors.retry_storm import BucketCounts, RetryStormState
from detectors.spend_spike import SpendSpikeState
from stream.events import Customer, ErrorEvent, UsageEvent
from stream.settings import Settings

# Row of one (customer, endpoint, provider, model) in one bucket.
COST, REQUESTS, FAILURES, RETRIES, RATE_LIMITED, WASTED, FIRST_FAILURES, RETRIED = range(8)
TOP_CUSTOMER, TOP_REQUESTS = 8, 9  # in rollups: failures and attempts of the top customer
RowKey = tuple[str, str, str, str]
Rollup = dict[tuple[str, str], list[float]]  # (provider, model) -> counts row


@dataclass(frozen=True, slots=True)
class Keyed:
    """A detector decision for one key, described by the labels that identify the key."""

    key: dict[str, str]
    decision: Decision


def _counts(row: list[float], rollup: bool = False) -> BucketCounts:
    return BucketCounts(
        row[REQUESTS],
        row[FAILURES],
        row[RETRIES],
        row[RATE_LIMITED],
        row[WASTED],
        row[TOP_CUSTOMER] if rollup else row[FAILURES],
        row[FIRST_FAILURES],
        row[RETRIED],
        row[TOP_REQUESTS] if rollup else row[REQUESTS],
    )


def merge_rollups(into: Rollup, part: Rollup) -> None:
    """Add a partial rollup (one partition's) into ``into``: sums, and the top customer."""
    for key, row in part.items():
        total = into.get(key)
        if total is None:
            into[key] = row.copy()
            continue
        for i in range(TOP_CUSTOMER):
            total[i] += row[i]
        if row[TOP_CUSTOMER] > total[TOP_CUSTOMER]:
            total[TOP_CUSTOMER], total[TOP_REQUESTS] = row[TOP_CUSTOMER], row[TOP_REQUESTS]


def _add(into: dict[Any, list[float]], key: Any, row: list[float]) -> None:
    total = into.get(key)
    if total is None:
        into[key] = row.copy()
    else:
        for i, value in enumerate(row):
            total[i] += value


@dataclass
class DetectStats:
    late_events: int = 0
    buckets_closed: int = 0
    unknown_customers: set[str] = field(default_factory=set)


class Buckets:
    """Open event-time buckets and the watermark that closes them (pure, no clock)."""

    def __init__(self, width_s: float, lateness_s: float) -> None:
        self.width = width_s
        self.lateness = lateness_s
        self.open: dict[int, dict[RowKey, list[float]]] = {}
        self.closed_upto = -(2**62)  # index of the newest closed bucket
        self.watermark = 0.0
        self.stats = DetectStats()

    def add(self, event: UsageEvent | ErrorEvent, cost: float) -> None:
        ts = event.ts
        index = int(ts // self.width)
        if index <= self.closed_upto:
            self.stats.late_events += 1
            return
        rows = self.open.get(index)
        if rows is None:
            rows = self.open[index] = {}
        key = (event.customer_id, event.endpoint, event.provider, event.model)
        row = rows.get(key)
        if row is None:
            row = rows[key] = [0.0] * TOP_CUSTOMER
        row[COST] += cost
        row[REQUESTS] += 1
        attempt = event.attempt
        if event.failed:
            row[FAILURES] += 1
            row[WASTED] += cost
            if attempt == 1:
                row[FIRST_FAILURES] += 1
        if attempt > 1:
            row[RETRIES] += 1
            if attempt == 2:
                row[RETRIED] += 1
        if event.rate_limited:
            row[RATE_LIMITED] += 1
        if ts > self.watermark:
            self.watermark = ts

    def closable(self, watermark: float | None = None) -> list[int]:
        """Indexes of open buckets the watermark (default: newest event time) has passed."""
        if not self.open:
            return []
        mark = self.watermark if watermark is None else watermark
        limit = (mark - self.lateness) // self.width  # buckets ending before
        return sorted(i for i in self.open if i < limit)

    def pop(self, index: int) -> dict[RowKey, list[float]]:
        self.closed_upto = max(self.closed_upto, index)
        self.stats.buckets_closed += 1
        return self.open.pop(index)


class CustomerDetection:
    """spend_spike, retry_storm and margin_breach for keys within customers."""

    def __init__(
        self,
        settings: Settings,
        customers: Callable[[str], Customer | None],
        store: Callable[[str], MutableMapping[Any, Any]] = lambda name: {},
    ) -> None:
        self.settings = settings
        self.customers = customers
        self.spike_customer: MutableMapping[Any, SpendSpikeState] = store("spike_customer")
        self.spike_endpoint: MutableMapping[Any, SpendSpikeState] = store("spike_endpoint")
        self.retry_endpoint: MutableMapping[Any, RetryStormState] = store("retry_endpoint")
        self.margin: MutableMapping[Any, MarginBreachState] = store("margin")
        self.active: dict[str, set[Any]] = {
            "spike_customer": set(),
            "spike_endpoint": set(),
            "retry_endpoint": set(),
            "margin": set(),
        }
        self.unknown_customers: set[str] = set()

    def close(self, index: int, rows: dict[RowKey, list[float]]) -> tuple[list[Keyed], Rollup]:
        """Judge the closed bucket ``index``; return decisions and the provider/model rollup."""
        width = self.settings.buckets.width_s
        t = index * width
        by_customer: dict[str, list[float]] = {}
        by_endpoint: dict[tuple[str, str], list[float]] = {}
        by_model_customer: dict[tuple[str, str, str], list[float]] = {}
        rollup: Rollup = {}
        for (customer, endpoint, provider, model), row in rows.items():
            _add(by_customer, customer, row)
            _add(by_endpoint, (customer, endpoint), row)
            _add(by_model_customer, (provider, model, customer), row)
        for (provider, model, _), row in by_model_customer.items():
            merge_rollups(rollup, {(provider, model): [*row, row[FAILURES], row[REQUESTS]]})
        out: list[Keyed] = []
        det = self.settings.detectors
        if det.spend_spike.enabled:
            out += self._run_spikes(t, width, by_customer, by_endpoint)
        if det.retry_storm.enabled:
            params = det.retry_storm
            for key in self._keys("retry_endpoint", by_endpoint):
                state = self.retry_endpoint.get(key) or RetryStormState.new(params)
                fresh = by_endpoint.get(key)
                counts = _counts(fresh) if fresh else BucketCounts()
                decisions = retry_storm.update(state, t, width, counts, params)
                self._keep(
                    "retry_endpoint", self.retry_endpoint, key, state, state.episode is not None
                )
                out += [Keyed({"customer_id": key[0], "endpoint": key[1]}, d) for d in decisions]
        if det.margin_breach.enabled:
            out += self._run_margins(t, width, by_customer)
        return out, rollup

    def _run_spikes(
        self,
        t: float,
        width: float,
        by_customer: dict[str, list[float]],
        by_endpoint: dict[tuple[str, str], list[float]],
    ) -> list[Keyed]:
        params = self.settings.detectors.spend_spike
        out: list[Keyed] = []
        for name, table, spend in (
            ("spike_customer", self.spike_customer, by_customer),
            ("spike_endpoint", self.spike_endpoint, by_endpoint),
        ):
            for key in self._keys(name, spend):
                state = table.get(key) or SpendSpikeState.new(params)
                row = spend.get(key)
                decisions = spend_spike.update(state, t, width, row[COST] if row else 0.0, params)
                self._keep(name, table, key, state, state.episode is not None)
                labels = (
                    {"customer_id": key}
                    if isinstance(key, str)
                    else {"customer_id": key[0], "endpoint": key[1]}
                )
                out += [Keyed(labels, d) for d in decisions]
        return out

    def _run_margins(
        self, t: float, width: float, by_customer: dict[str, list[float]]
    ) -> list[Keyed]:
        params = self.settings.detectors.margin_breach
        out: list[Keyed] = []
        for customer_id in self._keys("margin", by_customer):
            terms = self.terms(customer_id)
            if terms is None:
                continue
            state = self.margin.get(customer_id) or MarginBreachState()
            row = by_customer.get(customer_id)
            decisions = margin_breach.update(
                state, t, width, row[COST] if row else 0.0, terms, params
            )
            self._keep("margin", self.margin, customer_id, state, state.episode is not None)
            out += [Keyed({"customer_id": customer_id}, d) for d in decisions]
        return out

    def terms(self, customer_id: str) -> MarginTerms | None:
        """The customer's margin terms from their record and plan; None if unknown."""
        customer = self.customers(customer_id)
        if customer is None or customer.deleted:
            self.unknown_customers.add(customer_id)
            return None
        plan = self.settings.plan(customer.plan)
        target = (
            customer.margin_target if customer.margin_target is not None else plan.margin_target
        )
        return MarginTerms(
            price_usd=customer.monthly_price_usd,
            overhead_ratio=plan.overhead_ratio,
            margin_target=target,
            cost_cap_usd=plan.cost_cap_usd,
            billing_day=customer.billing_day,
        )

    def _keys(self, name: str, fresh: dict[Any, Any]) -> Iterable[Any]:
        active = self.active[name]
        return list(fresh) + [key for key in active if key not in fresh]

    def _keep(
        self, name: str, table: MutableMapping[Any, Any], key: Any, state: Any, active: bool
    ) -> None:
        # Assigning writes the state back (a changelog write in a Faust table).
        table[key] = state
        if active:
            self.active[name].add(key)
        else:
            self.active[name].discard(key)


class GlobalDetection:
    """retry_storm per (provider, model) across all customers, fed by bucket rollups."""

    def __init__(
        self, settings: Settings, store: Callable[[str], MutableMapping[Any, Any]] = lambda n: {}
    ) -> None:
        self.settings = settings
        self.retry_model: MutableMapping[Any, RetryStormState] = store("retry_model")
        self.active: set[tuple[str, str]] = set()

    def close(self, index: int, rollup: Rollup) -> list[Keyed]:
        params = self.settings.detectors.retry_storm_global
        if not params.enabled:
            return []
        width = self.settings.buckets.width_s
        t = index * width
        out: list[Keyed] = []
        for key in list(rollup) + [k for k in self.active if k not in rollup]:
            state = self.retry_model.get(key) or RetryStormState.new(params)
            row = rollup.get(key)
            counts = _counts(row, rollup=True) if row else BucketCounts()
            decisions = retry_storm.update(state, t, width, counts, params)
            self.retry_model[key] = state
            if state.episode is not None:
                self.active.add(key)
            else:
                self.active.discard(key)
            out += [Keyed({"provider": key[0], "model": key[1]}, d) for d in decisions]
        return out
