"""The last few judged values per key, for the ``recent`` alert annotation (a sparkline).

Kept beside the detectors rather than in their state: it explains an alert and never
decides one, so it stays out of the changelogged per-key records (no state version
change, nothing added to each customer's record). After a worker restart or a partition
move a key's series starts afresh, and its first alerts show fewer points.
Memory: one array of 13 doubles per key (about 170 bytes).

>>> r = RecentSeries(size=4)
>>> for index, value in [(10, 1.0), (11, 2.0), (13, 4.0)]:   # bucket 12 had no data
...     r.push("acme", index, value)
>>> r.text("acme")
'1,2,0,4'
>>> for index in range(14, 20):
...     r.push("acme", index, 0.125)
>>> r.text("acme"), r.text("nobody")
('0.125,0.125,0.125,0.125', '')
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Hashable

SIZE = 12


class RecentSeries:
    """Per key a ring of the last ``size`` bucket values; skipped buckets count as 0."""

    def __init__(self, size: int = SIZE) -> None:
        self.size = size
        self.rings: dict[Hashable, array] = {}  # [last index, value per slot ...]

    def push(self, key: Hashable, index: int, value: float) -> None:
        """Record ``value`` for bucket ``index``; buckets must come in order."""
        ring = self.rings.get(key)
        size = self.size
        if ring is None:
            ring = self.rings[key] = array("d", [index - 1.0] + [math.nan] * size)
        last = int(ring[0])
        if index <= last:
            return
        for skipped in range(max(last + 1, index - size + 1), index):
            ring[1 + skipped % size] = 0.0
        ring[1 + index % size] = value
        ring[0] = index

    def values(self, key: Hashable) -> list[float]:
        """Oldest first; buckets before the key was first seen are left out."""
        ring = self.rings.get(key)
        if ring is None:
            return []
        last, size = int(ring[0]), self.size
        out = [ring[1 + i % size] for i in range(last - size + 1, last + 1)]
        return [v for v in out if not math.isnan(v)]

    def text(self, key: Hashable) -> str:
        return ",".join(f"{v:.4g}" for v in self.values(key))
