"""Simulated LLM API traffic in the contract formats, optionally with labelled incidents.

``iter_events`` yields ``("usage" | "errors", event)`` in event-time order (benchmarks);
``simulate`` writes ``usage.jsonl.gz``, ``errors.jsonl.gz``, ``customers.jsonl`` and, with
incidents, ``truth.json``: the labels an evaluation scores alerts against. Everything
follows from the seed, so the same :class:`SimConfig` writes byte-identical files.

The traffic is what a gateway sees from a fleet of LLM products: heavy-tailed customers,
a diurnal (peak 15:00 UTC, 2.5x the trough) and weekly (weekends 0.7x) cycle, Poisson
arrivals, lognormal token counts, prompt caching on Anthropic, ~1.5 % failed attempts of
which ~70 % are retried, a few producer duplicates and mixed timestamp formats. Incidents
(runaway loop, model switch, retry loop, provider outage) start on the last day after a
full day of history; plan overgrowth runs from the start.

>>> round(float(diurnal(15.0) / diurnal(3.0)), 2), weekly(START.timestamp() + 5.5 * 86_400)
(2.5, 0.7)
>>> kind, event = next(iter_events(SimConfig(days=0.01, customers=3, rate_per_min=20)))
>>> kind, event["customer_id"][:4], event["attempt"]
('usage', 'cus_', 1)
"""

from __future__ import annotations

import gzip
import heapq
import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from operator import itemgetter
from pathlib import Path
from typing import IO, Any, NamedTuple

import numpy as np
import orjson

from stream.core.pricing import PriceTable

USAGE = "usage"
ERRORS = "errors"
DEFAULT_PRICES = Path(__file__).resolve().parents[2] / "config" / "prices.yaml"
START = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday
MINUTE_MS = 60_000
DAY_MS = 86_400_000

PEAK_HOUR_UTC = 15.0
DIURNAL_AMPLITUDE = (2.5 - 1) / (2.5 + 1)  # (1 + a) / (1 - a) = 2.5: peak over trough
WEEKEND_FACTOR = 0.7
WEEKEND_RAMP_H = 4.0  # the weekly step is smoothed over this many hours around midnight

MIN_CUSTOMER_RATE = 1.0  # first attempts per minute, per customer on average
FREE_SHARE = 0.3  # of customers, the smallest, on the free plan with cheap traffic
FAILURE_SHARE = 0.015
RETRY_SHARE = 0.7
DUPLICATE_SHARE = 0.002
REPORTED_COST_SHARE = 0.02  # usage events whose producer reports cost_usd (a gateway)
EPOCH_S_SHARE, EPOCH_MS_SHARE, OFFSET_SHARE = 0.05, 0.05, 0.25  # else RFC 3339 with 'Z'
CACHE_READ_SHARE, CACHE_WRITE_SHARE = 0.85, 0.12  # of calls on Anthropic endpoints
MAX_INPUT_TOKENS, MAX_OUTPUT_TOKENS = 100_000, 16_000

OVERHEAD_RATIO = 0.65  # cost-to-serve = API cost x (1 + overhead), the default plan's
PRICE_MULTIPLE = (4.0, 6.0)  # clean customers pay this many times their cost-to-serve
FREE_MAX_API_USD = 10.0  # per month; the free plan's cost cap is 25 USD cost-to-serve
OVERGROWTH_PRICE_SHARE = 0.5  # of the cost-to-serve, for the plan_overgrowth customer
MIN_INCIDENT_RATE = 3.0  # first attempts per minute on an incident's endpoint
RETRY_LOOP_MODEL_SHARE = 0.1  # at most this share of its model's requests, preferably
# Spend incidents preferably add at least this much, USD/h: a spike worth waking someone.
MATERIAL_USD_PER_HOUR = 5.0
MIN_GAP_MS = 5 * MINUTE_MS


class ModelSpec(NamedTuple):
    provider: str
    model: str
    first_token_ms: float  # median time to first token
    ms_per_token: float  # per output token


MODELS = (
    ModelSpec("openai", "gpt-4o-mini", 350, 8),
    ModelSpec("openai", "gpt-4o", 450, 14),
    ModelSpec("openai", "gpt-4.1", 500, 14),
    ModelSpec("openai", "gpt-4.1-mini", 400, 9),
    ModelSpec("openai", "o4-mini", 1800, 10),
    ModelSpec("anthropic", "claude-sonnet-4-5", 700, 16),
    ModelSpec("anthropic", "claude-haiku-4-5", 450, 8),
    ModelSpec("anthropic", "claude-opus-4-1", 900, 25),
    ModelSpec("google", "gemini-2.5-flash", 400, 5),
    ModelSpec("google", "gemini-2.5-pro", 1500, 12),
    ModelSpec("bedrock", "anthropic.claude-3-5-haiku-20241022-v1:0", 500, 9),
)
MODEL_INDEX = {spec.model: i for i, spec in enumerate(MODELS)}
BEDROCK_HAIKU = MODELS[-1].model
SWITCH_TARGETS = {"gpt-4o-mini": "gpt-4o", "claude-haiku-4-5": "claude-opus-4-1"}


