"""The detection benchmark's incidents and bursts (``bench/detection``), planned when
``SimConfig.incident_kinds`` or ``SimConfig.bursts`` is set.

Nine kinds of trouble, each at several sizes, and each size twice: on a key drawn in
proportion to its spend (trouble follows traffic) and on a key drawn uniformly (most keys
are small: customer volumes are heavy-tailed), from the keys the kind can happen to. So
many incidents are worth less than any detector's floor, as in a real fleet. Each is
labelled with the excess spend it causes (expected, USD/h at the key's mean weekday rate,
and that times 730 h as USD/month). The acute kinds (runaway loop, retry loop, provider
outage) last 20-40 minutes, one at a time; the others last from their start to the end
of the run. All start after a full day of history, each on a customer of its own (a
provider outage on a model that no other incident's customer calls).

Bursts are benign: a batch job or a launch multiplies one endpoint's traffic 1.5-6x for
10-90 minutes, on customers without an incident. A scorer treats alerts on them as neither
right nor wrong.

>>> sorted(KINDS)[:3], KINDS["prompt_growth"].sizes
(['cache_loss', 'free_tier_abuse', 'margin_erosion'], (1.5, 3.0))
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from stream.offline.simulate.incidents import BACKGROUND, Effect, FailureMode, Incident
from stream.offline.simulate.world import (
    CACHE_READ_SHARE,
    DAY_MS,
    MINUTE_MS,
    MODELS,
    SimConfig,
    World,
    rfc3339,
)

HISTORY_MS = DAY_MS  # before the first incident: spend_spike's warm-up, margin's history
SETTLE_MS = 12 * 3_600_000  # a lasting incident starts at least this long before the end
RAMP_MS = 12 * 3_600_000  # margin erosion reaches its size over this
ACUTE_GAP_MS = 20 * MINUTE_MS  # between one acute incident's end and the next one's start
SWITCH_TOLERANCE = 2.0  # a switch target's cost ratio is within this factor of the size
TIMEOUT_OUTPUT_SHARE = 0.55  # of the output tokens a timed-out attempt is billed, on average
BURST_MULTIPLIER = (1.5, 6.0)
BURST_MINUTES = (10, 90)


@dataclass(frozen=True)
class KindSpec:
    """One kind of incident: its group, its sizes (in ``size_unit``), how long it lasts
    (``None``: to the end of the run) and what it happens to."""

    group: str  # spike | storm | cost_shift | margin
    sizes: tuple[float, ...]
    size_unit: str
    duration_min: int | None
    scope: str  # endpoint | customer | free_customer | model


KINDS = {
    "runaway_loop": KindSpec("spike", (2.0, 5.0, 15.0), "x requests", 40, "endpoint"),
    "retry_loop": KindSpec("storm", (0.1, 0.25, 0.5), "share failing (429)", 30, "endpoint"),
    "provider_outage": KindSpec("storm", (0.1, 0.3, 0.6), "share failing (5xx)", 20, "model"),
    "model_switch": KindSpec("cost_shift", (3.0, 15.0), "x cost per request", None, "endpoint"),
    "prompt_growth": KindSpec("cost_shift", (1.5, 3.0), "x input tokens", None, "endpoint"),
    "output_growth": KindSpec("cost_shift", (1.5, 3.0), "x output tokens", None, "endpoint"),
    "cache_loss": KindSpec("cost_shift", (0.5, 1.0), "share of cache reads lost", None, "endpoint"),
    "margin_erosion": KindSpec(
        "margin", (1.5, 3.0, 6.0), "x requests, ramped over 12 h", None, "customer"
    ),
    "free_tier_abuse": KindSpec("margin", (5.0, 25.0, 100.0), "x requests", None, "free_customer"),
}


def retry_loop_mode(size: float) -> FailureMode:
    """A client retrying on 429s: ``size`` of its attempts rate-limited, up to 5 attempts."""
    return FailureMode(size, ("rate_limited",), (1.0,), 1.0, 5)


def outage_mode(size: float) -> FailureMode:
    """A provider failing ``size`` of the attempts on a model with 500s and 503s."""
    return FailureMode(size, ("server_error", "overloaded"), (0.5, 0.5), 0.85, 3)


@dataclass(frozen=True)
class Burst:
    """Benign extra traffic on one endpoint: ``multiplier`` x its rate in [start, end)."""

    id: str
    endpoint: int
    labels: dict[str, str]
    start_ms: int
    end_ms: int
    multiplier: float
    excess_usd_per_hour: float

    def truth(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "labels": self.labels,
            "start": rfc3339(self.start_ms),
            "end": rfc3339(self.end_ms),
            "multiplier": round(self.multiplier, 2),
            "excess_usd_per_hour": round(float(self.excess_usd_per_hour), 4),
        }


DRAWS = ("by_spend", "uniform")  # how an incident's key is drawn; every size gets both


def catalog_sizes(cfg: SimConfig) -> list[tuple[str, float, str]]:
    """(kind, size, draw) of every incident ``cfg`` asks for, in its kinds' order."""
    unknown = [kind for kind in cfg.incident_kinds if kind not in KINDS]
    if unknown:
        raise ValueError(f"SimConfig.incident_kinds: unknown {unknown}; valid: {sorted(KINDS)}")
    if cfg.incidents:
        raise ValueError("SimConfig: incidents and incident_kinds are exclusive; set one")
    sizes = dict(cfg.incident_sizes or {})
    return [
        (kind, float(size), draw)
        for kind in cfg.incident_kinds
        for size in sizes.get(kind, KINDS[kind].sizes)
        for draw in DRAWS
    ]


