r"""Attribution: why spend moved, split into its drivers in USD/h that add up to the excess.

Spend over a period is written as the product of six drivers (an identity, exact at
both ends):

    C = R x k x p x (i x (1 - 0.75 h) + 4 o)

- ``volume``: R, successful requests (per hour);
- ``retries``: k = attempts / successful requests (failed attempts and retries);
- ``input_tokens``: i = prompt tokens (uncached and cached input) per attempt;
  ``output_tokens``: o = output tokens per attempt (output weighs ~4x input in most
  price tables);
- ``cache``: h = cached share of the prompt tokens (a cache read costs 10 % of input at
  Anthropic and gpt-5, 25 % at gpt-4.1 and Gemini, 50 % at gpt-4o: 25 % is taken);
- ``model_mix``: p, USD per weighted token: whatever the token counts do not explain
  (a model switch, a price change, cache writes). It closes the identity: p is defined
  as C / (attempts x weighted tokens).

The change from a baseline to now, C1 - C0, is split by **Shapley values** over the six
drivers: each driver's share is its marginal effect (switching it from baseline to now)
averaged over all 6! orders of switching, computed over the 64 subsets. Shapley shares
always add up to C1 - C0 (efficiency), are zero for a driver that did not change, and a
pure model switch or a pure volume change is attributed wholly to that driver.

The split is then fitted to the excess the detector reports (its own baseline may differ
a little from the drivers' baseline): scaled proportionally when the two agree within a
factor :data:`MAX_RESCALE`; otherwise the shares are kept as computed and the rest is
reported as ``other`` (baselines differ). Either way the parts add up to the excess.

A prompt that doubles (at $1 per 100k weighted tokens) and a little more traffic:

>>> base = Usage(cost=0.90, requests=100, attempts=100, input_tokens=50_000,
...              cached_input_tokens=0, output_tokens=10_000)
>>> now = Usage(cost=1.68, requests=120, attempts=120, input_tokens=120_000,
...             cached_input_tokens=0, output_tokens=12_000)
>>> a = split(base, now)
>>> {d: round(v, 3) for d, v in a.usd_per_hour.items() if abs(v) > 1e-9}
{'volume': 0.23, 'input_tokens': 0.55}
>>> print(*a.text().split("; "), sep="\n;  ")
+$0.78/h: input tokens/request +100 % (+$0.55/h), volume +20 % (+$0.23/h)
;  output tokens/request +0 %, model mix +0 %, cache hits 0 % -> 0 %, failures/retries 0 % -> 0 %
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

# Price weights of the identity: approximations that only split the change (the identity
# is exact whatever they are, as ``model_mix`` absorbs the rest).
CACHE_DISCOUNT = 0.75  # a cached input token costs 1 - this of an uncached one
OUTPUT_WEIGHT = 4.0  # an output token costs this many input tokens
# The split is scaled to the reported excess when the two differ by at most this factor.
MAX_RESCALE = 2.0
# A side with no successful request: its volume is floored at this share of attempts,
# so the identity stays finite (the failures driver then carries the difference).
MIN_SUCCESS_SHARE = 0.01

DRIVERS = ("volume", "input_tokens", "output_tokens", "model_mix", "cache", "retries")
LABELS = {
    "volume": "volume",
    "input_tokens": "input tokens/request",
    "output_tokens": "output tokens/request",
    "model_mix": "model mix",
    "cache": "cache hits",
    "retries": "failures/retries",
    "other": "other (baselines differ)",
}


class Usage(NamedTuple):
    """Usage over a period (or per hour): USD, requests and token counts."""

    cost: float
    requests: float  # successful requests
    attempts: float  # every attempt, failed ones and retries included
    input_tokens: float  # uncached input: events count cache reads apart (contracts)
    cached_input_tokens: float
    output_tokens: float

    def scaled(self, factor: float) -> Usage:
        """The same usage over a period ``factor`` times as long (e.g. to per hour)."""
        return Usage(*(x * factor for x in self))


class _Factors(NamedTuple):
    volume: float
    input_tokens: float
    output_tokens: float
    model_mix: float
    cache: float
    retries: float


def _cost(f: _Factors | list[float]) -> float:
    volume, i, o, p, h, k = f
    return volume * k * p * (i * (1.0 - CACHE_DISCOUNT * h) + OUTPUT_WEIGHT * o)


def factors(u: Usage, tokens: bool = True) -> _Factors | None:
    """The six drivers of ``u`` (None without attempts). ``tokens=False``: token counts
    are left out (i = o = h = 0, p = USD per attempt), for usage that reports none."""
    if u.attempts <= 0:
        return None
    requests = max(u.requests, MIN_SUCCESS_SHARE * u.attempts)
    k = u.attempts / requests
    if not tokens:
        return _Factors(requests, 1.0, 0.0, u.cost / u.attempts, 0.0, k)
    prompt = u.input_tokens + u.cached_input_tokens
    i = prompt / u.attempts
    o = u.output_tokens / u.attempts
    h = u.cached_input_tokens / prompt if prompt > 0 else 0.0
    weighted = i * (1.0 - CACHE_DISCOUNT * h) + OUTPUT_WEIGHT * o
    return _Factors(requests, i, o, u.cost / (u.attempts * weighted), h, k)


def _weighted_tokens(u: Usage) -> float:
    cached = u.cached_input_tokens
    return u.input_tokens + (1.0 - CACHE_DISCOUNT) * cached + OUTPUT_WEIGHT * u.output_tokens


def _shapley(base: _Factors, now: _Factors) -> list[float]:
    """Each driver's Shapley share of cost(now) - cost(base), over all 2^6 subsets."""
    n = len(base)
    value = [0.0] * (1 << n)
    for mask in range(1 << n):
        value[mask] = _cost([now[j] if mask >> j & 1 else base[j] for j in range(n)])
    weight = [math.factorial(s) * math.factorial(n - s - 1) / math.factorial(n) for s in range(n)]
    shares = [0.0] * n
    for mask in range(1 << n):
        size = mask.bit_count()
        for j in range(n):
            if not mask >> j & 1:
                shares[j] += weight[size] * (value[mask | 1 << j] - value[mask])
    return shares