@dataclass(frozen=True)
class EndpointKind:
    """A product feature: which models it tends to run on and how big its calls are."""

    name: str
    weight: float  # how often a customer has one
    models: dict[str, float]  # model -> probability
    input_median: tuple[float, float]  # tokens, the endpoint's median drawn log-uniformly
    output_median: tuple[float, float]
    sigma: tuple[float, float]  # lognormal sigma of input and output tokens


KINDS = (
    EndpointKind(
        "chat",
        0.30,
        {
            "gpt-4o-mini": 0.35,
            "claude-haiku-4-5": 0.25,
            "gemini-2.5-flash": 0.15,
            "gpt-4.1-mini": 0.10,
            "claude-sonnet-4-5": 0.10,
            "gpt-4o": 0.05,
        },
        (600, 2000),
        (150, 500),
        (0.7, 0.6),
    ),
    EndpointKind(
        "/v1/summarize",
        0.20,
        {
            "gemini-2.5-flash": 0.30,
            "gpt-4o-mini": 0.30,
            "claude-haiku-4-5": 0.15,
            BEDROCK_HAIKU: 0.15,
            "gpt-4.1-mini": 0.10,
        },
        (1500, 3000),
        (150, 400),
        (0.6, 0.4),
    ),
    EndpointKind(
        "search",
        0.20,
        {
            "gpt-4o-mini": 0.40,
            "gpt-4.1-mini": 0.25,
            "gemini-2.5-flash": 0.20,
            "claude-haiku-4-5": 0.15,
        },
        (800, 2500),
        (100, 300),
        (0.5, 0.5),
    ),
    EndpointKind(
        "agent",
        0.15,
        {
            "claude-sonnet-4-5": 0.30,
            "gpt-4.1": 0.20,
            "o4-mini": 0.15,
            "gpt-4o": 0.10,
            "gemini-2.5-pro": 0.10,
            "claude-haiku-4-5": 0.10,
            "claude-opus-4-1": 0.05,
        },
        (1500, 3000),
        (300, 800),
        (0.9, 0.8),
    ),
    EndpointKind(
        "embed-rerank",
        0.10,
        {"gpt-4o-mini": 0.40, "gemini-2.5-flash": 0.30, BEDROCK_HAIKU: 0.30},
        (300, 1200),
        (100, 200),
        (0.5, 0.3),
    ),
    EndpointKind(
        "/v1/extract",
        0.05,
        {"gpt-4.1-mini": 0.30, "gpt-4o-mini": 0.30, "claude-haiku-4-5": 0.20, BEDROCK_HAIKU: 0.20},
        (800, 2500),
        (100, 400),
        (0.6, 0.5),
    ),
)
# Free-plan traffic is small calls on the cheapest model, so it stays under its cost cap.
FREE_KINDS = tuple(
    EndpointKind(name, 1.0, {"gpt-4o-mini": 1.0}, (300, 400), (100, 120), (0.45, 0.4))
    for name in ("chat", "search")
)
REGIONS = ("us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-1")
NAME_HEADS = (
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Hooli",
    "Vandelay",
    "Stark",
    "Wonka",
    "Tyrell",
    "Cyberdyne",
    "Aperture",
    "Pied Piper",
    "Dunder",
    "Oscorp",
    "Nakatomi",
    "Monarch",
    "Soylent",
    "Massive",
    "Gringotts",
    "Wayne",
)
NAME_TAILS = (
    "Labs",
    "AI",
    "Health",
    "Legal",
    "Robotics",
    "Analytics",
    "Travel",
    "Finance",
    "Studio",
    "Logistics",
)
LIST_PRICES = {
    "starter": (29, 49, 99, 149, 199, 299),
    "pro": (499, 799, 999, 1499, 1999, 2999, 3999, 4999),
}


@dataclass(frozen=True)
class SimConfig:
    """What to simulate. ``rate_per_min``: mean first attempts per minute, all customers,
    averaged over a weekday. ``prices_path`` defaults to the repo's config/prices.yaml."""

    days: float = 2
    customers: int = 20
    seed: int = 1
    incidents: bool = False
    start: datetime = START
    rate_per_min: float = 120.0
    prices_path: Path | None = None


@dataclass(frozen=True)
class SimCustomer:
    customer_id: str
    name: str
    rate_per_min: float  # mean weekday first attempts, all endpoints
    free_tier: bool
    peak_shift_h: float  # this customer's daily peak, hours after 15:00 UTC
    billing_day: int
    margin_target: float | None
    tags: dict[str, str] | None


@dataclass(frozen=True)
class Endpoint:
    customer: int  # index into World.customers
    name: str
    model: int  # index into MODELS
    rate_per_min: float  # mean weekday first attempts
    input_median: float  # tokens
    output_median: float
    input_sigma: float
    output_sigma: float
    cache_prefix: int  # prompt tokens cached (Anthropic), 0 without caching


