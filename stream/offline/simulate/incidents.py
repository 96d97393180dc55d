"""Labelled incidents: failure modes (the background and the incidents'), and the plan of
a run's five incidents (runaway loop, model switch, retry loop, provider outage, plan
overgrowth) on distinct busy endpoints and customers."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from detectors.decision import HOURS_PER_MONTH
from stream.offline.simulate.world import (
    DAY_MS,
    MINUTE_MS,
    MODEL_INDEX,
    MODELS,
    Endpoint,
    World,
    rfc3339,
)

FAILURE_SHARE = 0.015
RETRY_SHARE = 0.7
MIN_INCIDENT_RATE = 3.0  # first attempts per minute on an incident's endpoint
RETRY_LOOP_MODEL_SHARE = 0.1  # at most this share of its model's requests, preferably
# Spend incidents preferably add at least this much, USD/h: a spike worth waking someone.
MATERIAL_USD_PER_HOUR = 5.0
MIN_GAP_MS = 5 * MINUTE_MS
SWITCH_TARGETS = {"gpt-4o-mini": "gpt-4o", "claude-haiku-4-5": "claude-opus-4-1"}


@dataclass(frozen=True)
class FailureMode:
    """How attempts fail and are retried: the background, or an incident until ``until_ms``."""

    fail_share: float
    error_types: tuple[str, ...]
    error_weights: tuple[float, ...]
    retry_share: float  # of failed attempts, retried
    max_attempt: int
    until_ms: float = math.inf  # later attempts fail at the background share

    def error_type(self, rng: np.random.Generator) -> str:
        return self.error_types[int(rng.choice(len(self.error_types), p=self.error_weights))]


BACKGROUND = FailureMode(
    FAILURE_SHARE,
    ("rate_limited", "timeout", "server_error", "overloaded"),
    (0.4, 0.15, 0.3, 0.15),
    RETRY_SHARE,
    3,
)


@dataclass(frozen=True)
class Effect:
    """How a catalog incident (:mod:`stream.offline.simulate.catalog`) changes the traffic
    of its ``endpoints`` (indexes into World.endpoints) while it runs.

    Multipliers act on the request rate and on the input and output tokens per request;
    ``cache_lost`` is the share of cache reads that become plain input; ``model`` switches
    the endpoints to another model; ``failure`` fails their attempts (with ``failing_model``:
    every endpoint calling that model, whoever's). The rate and token multipliers reach
    their size over ``ramp_ms`` (0: at once).

    >>> Effect(rate=5.0, ramp_ms=1000).level(500, 0), Effect(rate=5.0).level(0, 0)
    (0.5, 1.0)
    """

    endpoints: tuple[int, ...] = ()
    rate: float = 1.0
    input: float = 1.0
    output: float = 1.0
    cache_lost: float = 0.0
    model: int | None = None
    failure: FailureMode | None = None
    failing_model: int | None = None
    ramp_ms: int = 0

    def level(self, t_ms: int, start_ms: int) -> float:
        """How much of its size the effect has reached at ``t_ms``: 0 to 1."""
        return 1.0 if self.ramp_ms <= 0 else min(1.0, max(0.0, (t_ms - start_ms) / self.ramp_ms))


@dataclass(frozen=True)
class Incident:
    id: str
    kind: str
    alertname: str
    labels: dict[str, str]
    start_ms: int
    end_ms: int
    endpoint: int | None = None  # the affected endpoint, for endpoint incidents
    model: int | None = None  # the failing model, for provider_outage
    customer: int | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    # Alerts this incident may rightly raise as well (not required): an endpoint's spike
    # is also its customer's; an outage storms every endpoint calling the model.
    secondary: list[dict[str, Any]] = field(default_factory=list)
    # Catalog incidents only (the detection benchmark's): what they do, how big they are.
    effect: Effect | None = None
    group: str = ""  # spike | storm | cost_shift | margin
    size: float | None = None
    size_unit: str = ""
    excess_usd_per_hour: float | None = None  # expected, at the key's mean weekday rate

    def truth(self) -> dict[str, Any]:
        if self.effect is not None:
            hourly = float(self.excess_usd_per_hour or 0.0)
            return {
                "id": self.id,
                "kind": self.kind,
                "group": self.group,
                "size": self.size,
                "size_unit": self.size_unit,
                "labels": self.labels,
                "start": rfc3339(self.start_ms),
                "end": rfc3339(self.end_ms),
                "excess_usd_per_hour": round(hourly, 4),
                "excess_usd_per_month": round(hourly * HOURS_PER_MONTH, 2),
                "secondary": self.secondary,
                "detail": self.detail,
            }
        return {
            "id": self.id,
            "kind": self.kind,
            "alertname": self.alertname,
            "labels": self.labels,
            "start": rfc3339(self.start_ms),
            "end": rfc3339(self.end_ms),
            "secondary": self.secondary,
            "detail": self.detail,
        }


DURATION_MIN = {"runaway_loop": 40, "model_switch": 60, "retry_loop": 30, "provider_outage": 20}
RUNAWAY_MULTIPLIER = 15.0
RETRY_LOOP = FailureMode(0.5, ("rate_limited",), (1.0,), 1.0, 5)
OUTAGE = FailureMode(0.6, ("server_error", "overloaded"), (0.5, 0.5), 0.85, 3)
# Staggered incidents need the longest one plus three gaps: about 1.05 simulated days.
MIN_WINDOW_MS = (max(DURATION_MIN.values()) + 15) * MINUTE_MS


def plan_incidents(world: World, start_ms: int, end_ms: int, seed: int) -> list[Incident]:
    """The five labelled incidents of a run, on distinct keys, in the brief's order.

    The four timed ones start on whole minutes on the last simulated day, at least 24 h
    after ``start_ms`` (epoch ms), one after another when the day has room (else
    staggered, never two at once on one customer); plan_overgrowth spans the whole run.
    Raises ValueError when the run is too short or has too few busy endpoints.
    """
    rng = np.random.default_rng([seed, 2])
    lo, hi = _incident_window(start_ms, end_ms)
    starts = _schedule(rng, lo, hi, start_ms)
    outage_model, outage_customers = _outage_model(world)
    taken: dict[int, tuple[int, int]] = {}  # endpoint -> its incident's [start, end) ms

    def pick(kind: str, score: Any, eligible: Any = None, prefer: Any = None) -> int:
        span = (starts[kind], starts[kind] + DURATION_MIN[kind] * MINUTE_MS)
        return _pick_endpoint(world, rng, taken, span, outage_model, score, eligible, prefer)

    cost = world.expected_cost

    def switch_excess(e: int, ep: Endpoint) -> float:  # USD/h
        return 60 * ep.rate_per_min * (cost(e, _switch_target(ep.model)) - cost(e))

    def runaway_excess(e: int, ep: Endpoint) -> float:  # USD/h
        return 60 * (RUNAWAY_MULTIPLIER - 1) * ep.rate_per_min * cost(e)

    def material(excess: Any) -> Any:
        return lambda e, ep: excess(e, ep) >= MATERIAL_USD_PER_HOUR

    switch = pick(
        "model_switch",
        switch_excess,
        prefer=material(switch_excess),
        eligible=lambda ep: MODELS[ep.model].model in SWITCH_TARGETS,
    )
    model_rate: dict[int, float] = {}
    for ep in world.endpoints:
        model_rate[ep.model] = model_rate.get(ep.model, 0.0) + ep.rate_per_min
    # A retry loop on an endpoint that carries most of its model's traffic would also look
    # like a provider outage of that model: prefer one that is a small part of it.
    retry = pick(
        "retry_loop",
        lambda e, ep: ep.rate_per_min,
        prefer=lambda e, ep: ep.rate_per_min <= RETRY_LOOP_MODEL_SHARE * model_rate[ep.model],
    )
    runaway = pick("runaway_loop", runaway_excess, prefer=material(runaway_excess))
    overgrowth = _pick_overgrowth(world, rng, {world.endpoints[e].customer for e in taken})
    target = _switch_target(world.endpoints[switch].model)

    def on_endpoint(n: int, kind: str, alertname: str, e: int, **detail: Any) -> Incident:
        ep, s = world.endpoints[e], starts[kind]
        labels = {"customer_id": world.customers[ep.customer].customer_id, "endpoint": ep.name}
        spec = MODELS[ep.model]
        detail = {
            "provider": spec.provider,
            "model": spec.model,
            "endpoint_rate_per_min": round(ep.rate_per_min, 2),
            **detail,
        }
        secondary = (
            [{"alertname": alertname, "labels": {"customer_id": labels["customer_id"]}}]
            if alertname == "spend_spike"
            else [
                {"alertname": alertname, "labels": {"provider": spec.provider, "model": spec.model}}
            ]
        )
        return Incident(
            f"inc-{n}",
            kind,
            alertname,
            labels,
            s,
            s + DURATION_MIN[kind] * MINUTE_MS,
            endpoint=e,
            customer=ep.customer,
            model=target if kind == "model_switch" else None,
            detail=detail,
            secondary=secondary,
        )

    outage = MODELS[outage_model]
    s = starts["provider_outage"]
    return [
        on_endpoint(
            1,
            "runaway_loop",
            "spend_spike",
            runaway,
            multiplier=RUNAWAY_MULTIPLIER,
            expected_excess_usd_per_hour=round(
                runaway_excess(runaway, world.endpoints[runaway]), 2
            ),
        ),
        on_endpoint(
            2,
            "model_switch",
            "spend_spike",
            switch,
            to=f"{MODELS[target].provider}/{MODELS[target].model}",
            expected_excess_usd_per_hour=round(switch_excess(switch, world.endpoints[switch]), 2),
        ),
        on_endpoint(
            3,
            "retry_loop",
            "retry_storm",
            retry,
            error_share=RETRY_LOOP.fail_share,
            error_type="rate_limited",
            max_attempt=RETRY_LOOP.max_attempt,
        ),
        Incident(
            "inc-4",
            "provider_outage",
            "retry_storm",
            {"provider": outage.provider, "model": outage.model},
            s,
            s + DURATION_MIN["provider_outage"] * MINUTE_MS,
            model=outage_model,
            detail={"error_share": OUTAGE.fail_share, "customers": outage_customers},
            secondary=[
                {"alertname": "retry_storm", "labels": labels}
                for labels in _endpoints_on(world, outage_model)
            ],
        ),
        Incident(
            "inc-5",
            "plan_overgrowth",
            "margin_breach",
            {"customer_id": world.customers[overgrowth].customer_id},
            start_ms,
            end_ms,
            customer=overgrowth,
        ),
    ]


def _endpoints_on(world: World, model: int) -> list[dict[str, str]]:
    """The (customer_id, endpoint) pairs calling ``model``: an outage fails them all."""
    return [
        {"customer_id": world.customers[ep.customer].customer_id, "endpoint": ep.name}
        for ep in world.endpoints
        if ep.model == model
    ]


def _switch_target(model: int) -> int:
    return MODEL_INDEX[SWITCH_TARGETS.get(MODELS[model].model, MODELS[model].model)]


def _incident_window(start_ms: int, end_ms: int) -> tuple[int, int]:
    """[lo, hi) epoch ms: the last simulated day, at or after 24 h from the start."""
    days = math.ceil((end_ms - start_ms) / DAY_MS)
    lo = start_ms + max(1, days - 1) * DAY_MS
    if end_ms - lo < MIN_WINDOW_MS and days > 2:
        lo -= DAY_MS  # a sliver of a last day: use the full day before it
    if end_ms - lo < MIN_WINDOW_MS:
        need = 1 + MIN_WINDOW_MS / DAY_MS
        raise ValueError(
            f"incidents need a day of history and then {MIN_WINDOW_MS // MINUTE_MS}"
            f" min: use days >= {math.ceil(need * 100) / 100}"
        )
    return lo, end_ms


def _schedule(rng: np.random.Generator, lo: int, hi: int, grid_ms: int) -> dict[str, int]:
    """Start (epoch ms, on the minute grid of ``grid_ms``) of each timed incident.

    One after another with random gaps of at least 5 min, within 08:00-22:00 UTC when
    that has room; staggered 5+ min apart (overlapping in time) when [lo, hi) is too short.
    """
    kinds = [list(DURATION_MIN)[i] for i in rng.permutation(len(DURATION_MIN))]
    durations = [DURATION_MIN[k] * MINUTE_MS for k in kinds]
    lo, hi = lo + MIN_GAP_MS, hi - MIN_GAP_MS
    midnight = lo - lo % DAY_MS
    day_lo, day_hi = max(lo, midnight + 8 * 3_600_000), min(hi, midnight + 22 * 3_600_000)
    if day_hi - day_lo >= sum(durations) + 3 * 4 * MIN_GAP_MS:
        lo, hi = day_lo, day_hi
    slack = hi - lo - sum(durations) - 3 * MIN_GAP_MS

    def on_grid(t: float) -> int:
        return grid_ms + int((t - grid_ms) // MINUTE_MS) * MINUTE_MS

    starts: dict[str, int] = {}
    if slack >= 0:
        gaps = rng.dirichlet(np.ones(len(kinds) + 1)) * slack
        t = lo + float(gaps[0])
        for k, (kind, duration) in enumerate(zip(kinds, durations, strict=True)):
            starts[kind] = on_grid(t)
            t += duration + MIN_GAP_MS + float(gaps[k + 1])
        return starts
    kinds.sort(key=DURATION_MIN.__getitem__, reverse=True)  # the shortest goes last
    step = (hi - lo - DURATION_MIN[kinds[-1]] * MINUTE_MS) / (len(kinds) - 1)
    for k, kind in enumerate(kinds):
        starts[kind] = on_grid(lo + k * step)
    return starts


def _outage_model(world: World) -> tuple[int, list[str]]:
    """The busiest model used by at least 3 customers, and those customers' ids."""
    users: dict[int, set[int]] = {}
    rate: dict[int, float] = {}
    for ep in world.endpoints:
        users.setdefault(ep.model, set()).add(ep.customer)
        rate[ep.model] = rate.get(ep.model, 0.0) + ep.rate_per_min
    shared = [
        m for m in users if len(users[m]) >= 3 and MODELS[m].model not in SWITCH_TARGETS.values()
    ]
    if not shared:
        raise ValueError("provider_outage needs a model used by >= 3 customers: add customers")
    model = max(shared, key=lambda m: (rate[m], -m))
    return model, sorted(world.customers[c].customer_id for c in users[model])


def _pick_endpoint(
    world: World,
    rng: np.random.Generator,
    taken: dict[int, tuple[int, int]],
    span: tuple[int, int],
    avoid_model: int,
    score: Any,
    eligible: Any = None,
    prefer: Any = None,
) -> int:
    """A random one of the top 3 endpoints by ``score`` among those busy enough (the top
    one when ``prefer`` accepts none).

    Prefers, in this order: endpoints ``prefer`` accepts, customers without an incident,
    models other than the outage's, so the incidents are clear and do not blur each other;
    shares a customer (never an endpoint) only when the incidents do not overlap in time.
    Adds the choice to ``taken`` with its ``span`` (epoch ms).
    """
    busy: dict[int, list[tuple[int, int]]] = {}  # customer -> its incidents' spans
    for e, used in taken.items():
        busy.setdefault(world.endpoints[e].customer, []).append(used)

    def free_during(ep: Endpoint) -> bool:
        return all(end <= span[0] or span[1] <= start for start, end in busy.get(ep.customer, []))

    pool = [
        e
        for e, ep in enumerate(world.endpoints)
        if ep.rate_per_min >= MIN_INCIDENT_RATE
        and not world.customers[ep.customer].free_tier
        and e not in taken
        and free_during(ep)
        and (eligible is None or eligible(ep))
    ]
    if not pool:
        raise ValueError(
            f"incidents need busy endpoints (>= {MIN_INCIDENT_RATE} requests/min,"
            " paying, one incident per customer at a time): raise rate_per_min"
            " or customers"
        )
    preferred = [e for e in pool if prefer is None or prefer(e, world.endpoints[e])]
    top = 3 if preferred else 1  # none is ideal: take the best there is
    pool = preferred or pool
    pool = [e for e in pool if world.endpoints[e].customer not in busy] or pool
    pool = [e for e in pool if world.endpoints[e].model != avoid_model] or pool
    pool.sort(key=lambda e: (-score(e, world.endpoints[e]), e))
    chosen = pool[int(rng.integers(min(top, len(pool))))]
    taken[chosen] = span
    return chosen


def _pick_overgrowth(world: World, rng: np.random.Generator, taken: set[int]) -> int:
    """One of the 3 largest paying customers not in ``taken`` (customer indexes)."""
    pool = [c for c, cu in enumerate(world.customers) if not cu.free_tier and c not in taken]
    if not pool:
        raise ValueError("plan_overgrowth needs one more paying customer: add customers")
    pool.sort(key=lambda c: (-world.customers[c].rate_per_min, c))
    return pool[int(rng.integers(min(3, len(pool))))]
