"""cost_shift: what a successful request costs moved up and stayed there, at any spend rate.

spend_spike judges spend; a model switch at the same volume (gpt-4o-mini to gpt-4o: 15x
per request) that adds $0.70/h stays under its $3/h floor while costing ~$500 a month.
cost_shift judges **unit cost**, USD per successful request, per key, so a change of
volume alone never fires it, and it asks for money over a month rather than per hour.

Per key it keeps exponentially weighted *sums* (a ratio of sums is a robust estimate for
sparse keys) of cost, successful requests, attempts, input, cached input and output tokens:

- a long baseline (``baseline_days``), with per hour of the UTC day sums of cost and
  requests (the unit cost expected at this hour, shrunk towards all hours' while an hour
  has few requests; a customer whose night traffic is batch work has a dearer night);
- a short window (``window_s``): the unit cost judged, against what the baseline
  expects for the same hours and volumes (or what the caller says the requests should
  have cost: a customer's, at its endpoints' own unit costs);
- a recent window (``calm_s``): the level now. An alert reports it (observed, money,
  attribution), a breach must still show in it, and it judges the calm after firing, so
  the short window's memory of a dear hour neither holds an alert nor starts another.

A step breaches when, with the baseline warm (``warmup_s`` of history and
``min_baseline_requests``) and ``min_requests`` in the short window: unit cost is
``min_ratio`` above baseline (in the short window, and still in the recent one),
``min_z`` standard errors above it (the per-request noise is learnt too), the excess
projected over a month (730 h) at the key's volume (the larger of the window's rate and
the long-run average rate, so a night-time shift is not judged at night volume) is worth
``warning_usd_per_month``, and spend is above what this hour usually costs (a cheap
model's traffic stopping raises unit cost but costs nothing). It fires once the breach
has lasted ``min_duration_s``; critical from ``critical_usd_per_month`` (a warning
escalates once). Slow creep: a shift of at least half of ``min_ratio`` (the other
conditions the same, and still half way up in the recent window) fires once it has
lasted ``creep_duration_s``. While an alert is open or building (a breach or a creep)
the baseline does not learn, and once warm a dear step is learnt clipped. It resolves
when the recent unit cost is below baseline x (1 + ``min_ratio`` / 2) for ``calm_s``
(flap damping: ``rearm_s``), or when
the new level is accepted: ``accept_from`` (an event time, per key through overrides)
restarts the key's baseline from the current level at that time and closes its alert;
``accept_after_s`` does so by itself after an alert has been open that long.

The detector takes usage in steps (the stream layer feeds it every few buckets): each
call is one step of ``dt`` seconds; time only comes in with the calls.

>>> p = CostShiftParams()
>>> def traffic(switch_at_h, volume_from_h=None, hours=40):
...     s, out = CostShiftState.new(p), []
...     for step in range(hours * 12):        # 5-minute steps, 165 requests an hour
...         t = step * 300.0
...         n = 165 / 12 * (2 if volume_from_h is not None and t >= volume_from_h * 3600 else 1)
...         unit = 0.0045 if t >= switch_at_h * 3600 else 0.00027    # gpt-4o vs -mini
...         usage = Usage(n * unit, n, n, n * 1000, 0, n * 200)
...         out += update(s, t, 300.0, usage, p)
...     return out
>>> [(d.status, d.severity, round(d.starts_at / 3600, 2)) for d in traffic(switch_at_h=30)]
[('firing', 'warning', 30.0)]
>>> traffic(switch_at_h=99, volume_from_h=30)     # twice the requests, same unit cost
[]
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Annotated, Any, Protocol, cast

from pydantic import BeforeValidator, ConfigDict, Field, WithJsonSchema

from detectors import attribution
from detectors import episode as episodes
from detectors.attribution import Usage
from detectors.decision import HOURS_PER_MONTH, Decision
from detectors.encoding import pack, unpack
from detectors.episode import CRITICAL, WARNING, Episode, Transition

NAME = "cost_shift"
STATE_VERSION = 2
# The stream layer hands usage over in steps of about this long (whole buckets): a
# detector of hour-long windows needs no per-minute judging, and it costs per key.
STEP_S = 600.0
HOURS = 24
# An hour's unit cost is shrunk towards all hours' as if all hours' had this many
# requests in that hour: an hour with few requests follows the overall unit cost.
PRIOR_REQUESTS = 100.0
# Sums of the usage (the first six) and what each window adds to them.
COST, OK, ATTEMPTS, INPUT, CACHED, OUTPUT = range(6)
SQ = 6  # long: squared deviation of each step's cost from its expected cost
EXPECTED = 6  # short: cost the baseline expects at the window's hours and volumes


# Single precision, as the baselines of spend_spike: an EW sum needs ratios to a few
# digits, and a key's state is half the size.
SUMS = "f"


class Sums(Protocol):
    """A view of some of a state's sums: numbers read and written by index."""

    def __getitem__(self, index: int, /) -> float: ...
    def __setitem__(self, index: int, value: float, /) -> None: ...
    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[float]: ...


