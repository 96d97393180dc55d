"""margin_breach: a customer whose cost-to-serve eats the margin their plan pays for.

Per customer per billing month: cost-to-serve = API cost x (1 + overhead ratio for
infrastructure, monitoring and storage). Month-end is projected as the month-to-date
actual plus every hour left, each at what the customer's seasonal profile expects::

    expected API cost of an hour = level x profile[UTC hour of day] x weekend factor

- ``profile``: 24 slots, what a weekday hour at that UTC hour costs (USD), each learned
  once a day (time constant ``profile_tau_s``); a slot not seen yet counts as the mean
  of those seen.
- ``level``: how recent weekday hours compare to the profile (a ratio of two EW sums,
  time constant ``burn_tau_s``), so a lasting change of spend is followed within a day.
- ``weekend factor``: UTC Saturday and Sunday hours against level x profile (1 until a
  weekend has been seen).

Learning is per closed clock hour and robust to bursts: an hour's cost is winsorised at
``clip_sigmas`` spreads above what was expected before it is learned, so a burst counts
at its full cost in the month-to-date actual but is not projected over the rest of the
month. Only the high side is clipped (a quiet hour is believed at once: it cannot cause
a false alert). Empty hours are learned as zero when the customer next spends.

The projection has a band from a normal approximation, with a relative standard
deviation (against the cost still to come) of::

    sqrt(c^2 (1/n + profile error) + (unseen share x unseen_hour_cv)^2
         + (weekend share x unseen_weekend_cv x (1 - weekend hours seen / 24))^2)

- ``c``: the spread of hours around the profile, in average hours (an EW root mean
  square of the winsorised residuals, at least ``min_cv``; ``unseen_hour_cv`` until
  MIN_RESIDUALS hours have been compared with the profile), over ``n`` hours of history;
- profile error: each slot's own error (c / sqrt of its days), weighted by its share;
- unseen share: of the cost to come, what falls in hours of the day not seen yet, as one
  block (they may all differ the same way);
- weekend share: what falls on weekends, while the weekend factor is a guess.

After a few hours most of the day is unseen and the band is wide; after days, narrow.

Warning when the low (optimistic) end of the band leaves less than the margin target,
i.e. month-end breaches with probability at least ``min_confidence``, or when the
month-to-date actual already has; critical when the low end (or the actual) is above
what the customer pays. A free plan (price 0) warns against its cost cap and is critical
once the actual exceeds it. Nothing is projected before ``min_history_s``. A warning
escalates once: after ``consecutive`` critical buckets it resolves and a critical alert
fires (severity is a label: two alerts). An open alert resolves when the central
projection recovers to the target plus ``resolve_gap``, or when the billing period
ends. Each alert carries the band (``projection_low_usd``, ``projection_high_usd``) and
``confidence``: the probability that month-end is over what the alert is about.

A steady $0.01 a minute from Monday 2026-11-02 is $689 to serve by December: no
warning on the first day, whose hours are all new; one on the second, once its hours
have been compared with the first day's:

>>> terms = MarginTerms(price_usd=900.0, overhead_ratio=0.65, margin_target=0.5)
>>> s, p, out, start = MarginBreachState(), MarginBreachParams(), [], 1793577600.0
>>> for minute in range(3 * 1440):
...     out += update(s, start + minute * 60, 60.0, 0.01, terms, p)
>>> [(d.status, d.severity, (d.starts_at - start) / 3600) for d in out]
[('firing', 'warning', 30.0)]
>>> v = out[0].values
>>> [round(v[k]) for k in ("projection_low_usd", "projected_cost_to_serve_usd", "threshold")]
[609, 689, 450]
>>> round(v["confidence"], 3)
1.0
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from statistics import NormalDist
from typing import Annotated, Any

from pydantic import ConfigDict, Field

from detectors import episode as episodes
from detectors.decision import Decision
from detectors.encoding import pack, unpack
from detectors.episode import CRITICAL, WARNING, Episode, Transition

NAME = "margin_breach"
STATE_VERSION = 6
# Version 5 wrote profile and seen as JSON lists of numbers (6: their bytes, base64); its
# records are still read, so a restarted worker restores what its predecessor wrote.
_LISTS_VERSION = 5

HOUR = 3600.0
DAY = 86_400.0
SLOTS = 24
MAX_EMPTY_HOURS = 7 * 24  # a longer silence teaches only its last week of empty hours
MIN_RESIDUALS = 6  # hours compared with the profile before their spread replaces the prior
COUNT_CAP = 65_535  # counters stop here: the weights they set are long at their floor
# Single precision is plenty for a profile and halves its memory (as SeasonalBaseline).
PROFILE_TYPE, COUNT_TYPE = "f", "H"


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
    """Settings of the margin_breach detector (config: detectors.margin_breach).

    Defaults suit 1-minute buckets and monthly billing. ``burn_tau_s`` 1 day: a lasting
    change of spend is followed within about a day (as the old burn rate). ``profile_tau_s``
    7 days: each hour-of-day slot learns once a day, so it averages about a week, and the
    weekend factor its last few weekends. ``clip_sigmas`` 3: an hour is learned as at
    most 3 spreads above what was expected (a burst hardly moves the profile, a lasting
    change widens the spread until it passes within ~half a day). ``min_confidence`` 0.95:
    a projection fires when month-end breaches with 95 % probability (the band's low end
    is its 5th percentile; ``confidence`` on the alert says how sure it is).
    ``unseen_hour_cv`` 1.0: an hour of the day not seen yet may cost anything from
    nothing to double the mean of those seen, so the first hours of a customer cannot
    fire from projection. ``unseen_weekend_cv`` 0.25: weekends may differ from weekdays
    by about a quarter until one has been seen. ``min_cv`` 0.05: the spread counts as at
    least 5 % of an average hour, so perfectly regular traffic still has a band.
    ``min_history_s`` 6 h stays as a floor under all of it.
    """

    __pydantic_config__ = ConfigDict(extra="forbid")

    enabled: Annotated[bool, Field(description="Run this detector.")] = True
    burn_tau_s: Annotated[
        float,
        Field(gt=0, description="Time constant of the spend level against the profile, seconds."),
    ] = 86_400.0
    profile_tau_s: Annotated[
        float,
        Field(
            gt=0,
            description="Time constant of the hour-of-day profile and weekend factor, seconds.",
        ),
    ] = 7 * 86_400.0
    min_history_s: Annotated[
        float, Field(ge=0, description="History needed before projecting month-end, seconds.")
    ] = 6 * 3600.0
    min_confidence: Annotated[
        float,
        Field(
            ge=0.5,
            lt=1,
            description="Probability of a month-end breach at which a projection fires.",
        ),
    ] = 0.95
    clip_sigmas: Annotated[
        float,
        Field(gt=0, description="Hours are learned clipped this many spreads above expected."),
    ] = 3.0
    unseen_hour_cv: Annotated[
        float,
        Field(ge=0, description="Relative uncertainty of the hours of the day not seen yet."),
    ] = 1.0
    unseen_weekend_cv: Annotated[
        float,
        Field(ge=0, description="Relative uncertainty of weekends until a weekend is seen."),
    ] = 0.25
    min_cv: Annotated[
        float,
        Field(ge=0, description="Least hour-to-hour spread, as a share of an average hour."),
    ] = 0.05
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


def is_weekend(day_index: int) -> bool:
    """Whether UTC day ``day_index`` (days since the epoch, a Thursday) is a Saturday or Sunday."""
    return (day_index + 3) % 7 >= 5


@lru_cache(maxsize=4096)
def _weekend_days(first_day: int, end_day: int) -> int:
    return sum(1 for day in range(first_day, end_day) if is_weekend(day))


@lru_cache(maxsize=64)
def _z(confidence: float) -> float:
    return NormalDist().inv_cdf(confidence)


@lru_cache(maxsize=64)
def _weights(burn_tau_s: float, profile_tau_s: float) -> tuple[float, float, float]:
    """EW weights of the level (per hour), a profile slot (per day) and the weekend factor
    (per weekend hour: 2 of 7 days, so it remembers as long as the profile)."""
    return (
        1.0 - math.exp(-HOUR / burn_tau_s),
        1.0 - math.exp(-DAY / profile_tau_s),
        1.0 - math.exp(-3.5 * HOUR / profile_tau_s),
    )


def _memory(weight: float) -> float:
    """Observations an EW mean with this weight is worth (the variance of its mean)."""
    return (2.0 - weight) / weight


@dataclass(slots=True)
class MarginBreachState:
    """Per-customer state: the period's spend, the hour being summed, the seasonal
    profile with its level, weekend factor and spread, and the episode."""

    cost_usd: float = 0.0  # API cost so far in the billing period, USD
    first_t: float | None = None
    last_t: float | None = None
    hour: int = -1  # the clock hour (hours since the epoch) being summed
    hour_usd: float = 0.0  # its API cost so far
    profile: array = field(default_factory=lambda: array(PROFILE_TYPE, bytes(4 * SLOTS)))
    seen: array = field(default_factory=lambda: array(COUNT_TYPE, bytes(2 * SLOTS)))
    level_usd: float = 0.0  # EW of the winsorised weekday hours ...
    level_base: float = 0.0  # ... and of what the profile expected of them
    weekend_usd: float = 0.0  # the same for weekend hours (against level x profile)
    weekend_base: float = 0.0
    spread_sq: float = 0.0  # EW mean square of residuals, in average hours
    hours: int = 0  # hours learned
    level_hours: int = 0
    weekend_hours: int = 0
    spread_hours: int = 0
    critical_streak: int = 0  # critical buckets in a row while a warning is open
    episode: Episode | None = None  # only while an alert is open or building
    # The projection's parts for this hour (derived, rebuilt after loading).
    outlook: tuple[Any, ...] | None = field(default=None, init=False, compare=False, repr=False)

    def level(self) -> float:
        """Recent weekday spend over what the profile expected of it (1 before any)."""
        return self.level_usd / self.level_base if self.level_base > 0 else 1.0

    def weekend_factor(self) -> float:
        """Weekend hours over what level x profile expected of them (1 before any)."""
        return self.weekend_usd / self.weekend_base if self.weekend_base > 0 else 1.0

    def spread(self, params: MarginBreachParams) -> float:
        """Hour-to-hour spread around the profile, in average hours (``unseen_hour_cv``
        until MIN_RESIDUALS hours have been compared with the profile)."""
        if self.spread_hours < MIN_RESIDUALS:
            return params.unseen_hour_cv
        return max(math.sqrt(self.spread_sq), params.min_cv)

    def profile_mean(self) -> float:
        """The mean of the slots seen so far, USD per hour (0 before any)."""
        seen = [p for p, n in zip(self.profile, self.seen, strict=True) if n]
        return sum(seen) / len(seen) if seen else 0.0

    def to_dict(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in _FIELDS}
        data["profile"] = pack(self.profile)
        data["seen"] = pack(self.seen)
        return {"v": STATE_VERSION, **data, "episode": episodes.to_dict(self.episode)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MarginBreachState:
        if data.get("v") not in (_LISTS_VERSION, STATE_VERSION):
            raise ValueError(f"margin_breach state version {data.get('v')!r} != {STATE_VERSION}")
        fields = {k: data[k] for k in _FIELDS}
        fields["profile"] = unpack(PROFILE_TYPE, fields["profile"], SLOTS)
        fields["seen"] = unpack(COUNT_TYPE, fields["seen"], SLOTS)
        return cls(**fields, episode=episodes.from_dict(data["episode"]))


_FIELDS = tuple(n for n in MarginBreachState.__slots__ if n not in ("episode", "outlook"))


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
    of the last few of them (so it resolves on time); the hours they fall in are learned
    as they close. A bucket at or before the last one is ignored (the caller closes
    buckets in order).
    """
    if state.last_t is None:
        return _bucket(state, t, width, cost_usd, terms, params)
    if t <= state.last_t:
        return []
    skipped = int(round((t - state.last_t) / width)) - 1
    judged = min(skipped, params.consecutive + params.calm_buckets) if state.episode else 0
    decisions: list[Decision] = []
    for i in range(judged, 0, -1):
        decisions += _bucket(state, t - i * width, width, 0.0, terms, params)
    return decisions + _bucket(state, t, width, cost_usd, terms, params)


