"""margin_breach: a customer whose cost-to-serve eats the margin their plan pays for.

Per customer per billing month: cost-to-serve = API cost x (1 + overhead ratio for
infrastructure, monitoring and storage). The month-end cost is projected as the cost so
far plus the recent burn rate (an EW rate with time constant ``burn_tau_s``) times the time
left. Warning when the projected gross margin falls below the customer's target;
critical when the projected (or actual) cost-to-serve exceeds what the customer pays. A
free plan (price 0) is judged against its cost cap instead. An open alert resolves when
the margin recovers (with ``resolve_gap`` hysteresis) or when the billing period ends.

>>> terms = MarginTerms(price_usd=100.0, overhead_ratio=0.65, margin_target=0.5)
>>> p = MarginBreachParams(min_history_s=3600)
>>> s = MarginBreachState()
>>> out = []
>>> for minute in range(180):                       # $0.01/min: ~$420 more by month-end
...     out += update(s, 1793577600.0 + minute * 60, 60.0, 0.01, terms, p)
>>> [(d.status, d.severity) for d in out]
[('firing', 'critical')]
>>> round(out[0].values["projected_margin"], 2)
-5.89
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Annotated, Any

from pydantic import ConfigDict, Field

from detectors import episode as episodes
from detectors.decision import Decision
from detectors.episode import CRITICAL, WARNING, Episode

NAME = "margin_breach"
STATE_VERSION = 4


@dataclass(frozen=True, slots=True)
class MarginTerms:
    """What one customer pays and what we need to keep: from the customer record and plan."""

    price_usd: float  # per billing month
    overhead_ratio: float = 0.65
    margin_target: float = 0.5
    cost_cap_usd: float | None = None  # for price 0: cost-to-serve allowed per month
    billing_day: int = 1


@dataclass(frozen=True, slots=True)
class MarginBreachParams:
    """Settings of the margin_breach detector (config: detectors.margin_breach)."""

    __pydantic_config__ = ConfigDict(extra="forbid")

    enabled: Annotated[bool, Field(description="Run this detector.")] = True
    burn_tau_s: Annotated[
        float, Field(gt=0, description="Time constant of the burn rate used to project, seconds.")
    ] = 86_400.0
    min_history_s: Annotated[
        float, Field(ge=0, description="History needed before projecting month-end, seconds.")
    ] = 6 * 3600.0
    consecutive: Annotated[
        int, Field(ge=1, description="Breaching buckets in a row before firing.")
    ] = 5
    calm_buckets: Annotated[
        int, Field(ge=1, description="Recovered buckets in a row before resolving.")
    ] = 30
    resolve_gap: Annotated[
        float, Field(ge=0, le=1, description="Resolve only once margin is this far above target.")
    ] = 0.05


def billing_period(t: float, billing_day: int) -> tuple[float, float]:
    """(start, end) epoch seconds of the billing month containing ``t`` (UTC midnights).

    Judged for every customer every bucket, so the answer is cached per UTC day.

    >>> s, e = billing_period(datetime(2026, 11, 25, tzinfo=UTC).timestamp(), 28)
    >>> datetime.fromtimestamp(s, UTC).date(), datetime.fromtimestamp(e, UTC).date()
    (datetime.date(2026, 10, 28), datetime.date(2026, 11, 28))
    """
    return _billing_period(int(t // 86_400), billing_day)


@lru_cache(maxsize=4096)
def _billing_period(day_index: int, billing_day: int) -> tuple[float, float]:
    day = datetime.fromtimestamp(day_index * 86_400, UTC)
    year, month = day.year, day.month
    if day.day < billing_day:
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    start = datetime(year, month, billing_day, tzinfo=UTC)
    end_year, end_month = (year, month + 1) if month < 12 else (year + 1, 1)
    end = datetime(end_year, end_month, billing_day, tzinfo=UTC)
    return start.timestamp(), end.timestamp()


@dataclass(slots=True)
class MarginBreachState:
    """Per-customer state: spend in the period, an EW burn rate, the episode."""

    cost_usd: float = 0.0  # API cost so far in the period
    rate_raw: float = 0.0  # EW of USD/s, before bias correction
    first_t: float | None = None
    last_t: float | None = None
    episode: Episode | None = None  # only while an alert is open or building

    def burn_rate(self, tau_s: float, width: float) -> float:
        """Recent spend rate in USD per second (the EW rate, corrected for its zero start)."""
        if self.first_t is None or self.last_t is None:
            return 0.0
        # What is left of the zero the EW started from, after the buckets seen since.
        decay = math.exp(-(self.last_t - self.first_t + width) / tau_s)
        return self.rate_raw / (1.0 - decay)

    def to_dict(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__slots__ if name != "episode"}
        return {"v": STATE_VERSION, **data, "episode": episodes.to_dict(self.episode)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MarginBreachState:
        if data.get("v") != STATE_VERSION:
            raise ValueError(f"margin_breach state version {data.get('v')!r} != {STATE_VERSION}")
        fields = {k: v for k, v in data.items() if k not in ("v", "episode")}
        return cls(**fields, episode=episodes.from_dict(data["episode"]))


def update(
    state: MarginBreachState,
    t: float,
    width: float,
    cost_usd: float,
    terms: MarginTerms,
    params: MarginBreachParams,
) -> list[Decision]:
    """Add the API cost (USD) of the bucket starting at ``t`` and judge the month.

    Buckets skipped since the last call had no cost: an open episode is judged on each
    of the last few of them (so it resolves on time), older ones only decay the burn rate.
    A bucket at or before the last one is ignored (the caller closes buckets in order).
    """
    if state.last_t is None:
        return _bucket(state, t, width, cost_usd, terms, params)
    if t <= state.last_t:
        return []
    skipped = int(round((t - state.last_t) / width)) - 1
    judged = min(skipped, params.consecutive + params.calm_buckets) if state.episode else 0
    if skipped > judged:
        state.rate_raw *= math.exp(-width / params.burn_tau_s) ** (skipped - judged)
    decisions: list[Decision] = []
    for i in range(judged, 0, -1):
        decisions += _bucket(state, t - i * width, width, 0.0, terms, params)
    return decisions + _bucket(state, t, width, cost_usd, terms, params)


def _bucket(
    state: MarginBreachState,
    t: float,
    width: float,
    cost_usd: float,
    terms: MarginTerms,
    params: MarginBreachParams,
) -> list[Decision]:
    decisions: list[Decision] = []
    period = billing_period(t, terms.billing_day)
    if state.last_t is not None and state.last_t < period[0]:
        # A new billing month: what was open ends with the old one.
        ended = billing_period(state.last_t, terms.billing_day)[1]
        if state.episode is not None:
            decisions += [Decision.of(NAME, tr, {}) for tr in state.episode.close(ended)]
            state.episode = None
        state.cost_usd = 0.0
    keep = math.exp(-width / params.burn_tau_s)
    state.rate_raw = keep * state.rate_raw + (1.0 - keep) * cost_usd / width
    state.cost_usd += cost_usd
    if state.first_t is None:
        state.first_t = t
    state.last_t = t
    return decisions + _judge(state, t, width, period, terms, params)


def _judge(
    state: MarginBreachState,
    t: float,
    width: float,
    period: tuple[float, float],
    terms: MarginTerms,
    params: MarginBreachParams,
) -> list[Decision]:
    period_start, period_end = period
    overhead = 1.0 + terms.overhead_ratio
    now = t + width
    actual = state.cost_usd * overhead
    projecting = state.first_t is not None and now - state.first_t >= params.min_history_s
    projected_api = state.cost_usd + (
        state.burn_rate(params.burn_tau_s, width) * max(0.0, period_end - now)
        if projecting
        else 0.0
    )
    projected = projected_api * overhead
    if terms.price_usd > 0:
        margin = 1.0 - projected / terms.price_usd
        limit = terms.price_usd * (1.0 - terms.margin_target)
        breach = projecting and margin < terms.margin_target or actual > terms.price_usd
        elevated = margin < terms.margin_target + params.resolve_gap
        critical = projected > terms.price_usd or actual > terms.price_usd
    elif terms.cost_cap_usd is not None:
        margin = -math.inf if projected > 0 else 0.0
        limit = terms.cost_cap_usd
        breach = projecting and projected > limit or actual > limit
        elevated = projected > limit * (1.0 - params.resolve_gap)
        critical = actual > limit
    else:
        return []
    state.episode, transitions = episodes.advance(
        state.episode,
        t,
        width,
        breach,
        elevated,
        CRITICAL if critical else WARNING,
        consecutive=params.consecutive,
        calm_needed=params.calm_buckets,
    )
    if not transitions:
        return []
    burn_per_hour = state.burn_rate(params.burn_tau_s, width) * 3600.0 * overhead
    values = {
        "observed": projected,
        "baseline": terms.price_usd,
        "threshold": limit,
        "cost_to_date_usd": actual,
        "projected_cost_to_serve_usd": projected,
        "projected_margin": margin if math.isfinite(margin) else -1.0,
        "margin_target": terms.margin_target,
        "monthly_price_usd": terms.price_usd,
        "burn_rate_usd_per_hour": burn_per_hour,
        # Burn above the rate the month can afford, USD of cost-to-serve per hour.
        "money_at_risk_usd_per_hour": max(
            0.0, burn_per_hour - limit / max(1.0, (period_end - period_start) / 3600.0)
        ),
        "period_start": period_start,
        "period_end": period_end,
        "bucket_s": width,
    }
    return [Decision.of(NAME, tr, values) for tr in transitions]
