"""Detect: closed buckets handed to the detectors, and their decisions as labelled keys.

When a bucket closes (see :mod:`stream.core.buckets`) its rows are rolled up per customer, per
(customer, endpoint) and per (provider, model), and each detector judges the keys that had
data or have an episode open.

The per-customer part (:class:`CustomerDetection`) and the cross-customer part
(:class:`GlobalDetection`, fed by per-bucket rollups) are separate so that a Kafka
worker can run the first keyed by customer and the second on the rollups of all of them.
State lives in plain mappings (a dict here, a Faust table in the worker).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass, replace
from operator import itemgetter
from typing import Any

import numpy as np

from detectors import attribution, cost_shift, margin_breach, retry_storm, spend_spike
from detectors import episode as episodes
from detectors.attribution import Usage
from detectors.cost_shift import CostShiftState
from detectors.decision import Decision
from detectors.margin_breach import MarginBreachState, MarginTerms
from detectors.retry_storm import BucketCounts, RetryStormState
from detectors.spend_spike import SpendSpikeState
from stream.core.buckets import (
    CACHED_TOKENS,
    COST,
    COUNTS,
    FAILURES,
    FIRST_FAILURES,
    INPUT_TOKENS,
    OUTPUT_TOKENS,
    RATE_LIMITED,
    REQUESTS,
    RETRIED,
    RETRIES,
    ROW_FIELDS,
    TOP_CUSTOMER,
    TOP_REQUESTS,
    WASTED,
    Rollup,
    RowKey,
    current_row,
)
from stream.core.events import Customer
from stream.settings import Settings
from stream.settings.effective import Effective, Resolver

MAX_CACHED_TERMS = 4096  # customers whose margin terms CustomerDetection.terms keeps
# Buckets a spend_spike key is judged for after its last spend (see _run_spikes_alike).
EAGER_BUCKETS = 8
# spend_spike's tables, and cost_shift's for the same keys (attribution reads them).
SHIFT_OF = {"spike_customer": "shift_customer", "spike_endpoint": "shift_endpoint"}


@dataclass(frozen=True, slots=True)
class Keyed:
    """A detector decision for one key, described by the labels that identify the key."""

    key: dict[str, str]
    decision: Decision


# A row's fields in retry_storm's order (BucketCounts): per customer the top customer's
# failures and requests are the key's own; a provider/model rollup has its own.
_RETRY_FIELDS = [
    REQUESTS,
    FAILURES,
    RETRIES,
    RATE_LIMITED,
    WASTED,
    FAILURES,
    FIRST_FAILURES,
    RETRIED,
    REQUESTS,
]
_ROLLUP_FIELDS = [*_RETRY_FIELDS[:5], TOP_CUSTOMER, *_RETRY_FIELDS[6:8], TOP_REQUESTS]
_RETRY_ROW, _ROLLUP_ROW = itemgetter(*_RETRY_FIELDS), itemgetter(*_ROLLUP_FIELDS)


def _counts(row: list[float], rollup: bool = False) -> BucketCounts:
    return BucketCounts(*(_ROLLUP_ROW if rollup else _RETRY_ROW)(row))


def usage(row: list[float]) -> Usage:
    """A bucket row's usage as cost_shift and attribution read it (successful requests
    are the attempts that did not fail)."""
    return Usage(
        row[COST],
        row[REQUESTS] - row[FAILURES],
        row[REQUESTS],
        row[INPUT_TOKENS],
        row[CACHED_TOKENS],
        row[OUTPUT_TOKENS],
    )


def _add(into: dict[Any, list[float]], key: Any, row: list[float]) -> None:
    total = into.get(key)
    into[key] = row.copy() if total is None else [a + b for a, b in zip(total, row, strict=True)]


class CustomerDetection:
    """spend_spike, cost_shift, retry_storm and margin_breach for keys within customers.

    Parameters are resolved per key (overrides, planned windows) by a :class:`Resolver`;
    :meth:`reload` swaps in new settings without touching detector state.
    """

    def __init__(
        self,
        settings: Settings,
        customers: Callable[[str], Customer | None],
        store: Callable[[str], MutableMapping[Any, Any]] = lambda name: {},
    ) -> None:
        self.settings = settings
        self.resolver = Resolver(settings.detectors)
        self.customers = customers
        self.spike_customer: MutableMapping[Any, SpendSpikeState] = store("spike_customer")
        self.spike_endpoint: MutableMapping[Any, SpendSpikeState] = store("spike_endpoint")
        self.shift_customer: MutableMapping[Any, CostShiftState] = store("shift_customer")
        self.shift_endpoint: MutableMapping[Any, CostShiftState] = store("shift_endpoint")
        self.retry_endpoint: MutableMapping[Any, RetryStormState] = store("retry_endpoint")
        self.margin: MutableMapping[Any, MarginBreachState] = store("margin")
        self.active: dict[str, set[Any]] = {
            "spike_customer": set(),
            "spike_endpoint": set(),
            "shift_customer": set(),
            "shift_endpoint": set(),
            "retry_endpoint": set(),
            "margin": set(),
        }
        self.unknown_customers: set[str] = set()
        # Bucket index of each spend_spike key's last spend, while within EAGER_BUCKETS.
        self.recent: dict[str, dict[Any, int]] = {"spike_customer": {}, "spike_endpoint": {}}
        self._terms: dict[str, tuple[Customer, Settings, MarginTerms]] = {}
        # cost_shift's step being summed (index of its first bucket / steps) and its usage
        # so far per key (cost, successful requests, attempts, input, cached, output).
        self.shift_step: int | None = None
        self.shift_usage: dict[str, dict[Any, list[float]]] = {
            "shift_customer": {},
            "shift_endpoint": {},
        }
        self.shift_touched: set[str] = set()  # customers whose step usage changed

    def reload(self, settings: Settings) -> None:
        """Judge with ``settings`` from the next bucket on. Baselines, windows and open
        episodes are kept; ``window_buckets`` and ``seasonal`` (the shape of a key's
        state) apply to keys first seen after the reload."""
        self.settings = settings
        self.resolver = Resolver(settings.detectors)

    def close(self, index: int, rows: dict[RowKey, list[float]]) -> tuple[list[Keyed], Rollup]:
        """Judge the closed bucket ``index``; return decisions and the provider/model rollup."""
        width = self.settings.buckets.width_s
        t = index * width
        by_customer: dict[str, list[float]] = {}
        by_endpoint: dict[tuple[str, str], list[float]] = {}
        by_model_customer: dict[tuple[str, str, str], list[float]] = {}
        rollup: Rollup = {}
        for (customer, endpoint, provider, model), row in rows.items():
            if len(row) != ROW_FIELDS:
                row = current_row(row)
            _add(by_customer, customer, row)
            _add(by_endpoint, (customer, endpoint), row)
            _add(by_model_customer, (provider, model, customer), row)
        for (provider, model, _), row in by_model_customer.items():
            # merge_rollups of the one-row rollup of this customer, written out.
            key = (provider, model)
            total = rollup.get(key)
            if total is None:
                rollup[key] = [*row[:COUNTS], row[FAILURES], row[REQUESTS]]
                continue
            for i in range(COUNTS):
                total[i] += row[i]
            if row[FAILURES] > total[TOP_CUSTOMER]:
                total[TOP_CUSTOMER], total[TOP_REQUESTS] = row[FAILURES], row[REQUESTS]
        out: list[Keyed] = []
        if self.resolver.enabled("spend_spike"):
            spikes = self._run_spikes(index, t, width, by_customer, by_endpoint)
            out += [self._attributed(k, t, width, by_customer, by_endpoint) for k in spikes]
        if self.resolver.enabled("cost_shift"):
            out += self._run_shifts(index, width, by_endpoint)
        if self.resolver.enabled("retry_storm"):
            out += self._run_retries(index, t, width, by_endpoint)
        if self.resolver.enabled("margin_breach"):
            out += self._run_margins(t, width, by_customer)
        return out, rollup

    def _plan(self, customer_id: str) -> str | None:
        if not self.resolver.uses_plan:
            return None
        customer = self.customers(customer_id)
        return None if customer is None else customer.plan

    def _run_spikes(
        self,
        index: int,
        t: float,
        width: float,
        by_customer: dict[str, list[float]],
        by_endpoint: dict[tuple[str, str], list[float]],
    ) -> list[Keyed]:
        out: list[Keyed] = []
        resolver = self.resolver
        # Without overrides or windows every key has the section's parameters: resolved
        # once per bucket, not per key (this loop runs for every key in every bucket).
        plain = resolver.effective("spend_spike", t) if resolver.trivial else None
        update = spend_spike.update
        new = SpendSpikeState.new
        for name, table, spend in (
            ("spike_customer", self.spike_customer, by_customer),
            ("spike_endpoint", self.spike_endpoint, by_endpoint),
        ):
            active = self.active[name]
            if plain is not None and plain.params.enabled and not plain.muted:
                out += self._run_spikes_alike(plain, index, t, width, name, table, spend)
                continue
            for key in self._keys(name, spend):
                customer, endpoint = (key, None) if isinstance(key, str) else key
                eff = plain or resolver.effective(
                    "spend_spike", t, customer, endpoint, plan=self._plan(customer)
                )
                params = eff.params
                if not params.enabled:
                    active.discard(key)
                    continue
                row = spend.get(key)
                if row is None and params.skip_gaps:
                    continue  # no data is a gap, not zero spend
                state = table.get(key) or new(params)
                was_firing = state.episode is not None and state.episode.firing
                decisions = update(state, t, width, row[COST] if row else 0.0, params)
                if eff.muted_by:
                    decisions = _unless_muted(eff, state, was_firing, decisions)
                self._keep(name, table, key, state, state.episode is not None)
                if decisions:
                    recent = _text(state.recent(width))
                    out += [Keyed(_labels(key), explained(d, eff, recent)) for d in decisions]
        return out

    def _run_spikes_alike(
        self,
        eff: Effective,
        index: int,
        t: float,
        width: float,
        name: str,
        table: MutableMapping[Any, SpendSpikeState],
        spend: dict[Any, list[float]],
    ) -> list[Keyed]:
        """_run_spikes when every key has the same parameters: one batch for all keys.

        Keys that had spend in the last ``EAGER_BUCKETS`` buckets are judged now even
        without spend, so that a sparse key's empty buckets are judged in the batch
        rather than one by one when it spends again. Where zero_is_quiet holds both
        learn the same and decide nothing, with one exception: a key quiet for longer
        than spend_spike.MAX_GAP_BUCKETS (a day) has its first empty buckets learnt
        too, where the capped gap replay would learn only the newest day's.
        """
        params = eff.params
        active = self.active[name]
        keys = list(spend) if params.skip_gaps else self._keys(name, spend)
        if spend_spike.zero_is_quiet(params) and not params.skip_gaps:
            recent = self.recent[name]
            for key in spend:
                recent[key] = index
            horizon = index - EAGER_BUCKETS
            for key in [key for key, last in recent.items() if last < horizon]:
                del recent[key]
            keys += [key for key in recent if key not in spend and key not in active]
        new = SpendSpikeState.new
        states = [table.get(key) or new(params) for key in keys]
        spends = [row[COST] if (row := spend.get(key)) else 0.0 for key in keys]
        decided = spend_spike.update_many(states, t, width, spends, params)
        return self._settle(name, table, keys, states, decided, eff, width)

    def _attributed(
        self,
        keyed: Keyed,
        t: float,
        width: float,
        by_customer: dict[str, list[float]],
        by_endpoint: dict[tuple[str, str], list[float]],
    ) -> Keyed:
        """A spend_spike alert that fires, with its excess split into drivers: this
        bucket's usage against the usual usage of this hour in the same key's cost_shift
        baseline (computed here, when an alert fires, never per bucket)."""
        decision = keyed.decision
        excess = decision.values.get("money_at_risk_usd_per_hour", 0.0)
        if decision.status != "firing" or "baseline" not in decision.values or excess <= 0:
            return keyed
        customer, endpoint = keyed.key["customer_id"], keyed.key.get("endpoint")
        key: Any = customer if endpoint is None else (customer, endpoint)
        table = self.shift_customer if endpoint is None else self.shift_endpoint
        state = table.get(key)
        rows: dict[Any, list[float]] = by_customer if endpoint is None else by_endpoint
        row = rows.get(key)
        if state is None or row is None:
            return keyed
        params = self.resolver.effective(
            "cost_shift", t, customer, endpoint, plan=self._plan(customer)
        ).params
        base = state.baseline_usage(t, params)
        split = base and attribution.split(base, usage(row).scaled(3600.0 / width), excess)
        if not split:
            return keyed
        values = {**decision.values, **split.values()}
        notes = {**decision.notes, "attribution": split.text()}
        return Keyed(keyed.key, replace(decision, values=values, notes=notes))

    def _run_shifts(
        self, index: int, width: float, by_endpoint: dict[tuple[str, str], list[float]]
    ) -> list[Keyed]:
        """cost_shift judges steps of whole buckets (cost_shift.STEP_S): this bucket's
        usage is added to its step's, and a step is judged when its last bucket closes,
        or when a later step's first does (a step whose last bucket had no events)."""
        per = max(1, round(cost_shift.STEP_S / width))
        step = index // per
        out: list[Keyed] = []
        if self.shift_step is not None and self.shift_step != step:
            out += self._judge_shifts(self.shift_step, per * width)
        self.shift_step = step
        pending = self.shift_usage["shift_endpoint"]  # a customer's are its endpoints'
        touched = self.shift_touched
        for key, row in by_endpoint.items():
            touched.add(key[0])
            sums = pending.get(key)
            ok = row[REQUESTS] - row[FAILURES]
            if sums is None:
                pending[key] = [
                    row[COST],
                    ok,
                    row[REQUESTS],
                    row[INPUT_TOKENS],
                    row[CACHED_TOKENS],
                    row[OUTPUT_TOKENS],
                ]
            else:
                sums[0] += row[COST]
                sums[1] += ok
                sums[2] += row[REQUESTS]
                sums[3] += row[INPUT_TOKENS]
                sums[4] += row[CACHED_TOKENS]
                sums[5] += row[OUTPUT_TOKENS]
        if (index + 1) % per == 0:
            out += self._judge_shifts(step, per * width)
            self.shift_step = None
        return out

    def _judge_shifts(self, step: int, dt: float) -> list[Keyed]:
        """Judge the step's keys: endpoints first, each reading its baseline unit cost
        before it learns the step, so that a customer's requests are expected to cost what
        they cost on their own endpoints (a shift between endpoints is volume, not cost)."""
        t = step * dt
        resolver = self.resolver
        plain = resolver.effective("cost_shift", t) if resolver.trivial else None
        update, new = cost_shift.update, CostShiftState.new
        customers = self.shift_usage["shift_customer"]
        expected: dict[str, float] = {}  # customer -> cost of requests on known endpoints
        unknown: dict[str, float] = {}  # customer -> requests on endpoints without baseline
        out: list[Keyed] = []
        for name, table in (
            ("shift_endpoint", self.shift_endpoint),
            ("shift_customer", self.shift_customer),
        ):
            pending, active = self.shift_usage[name], self.active[name]
            for key in self._keys(name, pending):
                customer, endpoint = (key, None) if isinstance(key, str) else key
                eff = plain or resolver.effective(
                    "cost_shift", t, customer, endpoint, plan=self._plan(customer)
                )
                params = eff.params
                state = table.get(key) or new(params)
                sums = pending.get(key) or _NO_USAGE
                # What the step's requests cost at baseline: an endpoint's at its own unit
                # cost; a customer's at its endpoints' (its own for endpoints without one).
                if endpoint is not None:
                    if sums is not _NO_USAGE:  # the customer's usage: its endpoints' summed
                        total = customers.get(customer)
                        if total is None:
                            customers[customer] = list(sums)
                        else:
                            for i in range(6):
                                total[i] += sums[i]
                    part = sums[1] * state.unit_cost_at(t) if sums[1] else 0.0
                    if state.learnt_requests > 0:
                        expected[customer] = expected.get(customer, 0.0) + part
                    else:
                        unknown[customer] = unknown.get(customer, 0.0) + sums[1]
                elif customer in expected or customer in unknown:
                    own = unknown.get(customer, 0.0) * state.unit_cost_at(t)
                    part = expected.get(customer, 0.0) + own
                else:
                    part = None
                if not params.enabled:
                    active.discard(key)
                    continue
                episode = state.episode
                was_firing = episode is not None and episode.firing
                decisions = update(state, t, dt, sums, params, part)
                if eff.muted_by:
                    decisions = _unless_muted(eff, state, was_firing, decisions)
                table[key] = state  # _keep written out: this runs for every key, every step
                if state.episode is not None:
                    active.add(key)
                else:
                    active.discard(key)
                if decisions:
                    out += [Keyed(_labels(key), explained(d, eff)) for d in decisions]
            if endpoint_keys := [key for key in pending if not isinstance(key, str)]:
                self.shift_touched.update(customer for customer, _ in endpoint_keys)
            pending.clear()
        return out

    def shift_steps(self) -> Iterator[tuple[str, tuple[int, list[list[Any]]] | None]]:
        """Each customer whose usage in the step being summed changed since last asked,
        with that step and its endpoints' sums (None: it has none), for a worker to save
        with the customer's states: a restarted worker resumes the step where it was."""
        by_customer: dict[str, list[list[Any]]] = {}
        for (customer, endpoint), sums in self.shift_usage["shift_endpoint"].items():
            by_customer.setdefault(customer, []).append([endpoint, *sums])
        step = self.shift_step
        for customer in self.shift_touched:
            rows = by_customer.get(customer)
            yield customer, ((step, rows) if rows and step is not None else None)
        self.shift_touched.clear()

    def resume_shift_step(self, customer: str, step: int, rows: list[list[Any]]) -> None:
        """Take back a customer's usage in the step being summed (see :meth:`shift_steps`)."""
        self.shift_step = step
        pending = self.shift_usage["shift_endpoint"]
        for endpoint, *sums in rows:
            pending[(customer, endpoint)] = [float(x) for x in sums]

    def _run_retries(
        self, index: int, t: float, width: float, by_endpoint: dict[tuple[str, str], list[float]]
    ) -> list[Keyed]:
        out: list[Keyed] = []
        resolver = self.resolver
        plain = resolver.effective("retry_storm", t) if resolver.trivial else None
        table = self.retry_endpoint
        if plain is not None and plain.params.enabled and not plain.muted:
            return self._run_retries_alike(plain, t, width, by_endpoint)
        active = self.active["retry_endpoint"]
        update = retry_storm.update
        for key in self._keys("retry_endpoint", by_endpoint):
            customer, endpoint = key
            eff = plain or resolver.effective(
                "retry_storm", t, customer, endpoint, plan=self._plan(customer)
            )
            params = eff.params
            if not params.enabled:
                active.discard(key)
                continue
            state = table.get(key) or RetryStormState.new(params)
            fresh = by_endpoint.get(key)
            counts = _counts(fresh) if fresh else BucketCounts()
            was_firing = state.episode is not None and state.episode.firing
            decisions = update(state, t, width, counts, params)
            if eff.muted_by:
                decisions = _unless_muted(eff, state, was_firing, decisions)
            self._keep("retry_endpoint", table, key, state, state.episode is not None)
            if decisions:
                recent = _text(state.recent(width))
                out += [Keyed(_labels(key), explained(d, eff, recent)) for d in decisions]
        return out

    def _run_retries_alike(
        self,
        eff: Effective,
        t: float,
        width: float,
        by_endpoint: dict[tuple[str, str], list[float]],
    ) -> list[Keyed]:
        """_run_retries when every key has the same parameters: one batch for all keys
        (retry_storm.update_many), their bucket's counts as rows of one matrix."""
        params = eff.params
        table = self.retry_endpoint
        keys = self._keys("retry_endpoint", by_endpoint)
        counts = np.zeros((len(keys), len(_RETRY_FIELDS)))
        if by_endpoint:  # _keys lists the keys with data first
            rows = np.array(list(by_endpoint.values()), dtype=np.float64)
            counts[: len(by_endpoint)] = rows[:, _RETRY_FIELDS]
        new = RetryStormState.new
        states = [table.get(key) or new(params) for key in keys]
        decided = retry_storm.update_many(states, t, width, counts, params)
        return self._settle("retry_endpoint", table, keys, states, decided, eff, width)

    def _settle(
        self,
        name: str,
        table: MutableMapping[Any, Any],
        keys: list[Any],
        states: list[Any],
        decided: dict[int, list[Decision]],
        eff: Effective,
        width: float,
    ) -> list[Keyed]:
        """Write a batch's states back, track which keys have episodes open, and label
        the decisions."""
        keep = self._keep
        for key, state in zip(keys, states, strict=True):
            keep(name, table, key, state, state.episode is not None)
        out: list[Keyed] = []
        for i, decisions in decided.items():
            key, state = keys[i], states[i]
            recent = _text(state.recent(width))
            out += [Keyed(_labels(key), explained(d, eff, recent)) for d in decisions]
        return out

    def _run_margins(
        self, t: float, width: float, by_customer: dict[str, list[float]]
    ) -> list[Keyed]:
        out: list[Keyed] = []
        resolver = self.resolver
        plain = resolver.effective("margin_breach", t) if resolver.trivial else None
        for customer_id in self._keys("margin", by_customer):
            terms = self.terms(customer_id)
            if terms is None:
                continue
            eff = plain or resolver.effective(
                "margin_breach", t, customer_id, plan=self._plan(customer_id)
            )
            if not eff.params.enabled:
                self.active["margin"].discard(customer_id)
                continue
            state = self.margin.get(customer_id) or MarginBreachState()
            row = by_customer.get(customer_id)
            was_firing = episodes.firing(state.episode)
            decisions = margin_breach.update(
                state, t, width, row[COST] if row else 0.0, terms, eff.params
            )
            if eff.muted_by:
                decisions = _unless_muted(eff, state, was_firing, decisions)
            self._keep("margin", self.margin, customer_id, state, state.episode is not None)
            if decisions:
                out += [Keyed({"customer_id": customer_id}, explained(d, eff)) for d in decisions]
        return out

    def terms(self, customer_id: str) -> MarginTerms | None:
        """The customer's margin terms from their record and plan; None if unknown.

        Kept per customer until their record or the settings are replaced (a customers
        topic update, a reload): this is asked for every customer in every bucket. The
        cache is bounded (cleared when full), so it adds nothing per key at 100k keys.
        """
        customer = self.customers(customer_id)
        if customer is None or customer.deleted:
            self.unknown_customers.add(customer_id)
            return None
        known = self._terms.get(customer_id)
        if known is not None and known[0] is customer and known[1] is self.settings:
            return known[2]
        plan = self.settings.plan(customer.plan)
        target = (
            customer.margin_target if customer.margin_target is not None else plan.margin_target
        )
        terms = MarginTerms(
            price_usd=customer.monthly_price_usd,
            overhead_ratio=plan.overhead_ratio,
            margin_target=target,
            cost_cap_usd=plan.cost_cap_usd,
            billing_day=customer.billing_day,
        )
        if len(self._terms) >= MAX_CACHED_TERMS:
            self._terms.clear()
        self._terms[customer_id] = (customer, self.settings, terms)
        return terms

    def _keys(self, name: str, fresh: dict[Any, Any]) -> list[Any]:
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