# Where each set of sums lies in the state's array.
_LONG, _HOURS, _SHORT, _RECENT = slice(0, 7), slice(7, 55), slice(55, 62), slice(62, 69)
_SIZE = 69


def _epoch(value: Any) -> Any:
    """An event time as epoch seconds: RFC 3339 text (with an offset) or a number."""
    if isinstance(value, str):
        text = value.strip()
        try:
            return float(text)
        except ValueError:
            pass
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{value!r} is not an RFC 3339 time or epoch seconds") from None
        if moment.tzinfo is None:
            raise ValueError(f"{value!r} has no UTC offset (write e.g. 2026-11-02T10:00:00Z)")
        return moment.timestamp()
    return value


EventTime = Annotated[
    float,
    BeforeValidator(_epoch),
    WithJsonSchema({"anyOf": [{"type": "number"}, {"type": "string", "format": "date-time"}]}),
]


@dataclass(frozen=True, slots=True)
class CostShiftParams:
    """Thresholds of the cost_shift detector (config: detectors.cost_shift)."""

    __pydantic_config__ = ConfigDict(extra="forbid")

    enabled: Annotated[bool, Field(description="Run this detector.")] = True
    min_ratio: Annotated[
        float,
        Field(
            gt=0,
            description="Fire when unit cost (USD per successful request) is this "
            "far above baseline; 0.25 = 25 %.",
        ),
    ] = 0.25
    min_z: Annotated[
        float,
        Field(
            ge=0,
            description="... and this many standard errors above it (per-request "
            "cost noise, learnt).",
        ),
    ] = 3.0
    warning_usd_per_month: Annotated[
        float,
        Field(
            ge=0,
            description="... and the excess, projected over a month (730 h) at the "
            "key's volume, is worth this, USD. No USD/h floor.",
        ),
    ] = 100.0
    critical_usd_per_month: Annotated[
        float, Field(ge=0, description="Critical when the projected excess is this, USD/month.")
    ] = 1000.0
    min_duration_s: Annotated[
        float,
        Field(
            ge=0,
            le=7 * 86_400,
            description="Fire once a breach has lasted this long (event time), seconds.",
        ),
    ] = 3600.0
    creep_duration_s: Annotated[
        float | None,
        Field(
            gt=0,
            le=7 * 86_400,
            description="Slow cost creep: a smaller shift, at least half of min_ratio "
            "above baseline (the other conditions the same), fires once it has lasted "
            "this long, seconds (null: never).",
        ),
    ] = 10_800.0
    min_requests: Annotated[
        float,
        Field(gt=0, description="Successful requests the short window needs (EW count)."),
    ] = 30.0
    window_s: Annotated[
        float,
        Field(
            gt=0,
            le=86_400,
            description="Short window: the recent unit cost, EW time constant, seconds.",
        ),
    ] = 3600.0
    baseline_days: Annotated[
        float, Field(gt=0, le=90, description="Memory of the baseline, days (EW time constant).")
    ] = 7.0
    warmup_s: Annotated[
        float, Field(ge=0, description="History a key needs before it is judged, seconds.")
    ] = 86_400.0
    min_baseline_requests: Annotated[
        float,
        Field(ge=0, description="... and successful requests in its baseline (EW count)."),
    ] = 200.0
    calm_s: Annotated[
        float,
        Field(
            gt=0,
            le=86_400,
            description="Resolve after the recent unit cost (EW over this "
            "long) is below baseline x (1 + min_ratio / 2) for this long, seconds.",
        ),
    ] = 900.0
    rearm_s: episodes.RearmSeconds = 3600.0
    clip_z: Annotated[
        float,
        Field(
            gt=0,
            description="Once warm, a step dearer than this many standard "
            "deviations above baseline is learnt clipped there.",
        ),
    ] = 3.0
    accept_from: Annotated[
        EventTime | None,
        Field(
            description="Accept the new level: from this event time (RFC 3339 or epoch "
            "s) the key's baseline restarts from its current unit cost and its alert "
            "resolves; once per key and value. Set it per key in overrides."
        ),
    ] = None
    accept_after_s: Annotated[
        float | None,
        Field(
            gt=0,
            description="Accept the new level by itself once an alert has been "
            "open this long, seconds (null: never).",
        ),
    ] = None


