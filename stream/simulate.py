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

>>> round(diurnal(15.0) / diurnal(3.0), 2), weekly(START.timestamp() + 5.5 * 86_400)
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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import itemgetter
from pathlib import Path
from typing import IO, Any, NamedTuple

import numpy as np
import orjson

from stream.pricing import PriceTable

USAGE = "usage"
ERRORS = "errors"
DEFAULT_PRICES = Path(__file__).resolve().parent.parent / "config" / "prices.yaml"
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
    EndpointKind("chat", 0.30, {"gpt-4o-mini": .35, "claude-haiku-4-5": .25,
                 "gemini-2.5-flash": .15, "gpt-4.1-mini": .10, "claude-sonnet-4-5": .10,
                 "gpt-4o": .05}, (600, 2000), (150, 500), (0.7, 0.6)),
    EndpointKind("/v1/summarize", 0.20, {"gemini-2.5-flash": .30, "gpt-4o-mini": .30,
                 "claude-haiku-4-5": .15, BEDROCK_HAIKU: .15, "gpt-4.1-mini": .10},
                 (1500, 3000), (150, 400), (0.6, 0.4)),
    EndpointKind("search", 0.20, {"gpt-4o-mini": .40, "gpt-4.1-mini": .25,
                 "gemini-2.5-flash": .20, "claude-haiku-4-5": .15},
                 (800, 2500), (100, 300), (0.5, 0.5)),
    EndpointKind("agent", 0.15, {"claude-sonnet-4-5": .30, "gpt-4.1": .20, "o4-mini": .15,
                 "gpt-4o": .10, "gemini-2.5-pro": .10, "claude-haiku-4-5": .10,
                 "claude-opus-4-1": .05}, (1500, 3000), (300, 800), (0.9, 0.8)),
    EndpointKind("embed-rerank", 0.10, {"gpt-4o-mini": .40, "gemini-2.5-flash": .30,
                 BEDROCK_HAIKU: .30}, (300, 1200), (100, 200), (0.5, 0.3)),
    EndpointKind("/v1/extract", 0.05, {"gpt-4.1-mini": .30, "gpt-4o-mini": .30,
                 "claude-haiku-4-5": .20, BEDROCK_HAIKU: .20}, (800, 2500), (100, 400),
                 (0.6, 0.5)),
)
# Free-plan traffic is small calls on the cheapest model, so it stays under its cost cap.
FREE_KINDS = tuple(
    EndpointKind(name, 1.0, {"gpt-4o-mini": 1.0}, (300, 400), (100, 120), (0.45, 0.4))
    for name in ("chat", "search")
)
REGIONS = ("us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-1")
NAME_HEADS = ("Acme", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Stark", "Wonka",
              "Tyrell", "Cyberdyne", "Aperture", "Pied Piper", "Dunder", "Oscorp", "Nakatomi",
              "Monarch", "Soylent", "Massive", "Gringotts", "Wayne")
NAME_TAILS = ("Labs", "AI", "Health", "Legal", "Robotics", "Analytics", "Travel", "Finance",
              "Studio", "Logistics")
LIST_PRICES = {"starter": (29, 49, 99, 149, 199, 299),
               "pro": (499, 799, 999, 1499, 1999, 2999, 3999, 4999)}


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
        tokens = np.array([
            ep.input_median * math.exp(ep.input_sigma**2 / 2),
            ep.output_median * math.exp(ep.output_sigma**2 / 2),
            ep.cache_prefix * CACHE_READ_SHARE,
            ep.cache_prefix * CACHE_WRITE_SHARE,
        ])
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


BACKGROUND = FailureMode(FAILURE_SHARE, ("rate_limited", "timeout", "server_error", "overloaded"),
                         (0.4, 0.15, 0.3, 0.15), RETRY_SHARE, 3)


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

    def truth(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "alertname": self.alertname,
                "labels": self.labels, "start": rfc3339(self.start_ms),
                "end": rfc3339(self.end_ms), "detail": self.detail}


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
        lines = [f"simulated {self.start} .. {self.end} into {self.outdir}",
                 f"  usage events {self.usage_events} (producer duplicates {self.duplicates}),"
                 f" error events {self.error_events}, customers {self.customers}"]
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
    customers: list[SimCustomer] = []
    endpoints: list[Endpoint] = []
    for c in range(cfg.customers):
        customers.append(_customer(rng, c, float(rates[c]), bool(free[c])))
        endpoints += _endpoints(rng, c, customers[c])
    unit_cost = np.array([[prices.cost_usd(s.provider, s.model, *tokens) for tokens in
                           ((1, 0, 0, 0), (0, 1, 0, 0), (0, 0, 1, 0), (0, 0, 0, 1))]
                          for s in MODELS])
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


def _customer(rng: np.random.Generator, c: int, rate: float, free: bool) -> SimCustomer:
    name = f"{NAME_HEADS[rng.integers(len(NAME_HEADS))]} {NAME_TAILS[rng.integers(len(NAME_TAILS))]}"
    region = REGIONS[rng.integers(len(REGIONS))] if rng.random() < 0.8 else None
    billing_day = 1 if free or rng.random() < 0.7 else int(rng.integers(2, 29))
    target = float(rng.choice([0.5, 0.55])) if not free and rng.random() < 0.25 else None
    return SimCustomer(
        customer_id=f"cus_{c + 1:04d}", name=name, rate_per_min=rate, free_tier=free,
        peak_shift_h=float(np.clip(rng.normal(0.0, 1.5), -3, 3)), billing_day=billing_day,
        margin_target=target, tags={"region": region} if region else None,
    )


def _endpoints(rng: np.random.Generator, c: int, customer: SimCustomer) -> list[Endpoint]:
    if customer.free_tier:
        kinds: list[EndpointKind] = list(FREE_KINDS)
    else:
        weights = np.array([k.weight for k in KINDS])
        picked = rng.choice(len(KINDS), int(rng.integers(2, 5)), replace=False,
                            p=weights / weights.sum())
        kinds = [KINDS[i] for i in picked]
    shares = rng.dirichlet(np.full(len(kinds), 2.0))
    out = []
    for kind, share in zip(kinds, shares, strict=True):
        names = list(kind.models)
        model = MODEL_INDEX[names[int(rng.choice(len(names), p=list(kind.models.values())))]]
        caches = MODELS[model].provider == "anthropic"
        out.append(Endpoint(
            customer=c, name=kind.name, model=model, rate_per_min=customer.rate_per_min * share,
            input_median=math.exp(rng.uniform(*np.log(kind.input_median))),
            output_median=math.exp(rng.uniform(*np.log(kind.output_median))),
            input_sigma=kind.sigma[0], output_sigma=kind.sigma[1],
            cache_prefix=int(math.exp(rng.uniform(math.log(1500), math.log(6000)))) if caches else 0,
        ))
    return out