@dataclass(frozen=True, slots=True)
class Attribution:
    """An excess (USD/h) split into drivers, and the drivers' levels at both ends."""

    excess_usd_per_hour: float
    usd_per_hour: dict[str, float]  # per driver, plus "other" when baselines differ
    base: _Factors
    now: _Factors
    tokens: bool = True  # False: no token counts, only volume, failures and price split
    scale: float = field(default=1.0)  # how the Shapley shares were scaled to the excess

    def pct(self) -> dict[str, float]:
        """Each part's share of the excess, per cent (0 when there is no excess)."""
        total = self.excess_usd_per_hour
        if abs(total) < 1e-12:  # USD/h: nothing to share out
            return dict.fromkeys(self.usd_per_hour, 0.0)
        return {d: 100.0 * v / total for d, v in self.usd_per_hour.items()}

    def change(self, driver: str) -> str:
        """How the driver moved: a relative change, or levels for the shares."""
        if driver == "cache":
            return f"{100 * self.base.cache:.0f} % -> {100 * self.now.cache:.0f} %"
        if driver == "retries":
            before, after = 1.0 - 1.0 / self.base.retries, 1.0 - 1.0 / self.now.retries
            return f"{100 * before:.0f} % -> {100 * after:.0f} %"
        was, now = getattr(self.base, driver), getattr(self.now, driver)
        if was <= 0:
            return "new" if now > 0 else "+0 %"
        change = 100 * (now / was - 1)
        return f"{change:+,.0f} %" if abs(change) >= 0.5 else "+0 %"

    def text(self) -> str:
        """One line: the excess; the drivers that carry it (1 % or more of it), largest
        first, with their change and USD/h; then the others' change, and what they add
        up to when that is a cent an hour or more (so the line adds up)."""
        total = abs(self.excess_usd_per_hour)
        parts = self.usd_per_hour
        major = [d for d in parts if d == "other" or abs(parts[d]) >= max(0.01 * total, 1e-9)]
        major.sort(key=lambda d: -abs(parts[d]))
        said = [
            f"{LABELS[d]} ({_usd(parts[d])})"
            if d == "other"
            else f"{LABELS[d]} {self.change(d)} ({_usd(parts[d])})"
            for d in major
        ]
        line = f"{_usd(self.excess_usd_per_hour)}: " + ", ".join(said)
        rest = [d for d in parts if d not in major]
        if not rest:
            return line
        minor = ", ".join(f"{LABELS[d]} {self.change(d)}" for d in rest)
        together = math.fsum(parts[d] for d in rest)
        if abs(together) >= 0.005:  # USD/h: small each, but they add up to this
            minor = f"others ({_usd(together)}): {minor}"
        return line + ("; " if said else "") + minor

    def values(self) -> dict[str, float]:
        """Annotations: ``excess_<driver>_usd_per_hour`` and ``excess_<driver>_pct``."""
        pct = self.pct()
        out: dict[str, float] = {}
        for driver, usd in self.usd_per_hour.items():
            out[f"excess_{driver}_usd_per_hour"] = usd
            out[f"excess_{driver}_pct"] = pct[driver]
        return out


def _usd(x: float) -> str:
    return f"{'-' if x < 0 else '+'}${abs(x):,.2f}/h"


def split(base: Usage, now: Usage, excess: float | None = None) -> Attribution | None:
    """Split the change from ``base`` to ``now`` (both per hour) into the drivers, fitted
    to ``excess`` USD/h (default: now.cost - base.cost). None when a side has no attempts.

    Token drivers are used only when both sides report weighted tokens; otherwise the
    split is volume, failures/retries and price per attempt (``model_mix``).
    """
    tokens = _weighted_tokens(base) > 0 and _weighted_tokens(now) > 0
    f0, f1 = factors(base, tokens), factors(now, tokens)
    if f0 is None or f1 is None:
        return None
    shares = _shapley(f0, f1)
    delta = math.fsum(shares)
    target = now.cost - base.cost if excess is None else excess
    parts = dict(zip(DRIVERS, shares, strict=True))
    if not tokens:  # their factors are equal at both ends: nothing to say about them
        for driver in ("input_tokens", "output_tokens", "cache"):
            del parts[driver]
    scale = target / delta if delta else math.inf
    if 1.0 / MAX_RESCALE <= scale <= MAX_RESCALE:
        parts = {d: v * scale for d, v in parts.items()}
        # What floating point leaves over goes to the largest part: the sum is the excess.
        largest = max(parts, key=lambda d: abs(parts[d]))
        parts[largest] += target - math.fsum(parts.values())
    else:
        scale = 1.0
        parts["other"] = target - delta
    return Attribution(target, parts, f0, f1, tokens, scale)
