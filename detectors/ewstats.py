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

from detectors.encoding import pack, unpack

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


def ew_update(stats: array, at: int, x: float, weight: float) -> None:
    """Update the EW mean at ``stats[at]`` and variance at ``stats[at + 1]`` with ``x``."""
    d = x - stats[at]
    stats[at] += weight * d
    stats[at + 1] = (1.0 - weight) * (stats[at + 1] + weight * d * d)


# SeasonalBaseline.stats layout: count, mean, var of all hours, then per hour of the day
# (mean, var, count). One flat array keeps a key's state small: 100k keys fit in memory.
_N, _MEAN, _VAR, _SLOTS = 0, 1, 2, 3
# Single precision is plenty for a baseline and halves the memory per key.
TYPECODE = "f"


@dataclass(slots=True)
class SeasonalBaseline:
    """What a bucket's value usually is at this hour of the day, and how much it varies.

    One EW mean/variance per hour of the UTC day (so a daily peak is expected, not a
    spike), plus an all-hours EW mean/variance used while an hour has too little history.
    ``seasonal=False`` keeps only the all-hours statistics (for coarse series). The weight
    ``alpha`` is a setting, passed in rather than stored, so a reload can change it.

    >>> b = SeasonalBaseline()
    >>> for minute in range(48 * 60):              # two days, busy from 12:00 to 18:00
    ...     t = minute * 60.0
    ...     b.update(t, 10.0 if 12 <= hour_slot(t) < 18 else 1.0, alpha=0.05)
    >>> round(b.expected(15 * 3600.0)[0], 2), round(b.expected(3 * 3600.0)[0], 2)
    (10.0, 1.0)
    """

    seasonal: bool = True
    stats: array = field(default_factory=lambda: array(TYPECODE))
    # Slots after the statistics that the owner keeps for its own numbers (spend_spike:
    # its last buckets' values): one array per key, no second object.
    tail: int = 0

    def __post_init__(self) -> None:
        size = _SLOTS + (3 * SLOTS_PER_DAY if self.seasonal else 0) + self.tail
        if len(self.stats) != size:
            self.stats = array(TYPECODE, bytes(self.stats.itemsize * size))

    @property
    def n(self) -> int:
        return int(self.stats[_N])

    @property
    def mean(self) -> float:
        """The all-hours mean."""
        return float(self.stats[_MEAN])

    def update(self, t: float, x: float, alpha: float) -> None:
        """Learn the value ``x`` of the bucket starting at epoch second ``t``."""
        # ew_weight, ew_update and hour_slot written out: this runs for every key in every
        # bucket, and the same expressions in the same order give the same numbers.
        stats = self.stats
        stats[_N] += 1
        weight = max(alpha, 1.0 / int(stats[_N]))
        d = x - stats[_MEAN]
        stats[_MEAN] += weight * d
        stats[_VAR] = (1.0 - weight) * (stats[_VAR] + weight * d * d)
        if not self.seasonal:
            return
        at = _SLOTS + 3 * (int(t // SECONDS_PER_SLOT) % SLOTS_PER_DAY)
        count = int(stats[at + 2]) + 1
        stats[at + 2] = min(count, 1 << 24)  # exact in single precision
        weight = max(alpha, 1.0 / count)
        d = x - stats[at]
        stats[at] += weight * d
        stats[at + 1] = (1.0 - weight) * (stats[at + 1] + weight * d * d)

    def expected(self, t: float, min_slot_count: int = 10) -> tuple[float, float]:
        """(mean, standard deviation) expected for the bucket starting at ``t``."""
        stats = self.stats
        if self.seasonal:
            at = _SLOTS + 3 * (int(t // SECONDS_PER_SLOT) % SLOTS_PER_DAY)
            if stats[at + 2] >= min_slot_count:
                return float(stats[at]), math.sqrt(max(0.0, stats[at + 1]))
        return float(stats[_MEAN]), math.sqrt(max(0.0, stats[_VAR]))

    def to_dict(self) -> dict[str, Any]:
        """The baseline as JSON values, the statistics as their bytes (encoding.pack)."""
        return {"seasonal": self.seasonal, "stats": pack(self.stats), "tail": self.tail}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SeasonalBaseline:
        return cls(
            seasonal=data["seasonal"],
            stats=unpack(TYPECODE, data["stats"]),  # or a list of numbers, as written before
            tail=data.get("tail", 0),
        )