@dataclass(frozen=True)
class World:
    customers: list[SimCustomer]
    endpoints: list[Endpoint]
    day_level: np.ndarray  # (customer, day): that day's traffic level, lognormal around 1
    unit_cost: np.ndarray  # (model, 4): USD per input, output, cached, cache-write token

    def expected_cost(self, e: int, model: int | None = None) -> float:
        """Mean cost of one successful call on endpoint ``e`` (optionally on ``model``), USD."""
        ep = self.endpoints[e]
        tokens = np.array(
            [
                ep.input_median * math.exp(ep.input_sigma**2 / 2),
                ep.output_median * math.exp(ep.output_sigma**2 / 2),
                ep.cache_prefix * CACHE_READ_SHARE,
                ep.cache_prefix * CACHE_WRITE_SHARE,
            ]
        )
        return float(self.unit_cost[ep.model if model is None else model] @ tokens)


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

    def truth(self) -> dict[str, Any]:
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


@dataclass(frozen=True)
class SimSummary:
    """What ``simulate`` wrote: files, line counts (duplicates included) and incidents."""

    outdir: Path
    files: dict[str, Path]
    usage_events: int
    error_events: int
    duplicates: int
    customers: int
    incidents: tuple[str, ...]
    start: str
    end: str

    def __str__(self) -> str:
        lines = [
            f"simulated {self.start} .. {self.end} into {self.outdir}",
            f"  usage events {self.usage_events} (producer duplicates {self.duplicates}),"
            f" error events {self.error_events}, customers {self.customers}",
        ]
        lines += [f"  incident {line}" for line in self.incidents]
        lines += [f"  wrote {path}" for path in self.files.values()]
        return "\n".join(lines)


def rfc3339(ms: float) -> str:
    """Epoch milliseconds as RFC 3339 UTC, whole seconds."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def diurnal(hour_utc: float | np.ndarray) -> Any:
    """Traffic relative to the daily mean at ``hour_utc`` (hours): peak 15:00, 2.5x trough."""
    return 1.0 + DIURNAL_AMPLITUDE * np.cos(2 * np.pi * (hour_utc - PEAK_HOUR_UTC) / 24)


def weekly(epoch_s: float) -> float:
    """Traffic relative to a weekday (UTC): 0.7 on weekends, ramped over 4 h at midnight."""
    days = epoch_s / 86_400
    weekday = (math.floor(days) + 3) % 7  # 1970-01-01 was a Thursday; Monday is 0
    hour = (days % 1) * 24

    def level(day: int) -> float:
        return WEEKEND_FACTOR if day % 7 >= 5 else 1.0

    half = WEEKEND_RAMP_H / 2
    if hour < half:
        before, after, x = level(weekday - 1), level(weekday), (hour + half) / WEEKEND_RAMP_H
    elif hour > 24 - half:
        before, after, x = level(weekday), level(weekday + 1), (hour - 24 + half) / WEEKEND_RAMP_H
    else:
        return level(weekday)
    return before + (after - before) * (1 - math.cos(math.pi * x)) / 2


def build_world(cfg: SimConfig, prices: PriceTable) -> World:
    """Customers, their endpoints and day-to-day levels, drawn from ``cfg.seed``."""
    if cfg.customers < 1 or cfg.rate_per_min <= 0 or cfg.days <= 0:
        raise ValueError(f"SimConfig needs customers >= 1, rate_per_min > 0 and days > 0: {cfg}")
    rng = np.random.default_rng(cfg.seed)
    rates, free = _customer_rates(rng, cfg.customers, cfg.rate_per_min)
    names = _names(rng, cfg.customers)
    customers: list[SimCustomer] = []
    endpoints: list[Endpoint] = []
    for c in range(cfg.customers):
        customers.append(_customer(rng, c, names[c], float(rates[c]), bool(free[c])))
        endpoints += _endpoints(rng, c, customers[c])
    unit_cost = np.array(
        [
            [
                prices.cost_usd(s.provider, s.model, *tokens)
                for tokens in ((1, 0, 0, 0), (0, 1, 0, 0), (0, 0, 1, 0), (0, 0, 0, 1))
            ]
            for s in MODELS
        ]
    )
    day_level = rng.lognormal(0.0, 0.05, (cfg.customers, math.ceil(cfg.days) + 2))
    return World(customers, endpoints, day_level, unit_cost)


def _customer_rates(rng: np.random.Generator, n: int, total: float) -> tuple[Any, Any]:
    """(first attempts per minute, free-tier mask): a floor each, the rest heavy-tailed."""
    floor = min(MIN_CUSTOMER_RATE, 0.5 * total / n)
    free = np.zeros(n, dtype=bool)
    free[rng.permutation(n)[: round(FREE_SHARE * n) if n >= 3 else 0]] = True
    rates = np.where(free, floor * rng.uniform(0.9, 1.3, n), floor)
    weights = rng.lognormal(0.0, 1.3, n) * ~free
    rest = max(total - rates.sum(), 0.0)
    return rates + rest * weights / max(weights.sum(), 1e-12), free


def _names(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` distinct readable company names ("Acme Robotics", then "Acme Robotics 2")."""
    combos = [f"{head} {tail}" for head in NAME_HEADS for tail in NAME_TAILS]
    order = rng.permutation(len(combos))
    return [
        combos[order[i % len(combos)]] + (f" {i // len(combos) + 1}" if i >= len(combos) else "")
        for i in range(n)
    ]