def plan_catalog(world: World, start_ms: int, end_ms: int, cfg: SimConfig) -> list[Incident]:
    """The incidents ``cfg.incident_kinds`` asks for: every size of every kind, each on a
    key drawn by spend and on one drawn uniformly, numbered in that order. Raises
    ValueError when the run is shorter than a day and 12 h, or has too few customers for
    one incident each."""
    wanted = catalog_sizes(cfg)
    lo = start_ms + HISTORY_MS
    if end_ms - lo < SETTLE_MS:
        raise ValueError(
            f"incident_kinds need {HISTORY_MS // 3_600_000} h of history and then"
            f" {SETTLE_MS // 3_600_000} h: use days >= {(HISTORY_MS + SETTLE_MS) / DAY_MS}"
        )
    rng = np.random.default_rng([cfg.seed, 4])
    outage = _outage_model(world) if any(w[0] == "provider_outage" for w in wanted) else None
    spans = _schedule(rng, [kind for kind, _, _ in wanted], lo, end_ms, start_ms)
    planner = _Planner(world, rng, outage)
    return [
        planner.plan(f"inc-{n}", kind, size, draw, span)
        for n, ((kind, size, draw), span) in enumerate(zip(wanted, spans, strict=True), start=1)
    ]


def plan_bursts(
    world: World, start_ms: int, end_ms: int, cfg: SimConfig, incidents: list[Incident]
) -> list[Burst]:
    """``cfg.bursts`` per simulated day, anywhere in the run, on endpoints of customers
    without an incident."""
    rng = np.random.default_rng([cfg.seed, 6])
    busy = {inc.customer for inc in incidents if inc.customer is not None}
    pool = [e for e, ep in enumerate(world.endpoints) if ep.customer not in busy]
    count = round(cfg.bursts * (end_ms - start_ms) / DAY_MS)
    if count and not pool:
        raise ValueError("bursts need a customer without an incident: add customers")
    out = []
    for n in range(1, count + 1):
        e = pool[int(rng.integers(len(pool)))]
        minutes = int(rng.integers(*BURST_MINUTES))
        multiplier = float(rng.uniform(*BURST_MULTIPLIER))
        latest = max(start_ms, end_ms - minutes * MINUTE_MS)
        start = _on_grid(float(rng.uniform(start_ms, latest)), start_ms)
        ep = world.endpoints[e]
        out.append(
            Burst(
                f"burst-{n}",
                e,
                _endpoint_labels(world, e),
                start,
                start + minutes * MINUTE_MS,
                multiplier,
                60 * (multiplier - 1) * ep.rate_per_min * world.expected_cost(e),
            )
        )
    return out