_NO_USAGE = [0.0] * 6  # a step without usage (a key judged for its open alert)


def _unless_muted(
    eff: Effective, state: Any, was_firing: bool, decisions: list[Decision]
) -> list[Decision]:
    """Under a mute window no alert starts: the detector has judged and learnt the bucket,
    but a building (or newly fired) episode is dropped. An alert already firing when the
    window opened goes on and resolves as usual."""
    if not eff.muted:
        return decisions
    resolved = any(d.status == "resolved" for d in decisions)
    episode = state.episode
    if episode is not None and not (was_firing and episode.firing and not resolved):
        state.episode = None
    return [d for d in decisions if d.status != "firing"]


def _labels(key: str | tuple[str, str]) -> dict[str, str]:
    """The labels of a per-customer key: a customer id, or a (customer, endpoint) pair."""
    if isinstance(key, str):
        return {"customer_id": key}
    return {"customer_id": key[0], "endpoint": key[1]}


def _text(values: list[float]) -> str:
    """A series for the ``recent`` annotation: comma-separated, oldest first."""
    return ",".join(f"{v:.4g}" for v in values)


def explained(decision: Decision, eff: Effective, recent: str | None = None) -> Decision:
    """The decision with where its thresholds came from and the series' recent values."""
    notes = {"threshold_source": eff.threshold_source}
    if recent is not None:
        notes["recent"] = recent
    return replace(decision, notes={**decision.notes, **notes})


