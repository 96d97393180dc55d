"""Exponentially weighted mean and variance, plain and by hour of day.

Both follow the usual incremental rule (West 1979 / Finch 2009): with weight ``a`` and
``d = x - mean``: ``mean += a * d`` and ``var = (1 - a) * (var + a * d * d)``. Until a
series has seen ``1 / alpha`` values the weight is ``1 / n`` instead, so early values are
a plain running mean rather than a mean dragged towards zero.

>>> ew = EWStat(alpha=0.1)
>>> for x in [1.0, 2.0, 3.0]:
...     ew.update(x)
>>> round(ew.mean, 3), round(ew.var, 3), ew.n
(2.0, 0.667, 3)
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass, field
from typing import Any

SLOTS_PER_DAY = 24
SECONDS_PER_SLOT = 86_400 // SLOTS_PER_DAY


def ew_weight(alpha: float, n: int) -> float:
    """The weight of the n-th value (n >= 1): 1/n while warming, then alpha."""
    return max(alpha, 1.0 / n)


@dataclass(slots=True)
class EWStat:
    """Exponentially weighted mean and variance of one series."""

    alpha: float
    mean: float = 0.0
    var: float = 0.0
    n: int = 0

    def update(self, x: float) -> None:
        self.n += 1
        a = ew_weight(self.alpha, self.n)
        d = x - self.mean
        self.mean += a * d
        self.var = (1.0 - a) * (self.var + a * d * d)

    @property
    def std(self) -> float:
        return math.sqrt(self.var)

    def to_dict(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "mean": self.mean, "var": self.var, "n": self.n}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EWStat:
        return cls(alpha=data["alpha"], mean=data["mean"], var=data["var"], n=data["n"])


def hour_slot(t: float) -> int:
    """Hour of the UTC day (0..23) of an epoch time in seconds."""
    return int(t // SECONDS_PER_SLOT) % SLOTS_PER_DAY


@dataclass(slots=True)
class SeasonalBaseline:
    """What a bucket's value usually is at this hour of the day, and how much it varies.

    One EW mean/variance per hour of the UTC day (so a daily peak is expected, not a
    spike), plus an all-hours EW mean/variance used while an hour has too little history.
    ``seasonal=False`` keeps only the all-hours statistics (for coarse series).

    >>> b = SeasonalBaseline(alpha=0.05)
    >>> for minute in range(48 * 60):              # two days, busy from 12:00 to 18:00
    ...     t = minute * 60.0
    ...     b.update(t, 10.0 if 12 <= hour_slot(t) < 18 else 1.0)
    >>> round(b.expected(15 * 3600.0)[0], 2), round(b.expected(3 * 3600.0)[0], 2)
    (10.0, 1.0)
    """

    alpha: float
    seasonal: bool = True
    overall: EWStat = field(init=False)
    means: array = field(init=False)
    vars: array = field(init=False)
    counts: array = field(init=False)

    def __post_init__(self) -> None:
        self.overall = EWStat(self.alpha)
        size = SLOTS_PER_DAY if self.seasonal else 0
        self.means = array("d", bytes(8 * size))
        self.vars = array("d", bytes(8 * size))
        self.counts = array("I", bytes(4 * size))

    @property
    def n(self) -> int:
        return self.overall.n

    def update(self, t: float, x: float) -> None:
        """Learn the value ``x`` of the bucket starting at epoch second ``t``."""
        self.overall.update(x)
        if not self.seasonal:
            return
        h = hour_slot(t)
        count = self.counts[h] + 1
        self.counts[h] = min(count, 4_000_000_000)
        a = ew_weight(self.alpha, count)
        d = x - self.means[h]
        self.means[h] += a * d
        self.vars[h] = (1.0 - a) * (self.vars[h] + a * d * d)

    def expected(self, t: float, min_slot_count: int = 10) -> tuple[float, float]:
        """(mean, standard deviation) expected for the bucket starting at ``t``."""
        if self.seasonal:
            h = hour_slot(t)
            if self.counts[h] >= min_slot_count:
                return self.means[h], math.sqrt(self.vars[h])
        return self.overall.mean, self.overall.std

    def to_dict(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha,
            "seasonal": self.seasonal,
            "overall": self.overall.to_dict(),
            "means": list(self.means),
            "vars": list(self.vars),
            "counts": list(self.counts),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SeasonalBaseline:
        baseline = cls(alpha=data["alpha"], seasonal=data["seasonal"])
        baseline.overall = EWStat.from_dict(data["overall"])
        baseline.means = array("d", data["means"])
        baseline.vars = array("d", data["vars"])
        baseline.counts = array("I", data["counts"])
        return baseline