def _customer(rng: np.random.Generator, c: int, name: str, rate: float, free: bool) -> SimCustomer:
    region = REGIONS[rng.integers(len(REGIONS))] if rng.random() < 0.8 else None
    billing_day = 1 if free or rng.random() < 0.7 else int(rng.integers(2, 29))
    target = float(rng.choice([0.5, 0.55])) if not free and rng.random() < 0.25 else None
    return SimCustomer(
        customer_id=f"cus_{c + 1:04d}",
        name=name,
        rate_per_min=rate,
        free_tier=free,
        peak_shift_h=float(np.clip(rng.normal(0.0, 1.5), -3, 3)),
        billing_day=billing_day,
        margin_target=target,
        tags={"region": region} if region else None,
    )


def _endpoints(rng: np.random.Generator, c: int, customer: SimCustomer) -> list[Endpoint]:
    if customer.free_tier:
        kinds: list[EndpointKind] = list(FREE_KINDS)
    else:
        weights = np.array([k.weight for k in KINDS])
        picked = rng.choice(
            len(KINDS), int(rng.integers(2, 5)), replace=False, p=weights / weights.sum()
        )
        kinds = [KINDS[i] for i in picked]
    shares = rng.dirichlet(np.full(len(kinds), 2.0))
    out = []
    for kind, share in zip(kinds, shares, strict=True):
        names = list(kind.models)
        model = MODEL_INDEX[names[int(rng.choice(len(names), p=list(kind.models.values())))]]
        # Anthropic bills cache reads at 0.1x: products there put a long system prompt first.
        prefix = math.exp(rng.uniform(math.log(1500), math.log(6000)))
        caches = MODELS[model].provider == "anthropic"
        out.append(
            Endpoint(
                customer=c,
                name=kind.name,
                model=model,
                rate_per_min=customer.rate_per_min * float(share),
                input_median=math.exp(rng.uniform(*np.log(kind.input_median))),
                output_median=math.exp(rng.uniform(*np.log(kind.output_median))),
                input_sigma=kind.sigma[0],
                output_sigma=kind.sigma[1],
                cache_prefix=int(prefix) if caches else 0,
            )
        )
    return out


# Incidents ------------------------------------------------------------------------------

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


# Traffic --------------------------------------------------------------------------------

FMT_EPOCH_S, FMT_EPOCH_MS, FMT_OFFSET, FMT_Z = range(4)
FORMAT_EDGES = np.cumsum([EPOCH_S_SHARE, EPOCH_MS_SHARE, OFFSET_SHARE])
HTTP_STATUS = {"rate_limited": 429, "timeout": 504, "server_error": 500, "overloaded": 503}
MESSAGES = {
    "rate_limited": "Rate limit reached for requests per minute. Please retry after a moment.",
    "timeout": "Request timed out.",
    "server_error": "The server had an error while processing your request.",
    "overloaded": "Overloaded",
}
Emitted = tuple[str, dict[str, Any], bool]  # kind, event, is a producer duplicate
Timed = tuple[int, str, dict[str, Any], bool]  # emit time (epoch ms) first


class Call(NamedTuple):
    """One logical request: what every attempt of it sends."""

    endpoint: int
    model: int
    request_id: str
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    latency_ms: float  # of a successful attempt


