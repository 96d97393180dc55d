"""The simulated world: models, endpoint kinds, customers and their endpoints, and the
diurnal and weekly cycles of their traffic, all drawn from :class:`SimConfig`'s seed."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from stream.core.pricing import PriceTable

DEFAULT_PRICES = Path(__file__).resolve().parents[3] / "config" / "prices.yaml"
START = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday
MINUTE_MS = 60_000
DAY_MS = 86_400_000

PEAK_HOUR_UTC = 15.0
DIURNAL_AMPLITUDE = (2.5 - 1) / (2.5 + 1)  # (1 + a) / (1 - a) = 2.5: peak over trough
WEEKEND_FACTOR = 0.7
WEEKEND_RAMP_H = 4.0  # the weekly step is smoothed over this many hours around midnight

MIN_CUSTOMER_RATE = 1.0  # first attempts per minute, per customer on average
SPARSE_RATE = (0.1, 0.5)  # first attempts per minute of a sparse customer, all endpoints
FREE_SHARE = 0.3  # of customers, the smallest, on the free plan with cheap traffic
CACHE_READ_SHARE, CACHE_WRITE_SHARE = 0.85, 0.12  # of calls on Anthropic endpoints


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
    # The detection benchmark's traffic (bench/detection). Off by default: a config that
    # leaves them alone writes the same bytes as before they existed.
    incident_kinds: tuple[str, ...] = ()  # catalog kinds, each at every size (not with incidents)
    incident_sizes: Mapping[str, tuple[float, ...]] | None = None  # per kind; None: catalog's
    bursts: float = 0.0  # labelled benign bursts (a batch job, a launch) per simulated day
    sparse_share: float = 0.0  # of paying customers, made sparse: a request every 2-10 min


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
    if not 0 <= cfg.sparse_share <= 1 or cfg.bursts < 0:
        raise ValueError(
            f"SimConfig needs 0 <= sparse_share <= 1 and bursts >= 0, got sparse_share="
            f"{cfg.sparse_share} and bursts={cfg.bursts}"
        )
    rng = np.random.default_rng(cfg.seed)
    rates, free = _customer_rates(rng, cfg.customers, cfg.rate_per_min)
    if cfg.sparse_share > 0:
        rates = _sparse(cfg, rates, free)
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


def _sparse(cfg: SimConfig, rates: Any, free: Any) -> Any:
    """``rates`` with ``cfg.sparse_share`` of the paying customers slowed to a request every
    2-10 minutes; drawn from their own generator, so the rest of the world is unchanged."""
    rng = np.random.default_rng([cfg.seed, 5])
    paying = np.flatnonzero(~free)
    chosen = rng.permutation(paying)[: round(cfg.sparse_share * len(paying))]
    out = rates.copy()
    out[chosen] = rng.uniform(*SPARSE_RATE, len(chosen))
    return out


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