# The stored state's parts of the sums (to_dict), and the version that wrote them as JSON
# lists of numbers (read still: a restarted worker restores what its predecessor wrote).
_PARTS = {"long": _LONG, "hours": _HOURS, "short": _SHORT, "recent": _RECENT}
_LISTS_VERSION = 1


@dataclass(slots=True)
class CostShiftState:
    """Per-key state: EW sums (long, per hour, short, recent), the breach, the episode."""

    # One array of single floats, seen as four (views below): a list held a 24-byte float
    # object per number, and each array has a header of its own.
    sums: array  # long, hours, short, recent, in that order (_LONG, _HOURS, ...)
    t: float | None = None  # start of the last step
    since: float | None = None  # start of the learnt history (moves on while not learning)
    breach_since: float | None = None
    accepted: float | None = None  # the accept_from already applied
    episode: Episode | None = None

    @classmethod
    def new(cls, params: CostShiftParams) -> CostShiftState:
        return cls(array(SUMS, bytes(4 * _SIZE)))

    @property
    def long(self) -> Sums:
        """cost, ok, attempts, input, cached, output, squared deviation (EW, long)."""
        return cast(Sums, memoryview(self.sums)[_LONG])

    @property
    def hours(self) -> Sums:
        """Per hour of the UTC day: cost, ok (2 x 24)."""
        return cast(Sums, memoryview(self.sums)[_HOURS])

    @property
    def short(self) -> Sums:
        """The six usage sums, and what they were expected to cost (EW, short)."""
        return cast(Sums, memoryview(self.sums)[_SHORT])

    @property
    def recent(self) -> Sums:
        """The six usage sums, and what they were expected to cost (EW, recent)."""
        return cast(Sums, memoryview(self.sums)[_RECENT])

    def to_dict(self) -> dict[str, Any]:
        """The state as JSON values; each part of the sums as its bytes (encoding.pack)."""
        sums = self.sums
        return {
            "v": STATE_VERSION,
            **{name: pack(sums[part]) for name, part in _PARTS.items()},
            "t": self.t,
            "since": self.since,
            "breach_since": self.breach_since,
            "accepted": self.accepted,
            "episode": episodes.to_dict(self.episode),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CostShiftState:
        """The state written by ``to_dict``, or by version 1 (the sums as lists of numbers)."""
        if data.get("v") not in (_LISTS_VERSION, STATE_VERSION):
            raise ValueError(f"cost_shift state version {data.get('v')!r} != {STATE_VERSION}")
        sums = array(SUMS)
        for name, part in _PARTS.items():
            try:
                sums += unpack(SUMS, data[name], part.stop - part.start)
            except ValueError as e:
                raise ValueError(
                    f"cost_shift state: sums {name!r} of the wrong length: {e}"
                ) from None
        return cls(
            sums,
            data["t"],
            data["since"],
            data["breach_since"],
            data["accepted"],
            episodes.from_dict(data["episode"]),
        )

    @property
    def learnt_requests(self) -> float:
        """Successful requests in the baseline (EW count): 0 before it has learnt any."""
        return self.long[OK]

    def unit_cost_at(self, t: float) -> float:
        """The unit cost (USD per successful request) the baseline expects at ``t``'s hour."""
        long, at = self.long, 2 * _hour(t)
        overall = long[COST] / long[OK] if long[OK] > 0 else 0.0
        hours = self.hours
        return (hours[at] + PRIOR_REQUESTS * overall) / (hours[at + 1] + PRIOR_REQUESTS)

    def usual_requests_per_s(self, t: float, params: CostShiftParams) -> float:
        """Successful requests per second the baseline expects at ``t``'s hour."""
        average = self.average_requests_per_s(t, params)
        total = sum(self.sums[_HOURS.start + 1 : _HOURS.stop : 2])
        if total <= 0:
            return average
        return average * HOURS * self.hours[2 * _hour(t) + 1] / total

    def average_requests_per_s(self, t: float, params: CostShiftParams) -> float:
        """The long-run rate of successful requests, per second (all hours)."""
        if self.since is None or t <= self.since:
            return 0.0
        tau = params.baseline_days * 86_400.0
        return self.long[OK] / (tau * -math.expm1(-(t - self.since) / tau))

    def baseline_usage(self, t: float, params: CostShiftParams) -> Usage | None:
        """The usage per hour the baseline expects at ``t``'s hour: usual volume, unit
        cost and per-request tokens (for attributing a spend alert). None: no baseline."""
        long = self.long
        ok = long[OK]
        if ok <= 0:
            return None
        volume = self.usual_requests_per_s(t, params) * 3600.0
        per_request = volume / ok
        return Usage(
            volume * self.unit_cost_at(t),
            volume,
            long[ATTEMPTS] * per_request,
            long[INPUT] * per_request,
            long[CACHED] * per_request,
            long[OUTPUT] * per_request,
        )


def _hour(t: float) -> int:
    return int(t // 3600) % HOURS


@dataclass(frozen=True, slots=True)
class _Judged:
    """What a step's figures are, before deciding."""

    unit: float  # USD per successful request, short window
    base: float  # expected, same hours and volumes
    ratio: float  # unit / base - 1
    z: float
    volume_per_hour: float  # successful requests/h the excess is projected at
    rate_per_hour: float  # successful requests/h in the short window
    excess_per_hour: float  # (unit - base) x volume, USD/h
    now: float  # USD per successful request in the recent window (short's if it is empty)
    now_base: float  # what the baseline expects for the recent window's requests
    now_excess_per_hour: float  # (now - base) x volume, USD/h: what is lost now
    now_evidence: bool  # the recent window alone has min_requests
    spend_above_usual: bool
    warm: bool
    evidence: bool  # enough requests in the short window


def update(
    state: CostShiftState,
    t: float,
    dt: float,
    usage: Sequence[float],
    params: CostShiftParams,
    expected: float | None = None,
) -> list[Decision]:
    """Learn and judge the usage of the step ``[t, t + dt)`` (epoch s): a :class:`Usage`
    or its six numbers in that order (USD, counts).

    ``expected``: what the step's successful requests would cost at baseline, USD;
    default: their number x this key's unit cost at this hour. A key that is a sum of
    others (a customer's endpoints) passes the sum of its parts' requests at each part's
    own baseline unit cost: then traffic moving from a cheap endpoint to a dear one is a
    change of volume, not of unit cost. Steps at or before the last one are ignored; a
    gap between steps is time without usage (the sums decay over it).
    """
    last = state.t
    if last is not None and t <= last:
        return []
    decisions: list[Decision] = []
    accept = params.accept_from
    if accept is not None and accept != state.accepted and t + dt > accept:
        if last is None:
            state.accepted = accept  # a key first seen after it has nothing to accept
        else:
            decisions += _accept(state, max(t, accept), accept_from=accept)
    gap = dt if last is None else t - last
    if state.since is None:
        state.since = t
    learning = state.episode is None and state.breach_since is None
    if learning:
        _decay_long(state, t, params)
    else:
        state.since += gap  # time not learnt is not history
    state.t = t
    cost, ok = usage[COST], usage[OK]
    if expected is None:
        expected = ok * state.unit_cost_at(t)
    fs = _decay(gap, params.window_s)
    short = state.short
    short[COST] = short[COST] * fs + cost
    short[OK] = short[OK] * fs + ok
    short[ATTEMPTS] = short[ATTEMPTS] * fs + usage[ATTEMPTS]
    short[INPUT] = short[INPUT] * fs + usage[INPUT]
    short[CACHED] = short[CACHED] * fs + usage[CACHED]
    short[OUTPUT] = short[OUTPUT] * fs + usage[OUTPUT]
    short[EXPECTED] = short[EXPECTED] * fs + expected
    fr = _decay(gap, params.calm_s)
    recent = state.recent
    recent[COST] = recent[COST] * fr + cost
    recent[OK] = recent[OK] * fr + ok
    recent[ATTEMPTS] = recent[ATTEMPTS] * fr + usage[ATTEMPTS]
    recent[INPUT] = recent[INPUT] * fr + usage[INPUT]
    recent[CACHED] = recent[CACHED] * fr + usage[CACHED]
    recent[OUTPUT] = recent[OUTPUT] * fr + usage[OUTPUT]
    recent[EXPECTED] = recent[EXPECTED] * fr + expected
    # Where creep is judged, half the ratio already starts a breach.
    bar = 1 + (params.min_ratio if params.creep_duration_s is None else params.min_ratio / 2)
    if learning and (
        short[OK] < params.min_requests
        or (short[COST] < short[EXPECTED] * bar and recent[COST] < recent[EXPECTED] * bar)
    ):
        # Nothing open or building, and neither window shows a shift (the recent one
        # starts a breach's hour): what _decide would conclude without a word (most
        # keys, most steps), at a fraction of the cost.
        _learn(state, t, usage, expected, params)
        return decisions
    judged = _judge(state, t, dt, params)
    # The recent window as the previous step left it (this step's usage taken out): if
    # it was already elevated there, a shift shown now began in that step.
    began = None
    if last is not None and fr > 0:
        prev_cost, prev_expected = (recent[COST] - cost) / fr, (recent[EXPECTED] - expected) / fr
        if prev_expected > 0 and prev_cost >= prev_expected * (1 + params.min_ratio / 2):
            began = last
    decisions += _decide(state, t, dt, judged, params, began)
    if state.episode is None and state.breach_since is None:
        _learn(state, t, usage, expected, params)
    return decisions


_decays: dict[tuple[float, float], float] = {}


def _decay(gap: float, tau: float) -> float:
    """exp(-gap / tau), remembered: steps are mostly of one length (bounded cache)."""
    f = _decays.get((gap, tau))
    if f is None:
        if len(_decays) > 1024:
            _decays.clear()
        f = _decays[(gap, tau)] = math.exp(-gap / tau)
    return f


def _decay_long(state: CostShiftState, t: float, params: CostShiftParams) -> None:
    """Decay the baseline when the hour changes (by the hours since): a 7-day memory
    moves 0.6 % in an hour, so steps within one need not pay for it, and the hours'
    profile, learnt only in its own hour, decays alike."""
    last = state.t
    if last is None:
        return
    hours = int(t // 3600) - int(last // 3600)
    if hours <= 0:
        return
    f = _decay(hours * 3600.0, params.baseline_days * 86_400.0)
    sums = state.sums  # long and hours, side by side
    for i in range(_HOURS.stop):
        sums[i] *= f


def _learn(
    state: CostShiftState,
    t: float,
    usage: Sequence[float],
    expected: float,
    params: CostShiftParams,
) -> None:
    """Add the step to the baseline; once warm, a dear step is learnt clipped (at
    ``clip_z`` standard deviations, and at least half of ``min_ratio``, above what the
    baseline expects), so a shift not yet alerted on does not teach the baseline that it
    is normal, while a slow drift below the alerting ratio is still followed."""
    long = state.long
    cost, ok = usage[COST], usage[OK]
    if long[OK] > 0:  # the noise around a baseline, once there is one to compare with
        if cost > expected * (1.0 + params.min_ratio / 2) and _warm(state, t, params):
            sd = math.sqrt(long[SQ] / long[OK] * ok)
            cap = max(expected * (1.0 + params.min_ratio / 2), expected + params.clip_z * sd)
            cost = min(cost, cap)
        d = cost - expected
        long[SQ] += d * d
    long[COST] += cost
    for i in range(1, 6):
        long[i] += usage[i]
    at = 2 * _hour(t)
    state.hours[at] += cost
    state.hours[at + 1] += ok


def _warm(state: CostShiftState, t: float, params: CostShiftParams) -> bool:
    history = t - (state.since if state.since is not None else t)
    return history >= params.warmup_s and state.long[OK] >= params.min_baseline_requests


def _judge(state: CostShiftState, t: float, dt: float, params: CostShiftParams) -> _Judged:
    short, long = state.short, state.long
    ok = short[OK]
    unit = short[COST] / ok if ok > 0 else 0.0
    base = short[EXPECTED] / ok if ok > 0 else 0.0
    ratio = unit / base - 1.0 if base > 0 else 0.0
    # Steady traffic of r per second keeps an EW sum at r x dt / (1 - e^(-dt / window)).
    per_s = -math.expm1(-dt / params.window_s) / dt
    rate = ok * per_s * 3600.0
    volume = max(rate, state.average_requests_per_s(t, params) * 3600.0)
    variance = long[SQ] / long[OK] if long[OK] > 0 else 0.0
    se = math.sqrt(variance / ok) if ok > 0 else 0.0
    z = (unit - base) / se if se > 0 else (math.inf if unit > base else 0.0)
    recent = state.recent
    if recent[OK] > 0:
        now, now_base = recent[COST] / recent[OK], recent[EXPECTED] / recent[OK]
    else:
        now, now_base = unit, base
    return _Judged(
        unit,
        base,
        ratio,
        z,
        volume,
        rate,
        (unit - base) * volume,
        now,
        now_base,
        (now - now_base) * volume,
        recent[OK] >= params.min_requests,
        # Spend now above what this hour usually costs (at its usual volume).
        short[COST] * per_s > state.usual_requests_per_s(t, params) * state.unit_cost_at(t),
        _warm(state, t + dt, params),
        ok >= params.min_requests,
    )


def _decide(
    state: CostShiftState,
    t: float,
    dt: float,
    j: _Judged,
    params: CostShiftParams,
    began: float | None = None,
) -> list[Decision]:
    month = j.excess_per_hour * HOURS_PER_MONTH
    recent_breach, recent_elevated = _recent(state, j, params)
    # Critical on the hour's window, or on the level now once the recent window alone
    # has the requests to say so (the hour's window lags a new level by ~2 window_s).
    now_month = j.now_excess_per_hour * HOURS_PER_MONTH if j.now_evidence else month
    critical = max(month, now_month) >= params.critical_usd_per_month
    # What a breach and a creep both need: history, requests, significance, money, spend.
    material = (
        j.warm
        and j.evidence
        and j.z >= params.min_z
        and month >= params.warning_usd_per_month
        and j.spend_above_usual
    )
    breach = (
        material
        and j.ratio >= params.min_ratio
        and recent_breach  # still shifted now: not the window's memory of a past hour
    )
    calm_n = episodes.rearm_buckets(params.calm_s, dt) or 1
    rearm_n = episodes.rearm_buckets(params.rearm_s, dt)
    episode = state.episode
    transitions: list[Transition] = []
    crept = False
    if episode is not None and episode.firing:
        if episode.severity == WARNING and breach and critical and episode.calm == 0:
            # Escalation: the warning resolves and a critical alert fires (two alerts).
            transitions = episode.close(t)
            state.episode = Episode(True, CRITICAL, t)
            transitions.append(Transition("firing", CRITICAL, t))
        else:
            state.episode, transitions = episodes.advance(
                episode,
                t,
                dt,
                recent_breach,
                recent_elevated,
                episode.severity,
                consecutive=1,
                calm_needed=calm_n,
                rearm_buckets=rearm_n,
            )
        accept_after = params.accept_after_s
        opened = state.episode
        if (
            accept_after is not None
            and opened is not None
            and opened.firing
            and t + dt - opened.started_at >= accept_after
        ):
            end = max(t, opened.started_at + accept_after)
            fired = _decisions(transitions, j, params, state)  # before the baseline moves
            return fired + _accept(state, end, by="accept_after_s")
    else:
        elevated = (
            j.warm
            and j.evidence
            and j.ratio >= params.min_ratio / 2
            and month >= params.warning_usd_per_month / 2
        )
        # A shift lasts from when the recent window first showed it (the hour's window,
        # which decides, lags a new level by most of its hour) while the recent window
        # stays elevated: a blip there that the hour's window only half follows does not
        # start the hour early. From the step before (``began``) when the recent window
        # was already half way there: the shift began within that step.
        shown = j.warm and recent_breach and j.spend_above_usual
        # Creep: half the ratio, with the money, the evidence and the spend, still
        # elevated now; it fires only after creep_duration_s.
        creep = (
            params.creep_duration_s is not None
            and material
            and j.ratio >= params.min_ratio / 2
            and recent_elevated
        )
        if breach or shown or creep:
            if state.breach_since is None:
                state.breach_since = began if shown and began is not None else t
        elif not (elevated and recent_elevated):
            state.breach_since = None
        since = state.breach_since
        lasted = breach and since is not None and t + dt - since >= params.min_duration_s
        crept = bool(
            not lasted
            and creep
            and since is not None
            and t + dt - since >= (params.creep_duration_s or math.inf)
        )
        lasted = lasted or crept
        severity = CRITICAL if critical else WARNING
        state.episode, transitions = episodes.advance(
            episode,
            t,
            dt,
            lasted,
            lasted,
            severity,
            consecutive=1,
            calm_needed=calm_n,
            began_at=since,
            rearm_buckets=rearm_n,
        )
    if any(tr.status == "resolved" for tr in transitions):
        state.breach_since = None
    return _decisions(transitions, j, params, state, crept)


def _recent(state: CostShiftState, j: _Judged, params: CostShiftParams) -> tuple[bool, bool]:
    """(breach, elevated) of the recent window, which judges an open alert."""
    if state.recent[OK] <= 0 or j.now_base <= 0 or not j.evidence:
        return False, False
    ratio = j.now / j.now_base - 1.0
    month = j.now_excess_per_hour * HOURS_PER_MONTH
    breach = ratio >= params.min_ratio and month >= params.warning_usd_per_month
    elevated = ratio >= params.min_ratio / 2 and month >= params.warning_usd_per_month / 2
    return breach, elevated


def _decisions(
    transitions: list[Transition],
    j: _Judged,
    params: CostShiftParams,
    state: CostShiftState | None = None,
    crept: bool = False,
) -> list[Decision]:
    """The transitions as decisions; ``crept``: fired by the creep rule (its bar is half
    the ratio's, and the alert says so)."""
    if not transitions:
        return []
    # Figures of the level now (the recent window); the hour's window was judged.
    values = {
        "observed": j.now,
        "baseline": j.now_base,
        "ratio": j.now / j.now_base if j.now_base > 0 else 0.0,
        "z": j.z if math.isfinite(j.z) else 0.0,
        "threshold": j.now_base * (1.0 + params.min_ratio / (2 if crept else 1)),
        "money_at_risk_usd_per_hour": max(0.0, j.now_excess_per_hour),
        "excess_usd_per_month": max(0.0, j.now_excess_per_hour * HOURS_PER_MONTH),
        "requests_per_hour": j.rate_per_hour,
        "window_observed": j.unit,
    }
    out = []
    for tr in transitions:
        mine = values
        notes: dict[str, str] = {}
        if crept and tr.status == "firing":
            hours = (params.creep_duration_s or 0.0) / 3600
            notes["rule"] = f"creep: >= +{params.min_ratio / 2:.1%} for {hours:g} h"
        if tr.status == "firing" and state is not None:
            split = shift_attribution(state, j)
            if split is not None:
                mine = {**values, **split.values()}
                notes["attribution"] = split.text()
        decision = Decision.of(NAME, tr, mine)
        out.append(replace(decision, notes=notes) if notes else decision)
    return out


def shift_attribution(state: CostShiftState, j: _Judged) -> attribution.Attribution | None:
    """The unit-cost excess now split into drivers: both ends at the same volume (the one
    it is projected at), so volume carries none of it; per-request tokens, failures and
    cache share from the long sums and the recent window; price closes each end."""
    long, recent = state.long, state.recent
    if long[OK] <= 0 or recent[OK] <= 0:
        return None
    volume = j.volume_per_hour

    def at(sums: Sums, unit: float) -> Usage:
        per = volume / sums[OK]
        return Usage(
            unit * volume,
            volume,
            sums[ATTEMPTS] * per,
            sums[INPUT] * per,
            sums[CACHED] * per,
            sums[OUTPUT] * per,
        )

    return attribution.split(at(long, j.now_base), at(recent, j.now), j.now_excess_per_hour)


def _accept(
    state: CostShiftState, t: float, *, accept_from: float | None = None, by: str = "accept_from"
) -> list[Decision]:
    """Take the current level as the baseline from ``t``: per-request levels from the
    short window, the unit-cost profile scaled by the shift; close any alert at ``t``."""
    if accept_from is not None:
        state.accepted = accept_from
    long, short = state.long, state.short
    ok = short[OK]
    if ok > 0 and long[OK] > 0 and short[EXPECTED] > 0:
        ratio = short[COST] / short[EXPECTED]
        long[COST] *= ratio
        long[SQ] *= ratio * ratio
        for i in (ATTEMPTS, INPUT, CACHED, OUTPUT):
            long[i] = long[OK] * short[i] / ok
        sums = state.sums
        for i in range(_HOURS.start, _HOURS.stop, 2):  # the hours' costs
            sums[i] *= ratio
        short[EXPECTED] = short[COST]
        state.recent[EXPECTED] = state.recent[COST]
    state.breach_since = None
    episode, state.episode = state.episode, None
    if episode is None:
        return []
    values = {"accepted_at": t}
    return [
        replace(Decision.of(NAME, tr, values), notes={"resolved_by": by}) for tr in episode.close(t)
    ]