def _on_grid(t: float, grid_ms: int) -> int:
    return grid_ms + int((t - grid_ms) // MINUTE_MS) * MINUTE_MS


def _schedule(
    rng: np.random.Generator, kinds: list[str], lo: int, hi: int, grid_ms: int
) -> list[tuple[int, int]]:
    """[start, end) epoch ms of each incident: the acute ones one at a time, each at a
    random time in its own slot of [lo, hi); the lasting ones from a random time in
    [lo, hi - 12 h) to ``hi``."""
    acute = [i for i, kind in enumerate(kinds) if KINDS[kind].duration_min is not None]
    spans: dict[int, tuple[int, int]] = {}
    if acute:
        slot = (hi - lo) / len(acute)
        for k, i in enumerate(rng.permutation(acute).tolist()):
            duration = (KINDS[kinds[i]].duration_min or 0) * MINUTE_MS
            room = slot - duration - ACUTE_GAP_MS
            if room < 0:
                raise ValueError(
                    f"{len(acute)} acute incidents do not fit one at a time in"
                    f" {(hi - lo) / DAY_MS:.2f} days: use more days"
                )
            start = _on_grid(lo + k * slot + rng.uniform(0, room), grid_ms)
            spans[i] = (start, start + duration)
    for i in range(len(kinds)):
        if i not in spans:
            spans[i] = (_on_grid(rng.uniform(lo, hi - SETTLE_MS), grid_ms), hi)
    return [spans[i] for i in range(len(kinds))]


def _outage_model(world: World) -> int:
    """The busiest model that at least 3 paying customers and no free one call."""
    users: dict[int, set[int]] = {}
    rate: dict[int, float] = {}
    for ep in world.endpoints:
        users.setdefault(ep.model, set()).add(ep.customer)
        rate[ep.model] = rate.get(ep.model, 0.0) + ep.rate_per_min
    free = {c for c, customer in enumerate(world.customers) if customer.free_tier}
    shared = [m for m, who in users.items() if len(who) >= 3 and not who & free]
    if not shared:
        raise ValueError("provider_outage needs a model 3 paying customers call: add customers")
    return max(shared, key=lambda m: (rate[m], -m))


def _endpoint_labels(world: World, e: int) -> dict[str, str]:
    ep = world.endpoints[e]
    return {"customer_id": world.customers[ep.customer].customer_id, "endpoint": ep.name}


class _Planner:
    """Picks each incident's key (a customer not used yet) and works out its effect and
    excess spend."""

    def __init__(self, world: World, rng: np.random.Generator, outage: int | None) -> None:
        self.world = world
        self.rng = rng
        self.outage = outage
        self.used: set[int] = set()  # customers with an incident
        self.draw = "uniform"  # how the incident being planned draws its key

    def plan(self, id_: str, kind: str, size: float, draw: str, span: tuple[int, int]) -> Incident:
        spec = KINDS[kind]
        self.draw = draw
        common: dict[str, Any] = {
            "group": spec.group,
            "size": size,
            "size_unit": spec.size_unit,
        }
        if spec.scope == "model":
            incident = self._outage(id_, kind, size, span, common)
        elif spec.scope == "endpoint":
            incident = self._on_endpoint(id_, kind, size, span, common)
        else:
            incident = self._on_customer(
                id_, kind, size, span, common, spec.scope == "free_customer"
            )
        incident.detail["key_drawn"] = draw
        return incident

    def _outage(
        self, id_: str, kind: str, size: float, span: tuple[int, int], common: dict[str, Any]
    ) -> Incident:
        assert self.outage is not None
        world, model = self.world, self.outage
        mode = outage_mode(size)
        on_model = [e for e, ep in enumerate(world.endpoints) if ep.model == model]
        spec = MODELS[model]
        return Incident(
            id_,
            kind,
            "",
            {"provider": spec.provider, "model": spec.model},
            *span,
            model=model,
            detail={
                "error_share": size,
                "customers": sorted(
                    {world.customers[world.endpoints[e].customer].customer_id for e in on_model}
                ),
            },
            secondary=[_endpoint_labels(world, e) for e in on_model],
            effect=Effect(failure=mode, failing_model=model),
            excess_usd_per_hour=sum(self._waste(e, mode) for e in on_model),
            **common,
        )

    def _pick(self, pool: list[int], usd_per_hour: list[float], what: str) -> int:
        """One of ``pool``: uniformly, or in proportion to its spend (``usd_per_hour``)."""
        if not pool:
            raise ValueError(
                f"no key left for a {what} incident (one customer each, none calling the"
                " outage's model): add customers"
            )
        weights = np.array(usd_per_hour) if self.draw == "by_spend" else np.ones(len(pool))
        if weights.sum() <= 0:
            weights = np.ones(len(pool))
        return pool[int(self.rng.choice(len(pool), p=weights / weights.sum()))]

    def _hourly(self, e: int) -> float:
        """USD/h endpoint ``e`` spends at its mean weekday rate."""
        return 60 * self.world.endpoints[e].rate_per_min * self.world.expected_cost(e)

    def _on_endpoint(
        self, id_: str, kind: str, size: float, span: tuple[int, int], common: dict[str, Any]
    ) -> Incident:
        world = self.world
        pool = [
            e
            for e, ep in enumerate(world.endpoints)
            if not world.customers[ep.customer].free_tier
            and ep.customer not in self.used
            and ep.model != self.outage
            and self._fits(kind, size, e)
        ]
        e = self._pick(pool, [self._hourly(e) for e in pool], kind)
        ep = world.endpoints[e]
        self.used.add(ep.customer)
        unit = world.unit_cost[ep.model]
        per_hour = 60 * ep.rate_per_min
        input_mean = ep.input_median * math.exp(ep.input_sigma**2 / 2)
        output_mean = ep.output_median * math.exp(ep.output_sigma**2 / 2)
        spec = MODELS[ep.model]
        detail: dict[str, Any] = {
            "provider": spec.provider,
            "model": spec.model,
            "endpoint_rate_per_min": round(ep.rate_per_min, 3),
        }
        secondary: list[dict[str, Any]] = []  # a customer-level alert is about it already
        if kind == "runaway_loop":
            effect = Effect((e,), rate=size)
            excess = per_hour * (size - 1) * world.expected_cost(e)
        elif kind == "retry_loop":
            effect = Effect((e,), failure=retry_loop_mode(size))
            excess = max(0.0, self._waste(e, retry_loop_mode(size)) - self._waste(e, BACKGROUND))
            secondary.append({"provider": spec.provider, "model": spec.model})
        elif kind == "model_switch":
            target = self._switch_target(e, size)
            assert target is not None
            effect = Effect((e,), model=target)
            excess = per_hour * (world.expected_cost(e, target) - world.expected_cost(e))
            detail["to"] = f"{MODELS[target].provider}/{MODELS[target].model}"
        elif kind == "prompt_growth":
            effect = Effect((e,), input=size)
            excess = per_hour * (size - 1) * input_mean * unit[0]
        elif kind == "output_growth":
            effect = Effect((e,), output=size)
            excess = per_hour * (size - 1) * output_mean * unit[1]
        else:  # cache_loss
            effect = Effect((e,), cache_lost=size)
            lost_tokens = size * CACHE_READ_SHARE * ep.cache_prefix
            excess = per_hour * lost_tokens * (unit[0] - unit[2])
            detail["cache_prefix_tokens"] = ep.cache_prefix
        return Incident(
            id_,
            kind,
            "",
            _endpoint_labels(world, e),
            *span,
            endpoint=e,
            customer=ep.customer,
            detail=detail,
            secondary=secondary,
            effect=effect,
            excess_usd_per_hour=excess,
            **common,
        )

    def _on_customer(
        self,
        id_: str,
        kind: str,
        size: float,
        span: tuple[int, int],
        common: dict[str, Any],
        free: bool,
    ) -> Incident:
        world = self.world
        calls_outage = {ep.customer for ep in world.endpoints if ep.model == self.outage}
        pool = [
            c
            for c, customer in enumerate(world.customers)
            if customer.free_tier == free and c not in self.used and c not in calls_outage
        ]
        hourly_of = [0.0] * len(world.customers)
        for e, ep in enumerate(world.endpoints):
            hourly_of[ep.customer] += self._hourly(e)
        c = self._pick(pool, [hourly_of[c] for c in pool], kind)
        self.used.add(c)
        mine = tuple(e for e, ep in enumerate(world.endpoints) if ep.customer == c)
        hourly = hourly_of[c]
        ramp = RAMP_MS if kind == "margin_erosion" else 0
        return Incident(
            id_,
            kind,
            "",
            {"customer_id": world.customers[c].customer_id},
            *span,
            customer=c,
            detail={
                "customer_rate_per_min": round(world.customers[c].rate_per_min, 3),
                "usd_per_hour_before": round(hourly, 4),
            },
            effect=Effect(mine, rate=size, ramp_ms=ramp),
            excess_usd_per_hour=(size - 1) * hourly,
            **common,
        )

    def _fits(self, kind: str, size: float, e: int) -> bool:
        if kind == "model_switch":
            return self._switch_target(e, size) is not None
        if kind == "cache_loss":
            return self.world.endpoints[e].cache_prefix > 0
        return True

    def _switch_target(self, e: int, size: float) -> int | None:
        """The model of the same provider whose cost per request on ``e`` is closest to
        ``size`` x the current one (within a factor of 2), or None."""
        world = self.world
        current = world.endpoints[e].model
        base = world.expected_cost(e)
        best, best_gap = None, math.log(SWITCH_TOLERANCE)
        for m, spec in enumerate(MODELS):
            if m == current or m == self.outage or spec.provider != MODELS[current].provider:
                continue
            gap = abs(math.log(world.expected_cost(e, m) / base / size))
            if gap <= best_gap:
                best, best_gap = m, gap
        return best

    def _waste(self, e: int, mode: FailureMode) -> float:
        """USD/h that failed attempts cost on endpoint ``e`` under ``mode``: a failed
        attempt bills nothing for a 429 or 503, the prompt half the time for a 500, and
        the prompt and about half the answer for a timeout."""
        ep = self.world.endpoints[e]
        unit = self.world.unit_cost[ep.model]
        prompt = ep.input_median * math.exp(ep.input_sigma**2 / 2) * unit[0]
        answer = ep.output_median * math.exp(ep.output_sigma**2 / 2) * unit[1]
        billed = {"timeout": prompt + TIMEOUT_OUTPUT_SHARE * answer, "server_error": 0.5 * prompt}
        per_attempt = sum(
            w * billed.get(t, 0.0)
            for t, w in zip(mode.error_types, mode.error_weights, strict=True)
        )
        f, r = mode.fail_share, mode.retry_share
        failed = f * sum((f * r) ** k for k in range(mode.max_attempt))
        return float(60 * ep.rate_per_min * failed * per_attempt)