class Traffic:
    """Draws events minute by minute and keeps the books (spend per customer, duplicates).

    Each minute has its own generator seeded by (seed, minute): an incident changes only
    the minutes it covers, and the rest of the run stays the same as without it.
    """

    def __init__(self, cfg: SimConfig, prices: PriceTable | None = None) -> None:
        if cfg.start.tzinfo is None:
            raise ValueError(f"SimConfig.start must be timezone-aware (UTC), got {cfg.start}")
        self.cfg = cfg
        self.prices = prices or PriceTable.load(cfg.prices_path or DEFAULT_PRICES)
        self.world = world = build_world(cfg, self.prices)
        self.start_ms = round(cfg.start.timestamp() * 1000)
        self.minutes = max(1, round(cfg.days * 1440))
        self.end_ms = self.start_ms + self.minutes * MINUTE_MS
        self.incidents = (
            plan_incidents(world, self.start_ms, self.end_ms, cfg.seed) if cfg.incidents else []
        )
        self.spend_usd = np.zeros(len(world.customers))  # as ingest prices it, duplicates once
        self.duplicates = 0
        eps = world.endpoints
        self._customer = np.array([ep.customer for ep in eps])
        self._rate = np.array([ep.rate_per_min for ep in eps])
        self._model = np.array([ep.model for ep in eps])
        self._shift = np.array([world.customers[ep.customer].peak_shift_h for ep in eps])
        self._mu = np.log([[ep.input_median, ep.output_median] for ep in eps]).T
        self._sigma = np.array([[ep.input_sigma, ep.output_sigma] for ep in eps]).T
        self._prefix = np.array([ep.cache_prefix for ep in eps])
        self._first_token = np.log([spec.first_token_ms for spec in MODELS])
        self._ms_per_token = np.array([spec.ms_per_token for spec in MODELS])
        self._labels = [
            (
                world.customers[ep.customer].customer_id,
                ep.name,
                world.customers[ep.customer].tags,
                ep.cache_prefix > 0,
            )
            for ep in eps
        ]
        self._background = [BACKGROUND] * len(eps)
        self._ts_prefix: dict[int, str] = {}
        self._later: list[tuple[int, int, str, dict[str, Any], bool]] = []  # a heap
        self._seq = 0

    def emissions(self) -> Iterator[Emitted]:
        """Every event in event-time order; a duplicate follows its original a moment later."""
        for m in range(self.minutes):
            batch: Any = self._minute(m)
            due = self._due(self.start_ms + (m + 1) * MINUTE_MS)
            if due:
                batch = heapq.merge(batch, due, key=itemgetter(0))
            for _, kind, event, copy in batch:
                yield kind, event, copy
        for _, kind, event, copy in self._due(math.inf):
            yield kind, event, copy

    def _due(self, until_ms: float) -> list[Timed]:
        out = []
        while self._later and self._later[0][0] < until_ms:
            ms, _, kind, event, copy = heapq.heappop(self._later)
            out.append((ms, kind, event, copy))
        return out

    def _push(self, ms: int, kind: str, event: dict[str, Any], copy: bool = False) -> None:
        self._seq += 1
        heapq.heappush(self._later, (ms, self._seq, kind, event, copy))

    def _effects(self, t_ms: int) -> tuple[Any, Any, list[FailureMode]]:
        """(rate multiplier, model, failure mode) per endpoint for the minute at ``t_ms``."""
        active = [
            inc
            for inc in self.incidents
            if inc.start_ms <= t_ms < inc.end_ms and inc.kind != "plan_overgrowth"
        ]
        if not active:
            return 1.0, self._model, self._background
        mult, model, modes = np.ones(len(self._model)), self._model.copy(), list(self._background)
        # The model switch goes first: an outage fails whatever model an endpoint now calls.
        for inc in sorted(active, key=lambda inc: inc.kind != "model_switch"):
            e = inc.endpoint if inc.endpoint is not None else -1
            if inc.kind == "runaway_loop":
                mult[e] = RUNAWAY_MULTIPLIER
            elif inc.kind == "model_switch":
                model[e] = inc.model
            elif inc.kind == "retry_loop":
                modes[e] = replace(RETRY_LOOP, until_ms=inc.end_ms)
            elif inc.kind == "provider_outage":
                for failing in np.flatnonzero(model == inc.model).tolist():
                    modes[failing] = replace(OUTAGE, until_ms=inc.end_ms)
        return mult, model, modes

    def _minute(self, m: int) -> list[Timed]:
        """The first attempts of minute ``m`` in time order, with failed ones' retries queued."""
        rng = np.random.default_rng([self.cfg.seed, 1, m])
        t = self.start_ms + m * MINUTE_MS
        mult, model_now, modes = self._effects(t)
        hour = ((t + MINUTE_MS / 2) / 3_600_000) % 24
        level = self.world.day_level[self._customer, (t - self.start_ms) // DAY_MS]
        lam = self._rate * diurnal(hour - self._shift) * weekly(t / 1000) * level * mult
        counts = rng.poisson(lam)
        n = int(counts.sum())
        if n == 0:
            return []
        offsets = rng.integers(0, MINUTE_MS, n)
        order = np.argsort(offsets, kind="stable")
        e = np.repeat(np.arange(len(lam)), counts)[order]
        z = rng.standard_normal((3, n))
        u = rng.random((5, n))
        tokens = np.clip(
            np.rint(np.exp(self._mu[:, e] + self._sigma[:, e] * z[:2])),
            1,
            [[MAX_INPUT_TOKENS], [MAX_OUTPUT_TOKENS]],
        ).astype(np.int64)
        prefix = self._prefix[e]
        cached = np.where(u[0] < CACHE_READ_SHARE, prefix, 0)
        written = np.where(
            (u[0] >= CACHE_READ_SHARE) & (u[0] < CACHE_READ_SHARE + CACHE_WRITE_SHARE), prefix, 0
        )
        model = model_now[e]
        latency = np.round(
            np.exp(self._first_token[model] + 0.35 * z[2]) + tokens[1] * self._ms_per_token[model],
            1,
        )
        fail_share = np.array([mode.fail_share for mode in modes])
        failed = u[1] < fail_share[e]
        self._book(
            e[~failed], model[~failed], tokens[:, ~failed], cached[~failed], written[~failed]
        )
        request_ids = rng.integers(0, 2**63, n, dtype=np.int64)
        formats = np.searchsorted(FORMAT_EDGES, u[2])
        columns = zip(
            e.tolist(),
            (t + offsets[order]).tolist(),
            model.tolist(),
            tokens[0].tolist(),
            tokens[1].tolist(),
            cached.tolist(),
            written.tolist(),
            latency.tolist(),
            failed.tolist(),
            formats.tolist(),
            (u[3] < REPORTED_COST_SHARE).tolist(),
            (u[4] < DUPLICATE_SHARE).tolist(),
            request_ids.tolist(),
            strict=True,
        )
        return self._events(rng, m, columns, modes)

    def _events(
        self, rng: np.random.Generator, m: int, columns: Any, modes: list[FailureMode]
    ) -> list[Timed]:
        out: list[Timed] = []
        prefix = f"ev_{self.cfg.seed}_{m}_"
        for i, (e, ms, model, it, ot, cr, cw, lat, failed, fmt, reported, dup, rid) in enumerate(
            columns
        ):
            call = Call(e, model, f"req_{rid:016x}", it, ot, cr, cw, lat)
            if failed:
                chain = self._failure(rng, f"{prefix}{i}", call, ms, fmt, modes[e])
                out.append(chain[0])
                for later in chain[1:]:
                    self._push(*later)
                continue
            event = self._usage(f"{prefix}{i}", ms, fmt, call, 1, reported)
            out.append((ms, USAGE, event, False))
            if dup:
                self._duplicate(rng, ms, event)
        return out

    def _duplicate(self, rng: np.random.Generator, ms: int, event: dict[str, Any]) -> None:
        """Re-send ``event`` (the same object: an identical body) 50 ms to 3 s later."""
        self.duplicates += 1
        self._push(ms + int(rng.integers(50, 3000)), USAGE, event, True)

    def _book(self, e: Any, model: Any, tokens: Any, cached: Any, written: Any) -> None:
        """Add successful first attempts' price-table cost to their customers' spend, USD."""
        unit = self.world.unit_cost[model]
        cost = (
            tokens[0] * unit[:, 0]
            + tokens[1] * unit[:, 1]
            + cached * unit[:, 2]
            + written * unit[:, 3]
        )
        self.spend_usd += np.bincount(self._customer[e], cost, minlength=len(self.spend_usd))

    def _attempt(
        self, event_id: str, ms: int, fmt: int, call: Call, attempt: int
    ) -> dict[str, Any]:
        """The fields every event of one attempt has, usage or error, in contract order."""
        customer_id, endpoint, _, _ = self._labels[call.endpoint]
        spec = MODELS[call.model]
        return {
            "event_id": event_id,
            "ts": self._ts(ms, fmt),
            "customer_id": customer_id,
            "endpoint": endpoint,
            "provider": spec.provider,
            "model": spec.model,
            "request_id": call.request_id,
            "attempt": attempt,
        }

    def _usage(
        self, event_id: str, ms: int, fmt: int, call: Call, attempt: int, reported: bool
    ) -> dict[str, Any]:
        _, _, tags, caches = self._labels[call.endpoint]
        spec = MODELS[call.model]
        event = self._attempt(event_id, ms, fmt, call, attempt)
        event.update(
            {
                "status": "ok",
                "input_tokens": call.input_tokens,
                "output_tokens": call.output_tokens,
            }
        )
        if caches:
            event["cached_input_tokens"] = call.cached_input_tokens
            event["cache_write_tokens"] = call.cache_write_tokens
        event["latency_ms"] = call.latency_ms
        if reported:  # as a gateway bills it: exactly the price-table cost
            event["cost_usd"] = self.prices.cost_usd(
                spec.provider,
                spec.model,
                call.input_tokens,
                call.output_tokens,
                call.cached_input_tokens,
                call.cache_write_tokens,
            )
        if tags:
            event["tags"] = tags
        return event

    def _failure(
        self,
        rng: np.random.Generator,
        event_id: str,
        call: Call,
        ms: int,
        fmt: int,
        mode: FailureMode,
    ) -> list[Timed]:
        """A failed first attempt's error event, then its retries (attempt + 1, the same
        request_id, seconds later) until one succeeds or the client gives up."""
        out: list[Timed] = []
        attempt, error_type = 1, mode.error_type(rng)
        latency = _error_latency_ms(rng, error_type)
        while True:
            will_retry = attempt < mode.max_attempt and rng.random() < mode.retry_share
            event, wait_s = self._error(
                rng, event_id, ms, fmt, call, attempt, error_type, latency, will_retry
            )
            out.append((ms, ERRORS, event, False))
            if not will_retry:
                return out
            attempt += 1
            event_id = f"{event_id.rsplit('.', 1)[0]}.{attempt}"
            fmt = int(np.searchsorted(FORMAT_EDGES, rng.random()))
            started = ms + round(1000 * wait_s)
            if started >= mode.until_ms:
                mode = BACKGROUND  # the incident is over; this retry meets normal service
            if rng.random() >= mode.fail_share:
                ms = started + round(call.latency_ms)
                usage = self._usage(
                    event_id, ms, fmt, call, attempt, rng.random() < REPORTED_COST_SHARE
                )
                self._book_event(call, usage)
                out.append((ms, USAGE, usage, False))
                if rng.random() < DUPLICATE_SHARE:
                    self._duplicate(rng, ms, usage)
                return out
            error_type = mode.error_type(rng)
            latency = _error_latency_ms(rng, error_type)
            ms = started + round(latency)

    def _error(
        self,
        rng: np.random.Generator,
        event_id: str,
        ms: int,
        fmt: int,
        call: Call,
        attempt: int,
        error_type: str,
        latency_ms: float,
        will_retry: bool,
    ) -> tuple[dict[str, Any], float]:
        """(error event ending at ``ms``, seconds the client waits before retrying)."""
        tags = self._labels[call.endpoint][2]
        spec = MODELS[call.model]
        status = (
            529
            if error_type == "overloaded" and spec.provider == "anthropic"
            else HTTP_STATUS[error_type]
        )
        event = self._attempt(event_id, ms, fmt, call, attempt)
        event.update({"error_type": error_type, "http_status": status, "will_retry": will_retry})
        wait_s = 0.5 * 2 ** (attempt - 1) * rng.uniform(1.0, 2.0)  # exponential backoff
        if error_type == "rate_limited":
            event["retry_after_s"] = retry_after = int(rng.choice([1, 2, 3, 5]))
            wait_s = retry_after + rng.uniform(0.0, 0.5)
        elif error_type == "timeout":  # the prompt was read and some output produced
            event["input_tokens"] = call.input_tokens
            event["output_tokens"] = int(call.output_tokens * rng.uniform(0.2, 0.9))
            event["cost_usd"] = (
                self.prices.cost_usd(
                    spec.provider, spec.model, call.input_tokens, event["output_tokens"]
                )
                if rng.random() < 0.6
                else None
            )
        elif error_type == "server_error" and rng.random() < 0.5:
            event["input_tokens"] = call.input_tokens
            event["cost_usd"] = None
        event["latency_ms"] = round(latency_ms, 1)
        event["message"] = MESSAGES[error_type]
        if tags:
            event["tags"] = tags
        self._book_event(call, event)
        return event, wait_s

    def _book_event(self, call: Call, event: dict[str, Any]) -> None:
        """Spend as ingest counts it: the event's cost_usd, else its tokens priced, USD."""
        cost = event.get("cost_usd")
        if cost is None:
            cost = self.prices.cost_usd(
                event["provider"],
                event["model"],
                event.get("input_tokens", 0),
                event.get("output_tokens", 0),
                event.get("cached_input_tokens", 0),
                event.get("cache_write_tokens", 0),
            )
        self.spend_usd[self.world.endpoints[call.endpoint].customer] += cost

    def _ts(self, ms: int, fmt: int) -> str | int | float:
        """Event time in one of the contract's forms: RFC 3339 ('Z' or '+00:00', ms), epoch s
        or epoch ms."""
        if fmt == FMT_EPOCH_S:
            return ms / 1000
        if fmt == FMT_EPOCH_MS:
            return ms
        minute, rest = divmod(ms, MINUTE_MS)
        prefix = self._ts_prefix.get(minute)
        if prefix is None:
            prefix = datetime.fromtimestamp(minute * 60, UTC).strftime("%Y-%m-%dT%H:%M:")
            self._ts_prefix[minute] = prefix
        return f"{prefix}{rest // 1000:02d}.{rest % 1000:03d}{'Z' if fmt == FMT_Z else '+00:00'}"


def _error_latency_ms(rng: np.random.Generator, error_type: str) -> float:
    """How long a failing attempt takes, ms: rate limits answer at once, timeouts at 30/60 s."""
    if error_type == "rate_limited":
        return rng.uniform(30, 250)
    if error_type == "timeout":
        return float(rng.choice([30_000, 60_000])) + rng.uniform(0, 500)
    if error_type == "server_error":
        return rng.lognormal(math.log(1200), 0.8)
    return rng.uniform(100, 1500)


def iter_events(cfg: SimConfig) -> Iterator[tuple[str, dict[str, Any]]]:
    """("usage" | "errors", event) in event-time order, producer duplicates included."""
    for kind, event, _ in Traffic(cfg).emissions():
        yield kind, event


# Files ----------------------------------------------------------------------------------


def price_customers(traffic: Traffic) -> list[dict[str, Any]]:
    """Customer records priced from what each customer spent, projected to a month.

    Projected monthly API cost = spend per simulated day x 30 (USD); cost-to-serve adds
    the 0.65 overhead. Paying customers get the smallest list price of at least 4-6x
    their cost-to-serve; free-tier customers stay free under 10 USD of API cost a month;
    the plan_overgrowth customer pays half its cost-to-serve.
    """
    rng = np.random.default_rng([traffic.cfg.seed, 3])
    days = traffic.minutes / 1440
    overgrowth = next((inc for inc in traffic.incidents if inc.kind == "plan_overgrowth"), None)
    records = []
    for c, customer in enumerate(traffic.world.customers):
        api_usd = float(traffic.spend_usd[c]) / days * 30
        serve_usd = api_usd * (1 + OVERHEAD_RATIO)
        plan, price = _list_price(rng.uniform(*PRICE_MULTIPLE) * serve_usd)
        billing_day, margin_target = customer.billing_day, customer.margin_target
        if overgrowth is not None and c == overgrowth.customer:
            price = max(round(OVERGROWTH_PRICE_SHARE * serve_usd, 2), 0.01)
            plan = "pro" if price >= LIST_PRICES["pro"][0] else "starter"
            # Its billing month starts with the run, so a month-end projection has a whole
            # month ahead of it (a period ending mid-run would hide the overgrowth).
            billing_day, margin_target = min(traffic.cfg.start.astimezone(UTC).day, 28), None
            overgrowth.detail.update(
                monthly_price_usd=price, projected_monthly_cost_to_serve_usd=round(serve_usd, 2)
            )
        elif customer.free_tier and api_usd < FREE_MAX_API_USD:
            plan, price, margin_target = "free", 0.0, None
        record: dict[str, Any] = {
            "customer_id": customer.customer_id,
            "name": customer.name,
            "plan": plan,
            "monthly_price_usd": price,
            "billing_day": billing_day,
        }
        if margin_target is not None:
            record["margin_target"] = margin_target
        records.append(record)
    return records


def _list_price(required_usd: float) -> tuple[str, float]:
    """(plan, monthly price USD): the smallest list price of at least ``required_usd``."""
    for plan, prices in LIST_PRICES.items():
        for price in prices:
            if price >= required_usd:
                return plan, float(price)
    return "enterprise", float(max(5000, math.ceil(required_usd / 1000) * 1000))


class GzipLines:
    """JSON lines into a gzip file whose header has no time stamp: same events, same bytes."""

    def __init__(self, path: Path, batch: int = 8192) -> None:
        self.path = path
        self.lines = 0
        self._raw: IO[bytes] = path.open("wb")
        self._gz = gzip.GzipFile(
            filename=path.name, mode="wb", fileobj=self._raw, compresslevel=5, mtime=0
        )
        self._batch = batch
        self._pending: list[bytes] = []

    def write(self, event: dict[str, Any]) -> None:
        self._pending.append(orjson.dumps(event, option=orjson.OPT_APPEND_NEWLINE))
        if len(self._pending) >= self._batch:
            self._flush()

    def _flush(self) -> None:
        self._gz.write(b"".join(self._pending))
        self.lines += len(self._pending)
        self._pending.clear()

    def __enter__(self) -> GzipLines:
        return self

    def __exit__(self, *exc: object) -> None:
        self._flush()
        self._gz.close()
        self._raw.close()


def simulate(outdir: Path, cfg: SimConfig) -> SimSummary:
    """Write usage.jsonl.gz, errors.jsonl.gz, customers.jsonl and (with incidents)
    truth.json into ``outdir`` (created if missing); the same config writes the same bytes."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    traffic = Traffic(cfg)
    files = {
        USAGE: outdir / "usage.jsonl.gz",
        ERRORS: outdir / "errors.jsonl.gz",
        "customers": outdir / "customers.jsonl",
    }
    with GzipLines(files[USAGE]) as usage, GzipLines(files[ERRORS]) as errors:
        writers = {USAGE: usage, ERRORS: errors}
        for kind, event, _ in traffic.emissions():
            writers[kind].write(event)
    customers = price_customers(traffic)
    files["customers"].write_bytes(
        b"".join(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE) for record in customers)
    )
    if cfg.incidents:
        files["truth"] = outdir / "truth.json"
        truth = {
            "seed": cfg.seed,
            "start": rfc3339(traffic.start_ms),
            "end": rfc3339(traffic.end_ms),
            "bucket_s": 60,
            "incidents": [inc.truth() for inc in traffic.incidents],
        }
        files["truth"].write_bytes(
            orjson.dumps(truth, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
        )
    return SimSummary(
        outdir=outdir,
        files=files,
        usage_events=usage.lines,
        error_events=errors.lines,
        duplicates=traffic.duplicates,
        customers=len(customers),
        incidents=tuple(
            f"{inc.id} {inc.kind} {inc.labels} {rfc3339(inc.start_ms)} .. {rfc3339(inc.end_ms)}"
            for inc in traffic.incidents
        ),
        start=rfc3339(traffic.start_ms),
        end=rfc3339(traffic.end_ms),
    )