def projection(
    state: MarginBreachState, now: float, period_end: float, params: MarginBreachParams
) -> tuple[float, float]:
    """(expected, standard deviation) of the API cost from ``now`` to ``period_end``, USD.

    ``now`` lies in the hour being summed (the end of the last bucket).
    """
    outlook = _current_outlook(state, period_end, params)
    rest = max(0.0, (state.hour + 1) * HOUR - now) / HOUR * outlook[3] + outlook[4]
    return rest, rest * outlook[5]


def _current_outlook(
    state: MarginBreachState, period_end: float, params: MarginBreachParams
) -> tuple[Any, ...]:
    """The outlook of this hour: learning happens only when an hour closes."""
    outlook = state.outlook
    if (
        outlook is None
        or outlook[0] != state.hour
        or outlook[1] != period_end
        or outlook[2] is not params
    ):
        outlook = state.outlook = _outlook(state, period_end, params)
    return outlook


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
        state.cost_usd, state.critical_streak = 0.0, 0
    if state.first_t is None:
        state.first_t = t
        state.hour = int(t // HOUR)
    hour = int(t // HOUR)
    if hour == state.hour and t + width <= (hour + 1) * HOUR:
        state.hour_usd += cost_usd
    else:
        _spread_over_hours(state, t, width, cost_usd, params)
    state.cost_usd += cost_usd
    state.last_t = t
    return decisions + _judge(state, t, width, period, terms, params)


def _spread_over_hours(
    state: MarginBreachState, t: float, width: float, usd: float, params: MarginBreachParams
) -> None:
    """Add a bucket's cost to the hours it covers (pro rata), closing each hour passed."""
    end, at = t + width, t
    while True:
        hour = int(at // HOUR)
        if hour != state.hour:
            _close_hours(state, hour, params)
        upto = min(end, (hour + 1) * HOUR)
        state.hour_usd += usd * (upto - at) / width
        if upto >= end:
            return
        at = upto


def _close_hours(state: MarginBreachState, hour: int, params: MarginBreachParams) -> None:
    """Learn the hour being summed (unless data began within it) and the empty hours
    before ``hour``, then start summing ``hour``."""
    done = state.hour
    if state.first_t is not None and state.first_t <= done * HOUR:
        _learn(state, done, state.hour_usd, params)
    for empty in range(max(done + 1, hour - MAX_EMPTY_HOURS), hour):
        _learn(state, empty, 0.0, params)
    state.hour, state.hour_usd = hour, 0.0


def _learn(state: MarginBreachState, hour: int, usd: float, params: MarginBreachParams) -> None:
    """Learn one closed hour's API cost (USD), winsorised against what was expected."""
    slot = hour % SLOTS
    weekend = is_weekend(hour // SLOTS)
    count = state.seen[slot]
    if weekend and not count:
        return  # a weekend hour means nothing until the weekday hour it compares with
    a_level, a_profile, a_weekend = _weights(params.burn_tau_s, params.profile_tau_s)
    mean = state.profile_mean()
    base = state.profile[slot] if count else mean
    level = state.level()
    week = state.weekend_factor() if weekend else 1.0
    expected, scale = level * base * week, level * mean * week
    # Known: its slot has been seen (and, at a weekend, a weekend too). An hour that is
    # not is clipped only at its prior uncertainty and says nothing about the spread.
    known_weekend = not weekend or state.weekend_hours >= SLOTS
    if scale > 0:
        spread = state.spread(params)
        if not count:
            spread = max(spread, params.unseen_hour_cv)
        if not known_weekend:
            spread = max(spread, params.unseen_weekend_cv)
        usd = min(usd, expected + params.clip_sigmas * spread * scale)
        if count and known_weekend:
            residual = (usd - expected) / scale
            state.spread_hours = min(state.spread_hours + 1, COUNT_CAP)
            weight = max(a_level, 1.0 / state.spread_hours)
            state.spread_sq += weight * (residual * residual - state.spread_sq)
    state.hours = min(state.hours + 1, COUNT_CAP)
    if weekend:
        state.weekend_hours = min(state.weekend_hours + 1, COUNT_CAP)
        weight = max(a_weekend, 1.0 / state.weekend_hours)
        state.weekend_usd += weight * (usd - state.weekend_usd)
        state.weekend_base += weight * (level * base - state.weekend_base)
        return
    if count:  # a slot's first hour defines it: it says nothing about the level
        state.level_hours = min(state.level_hours + 1, COUNT_CAP)
        weight = max(a_level, 1.0 / state.level_hours)
        state.level_usd += weight * (usd - state.level_usd)
        state.level_base += weight * (base - state.level_base)
    state.seen[slot] = count = min(count + 1, COUNT_CAP)
    state.profile[slot] += max(a_profile, 1.0 / count) * (usd - state.profile[slot])


def _outlook(
    state: MarginBreachState, period_end: float, params: MarginBreachParams
) -> tuple[Any, ...]:
    """What the hours left in the period are expected to cost, computed once per hour:
    (hour, period_end, params, USD per hour now, USD after this hour, relative sd, z)."""
    a_level, a_profile, _ = _weights(params.burn_tau_s, params.profile_tau_s)
    hour, end_hour = state.hour, int(period_end // HOUR)
    day, now_slot = divmod(hour, SLOTS)
    week = state.weekend_factor()
    weekend_today = is_weekend(day)
    today = week if weekend_today else 1.0
    last_slot = min(SLOTS, end_hour - day * SLOTS)  # slots later today: now_slot+1 .. last-1
    first_full, end_day = day + 1, end_hour // SLOTS
    weekend_days = _weekend_days(first_full, end_day) if end_day > first_full else 0
    # Whole days left, a weekend day counting as the weekend factor.
    full = max(0, end_day - first_full) - weekend_days + weekend_days * week
    # The last day's slots before an end that is not a midnight (none when it ends today).
    tail_slots = end_hour - end_day * SLOTS if end_day > day else 0
    tail_weekend = is_weekend(end_day)
    tail = week if tail_weekend else 1.0
    memory = _memory(a_profile)
    mean = state.profile_mean()
    # Per slot: hours left x its profile (USD); the unseen ones at the mean, as one block.
    units = unseen = shape = day_base = later_base = tail_base = 0.0
    for slot, (usd, count) in enumerate(zip(state.profile, state.seen, strict=True)):
        later = now_slot < slot < last_slot
        hours = full + today if later else full
        in_tail = slot < tail_slots
        if in_tail:
            hours += tail
        if count:
            units += hours * usd
            shape += hours * hours / (count if count < memory else memory)
        else:
            usd = mean
            unseen += hours * usd
        day_base += usd
        later_base += usd if later else 0.0
        tail_base += usd if in_tail else 0.0
    units += unseen
    weekend = weekend_days * week * day_base + (today * later_base if weekend_today else 0.0)
    weekend += tail * tail_base if tail_weekend else 0.0
    relative = 0.0
    if units > 0:
        spread = state.spread(params)
        fade = max(0.0, 1.0 - state.weekend_hours / SLOTS)
        history = min(max(state.hours, 1), _memory(a_level))
        relative = math.sqrt(
            spread * spread * (1.0 / history + shape * mean * mean / (units * units))
            + (unseen / units * params.unseen_hour_cv) ** 2
            + (weekend / units * params.unseen_weekend_cv * fade) ** 2
        )
    level = state.level()
    now = level * (state.profile[now_slot] if state.seen[now_slot] else mean) * today
    z = _z(params.min_confidence)
    return hour, period_end, params, now, level * units, relative, z


def _judge(
    state: MarginBreachState,
    t: float,
    width: float,
    period: tuple[float, float],
    terms: MarginTerms,
    params: MarginBreachParams,
) -> list[Decision]:
    # Runs for every customer in every bucket: the common case (no episode, no breach)
    # returns before anything only an alert needs.
    period_end = period[1]
    now = t + width
    spent = state.cost_usd
    rest = sd = z = 0.0
    if state.first_t is not None and now - state.first_t >= params.min_history_s:
        outlook = _current_outlook(state, period_end, params)
        rest = max(0.0, (state.hour + 1) * HOUR - now) / HOUR * outlook[3] + outlook[4]
        sd, z = rest * outlook[5], outlook[6]
    overhead = 1.0 + terms.overhead_ratio
    low = (spent + max(0.0, rest - z * sd)) * overhead  # never below the actual
    price = terms.price_usd
    if price > 0:
        limit = price * (1.0 - terms.margin_target)
    elif terms.cost_cap_usd is not None:
        limit = terms.cost_cap_usd
    else:
        return []
    breach = low > limit  # the actual breaching is included: low >= actual
    if not breach and state.episode is None:
        return []
    projected = (spent + rest) * overhead
    if price > 0:  # open while the central projection leaves less than target + gap
        elevated = 1.0 - projected / price < terms.margin_target + params.resolve_gap
        critical = low > price
    else:
        elevated = projected > limit * (1.0 - params.resolve_gap)
        critical = spent * overhead > limit
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
    if state.critical_streak or (critical and state.episode and state.episode.severity == WARNING):
        transitions += _escalate(state, t, width, critical, params.consecutive)
    if not transitions:
        return []
    return _explain(transitions, t, width, period, terms, spent, rest, sd, z)


def _explain(
    transitions: list[Transition],
    t: float,
    width: float,
    period: tuple[float, float],
    terms: MarginTerms,
    spent: float,
    rest: float,
    sd: float,
    z: float,
) -> list[Decision]:
    """Decisions with the figures behind them: API ``spent`` so far, the ``rest`` of the
    period expected with its standard deviation ``sd`` (USD), and the band's ``z``."""
    period_start, period_end = period
    now = t + width
    overhead = 1.0 + terms.overhead_ratio
    actual, projected, sd_usd = spent * overhead, (spent + rest) * overhead, sd * overhead
    price = terms.price_usd
    limit = price * (1.0 - terms.margin_target) if price > 0 else terms.cost_cap_usd or 0.0
    margin = 1.0 - projected / price if price > 0 else (-1.0 if projected > 0 else 0.0)
    hours_left = max(0.0, period_end - now) / HOUR
    burn_per_hour = rest * overhead / hours_left if hours_left > 0 else 0.0
    values = {
        "observed": projected,
        "baseline": price,
        "threshold": limit,
        "cost_to_date_usd": actual,
        "projected_cost_to_serve_usd": projected,
        "projection_low_usd": (spent + max(0.0, rest - z * sd)) * overhead,
        "projection_high_usd": projected + z * sd_usd,
        "projection_sd_usd": sd_usd,
        "projected_margin": margin,
        "margin_target": terms.margin_target,
        "monthly_price_usd": price,
        "burn_rate_usd_per_hour": burn_per_hour,
        # Burn above the rate the month can afford, USD of cost-to-serve per hour.
        "money_at_risk_usd_per_hour": max(
            0.0, burn_per_hour - limit / max(1.0, (period_end - period_start) / HOUR)
        ),
        "period_start": period_start,
        "period_end": period_end,
        "bucket_s": width,
    }
    decisions = []
    for tr in transitions:
        # How sure month-end is above what this alert is about: the margin target (or a
        # free plan's cap) for a warning, the price for a critical alert.
        against = price if tr.severity == CRITICAL and price > 0 else limit
        sure = _above(projected, sd_usd, against, actual)
        decisions.append(Decision.of(NAME, tr, {**values, "confidence": sure}))
    return decisions


def _escalate(
    state: MarginBreachState, t: float, width: float, critical: bool, consecutive: int
) -> list[Transition]:
    """A firing warning becomes critical after ``consecutive`` critical buckets: the
    warning resolves where the critical alert starts (severity is a label: two alerts).
    The band narrows with history, so a customer far over their price is often sure to
    miss the target hours before they are sure to cost more than they pay."""
    episode = state.episode
    if not critical or episode is None or not episode.firing or episode.severity != WARNING:
        state.critical_streak = 0
        return []
    state.critical_streak += 1
    if state.critical_streak < consecutive:
        return []
    began = t - (state.critical_streak - 1) * width
    state.critical_streak = 0
    state.episode = Episode(firing=True, severity=CRITICAL, started_at=began)
    return [*episode.close(began), Transition("firing", CRITICAL, began)]


def _above(mean: float, sd: float, level: float, floor: float) -> float:
    """P(X > level) for X ~ normal(mean, sd) that cannot end below ``floor``."""
    if floor > level:
        return 1.0
    if sd <= 0:
        return 1.0 if mean > level else 0.0
    return 0.5 * (1.0 + math.erf((mean - level) / (sd * math.sqrt(2.0))))