class GlobalDetection:
    """retry_storm per (provider, model) across all customers, fed by bucket rollups."""

    def __init__(
        self, settings: Settings, store: Callable[[str], MutableMapping[Any, Any]] = lambda n: {}
    ) -> None:
        self.settings = settings
        self.resolver = Resolver(settings.detectors)
        self.retry_model: MutableMapping[Any, RetryStormState] = store("retry_model")
        self.active: set[tuple[str, str]] = set()

    def reload(self, settings: Settings) -> None:
        """Judge with ``settings`` from the next bucket on; state is kept."""
        self.settings = settings
        self.resolver = Resolver(settings.detectors)

    def close(self, index: int, rollup: Rollup) -> list[Keyed]:
        if not self.resolver.enabled("retry_storm_global"):
            return []
        width = self.settings.buckets.width_s
        t = index * width
        out: list[Keyed] = []
        resolver = self.resolver
        plain = resolver.effective("retry_storm_global", t) if resolver.trivial else None
        for key in list(rollup) + [k for k in self.active if k not in rollup]:
            eff = plain or resolver.effective(
                "retry_storm_global", t, provider=key[0], model=key[1]
            )
            params = eff.params
            if not params.enabled:
                self.active.discard(key)
                continue
            state = self.retry_model.get(key) or RetryStormState.new(params)
            row = rollup.get(key)
            counts = _counts(row, rollup=True) if row else BucketCounts()
            was_firing = episodes.firing(state.episode)
            decisions = retry_storm.update(state, t, width, counts, params)
            decisions = _unless_muted(eff, state, was_firing, decisions)
            self.retry_model[key] = state
            if state.episode is not None:
                self.active.add(key)
            else:
                self.active.discard(key)
            labels = {"provider": key[0], "model": key[1]}
            recent = _text(state.recent(width)) if decisions else None
            out += [Keyed(labels, explained(d, eff, recent)) for d in decisions]
        return out
