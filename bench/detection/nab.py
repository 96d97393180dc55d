"""NAB-style scoring of detections on labelled series, and the windowed-Gaussian baseline.

As the Numenta Anomaly Benchmark scores (standard profile): each anomaly has a window;
the earliest detection inside a window is a true positive worth ``A_TP * sigma(y)``, where
``y = (t - window_end) / window_length`` runs from -1 at the window's start to 0 at its
end and ``sigma(y) = 2 / (1 + exp(5 y)) - 1`` (about 0.987 at the start, 0 at the end);
later detections in the same window count for nothing. A detection outside every window
costs ``A_FP * sigma(y)`` with ``y`` measured past the end of the window before it (a
detection just after a window costs little, one far from it the full ``A_FP``), or the
full ``A_FP`` before the first window. A window without a detection costs ``A_FN``.
Detections in the first 15 % of a series (probation) are not scored. The score is
normalised over all series: ``(raw - null) / (perfect - null)``, where ``null`` never
detects and ``perfect`` detects each window at its start: 1 is perfect, 0 is no better
than silence, below 0 worse than silence.

>>> s = score([1.0, 25.0, 45.0, 80.0], [(20.0, 30.0)], 0.0, 100.0)
>>> round(s.tp, 4), round(s.fp, 4), s.fn, s.detected
(0.8483, -0.2199, 0.0, 1)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

A_TP, A_FP, A_FN = 1.0, 0.11, 1.0  # NAB's standard profile
PROBATION = 0.15


def sigma(y: float) -> float:
    """NAB's scaled sigmoid: ~0.987 at y = -1, 0 at y = 0, towards -1 for large y."""
    return 2.0 / (1.0 + math.exp(min(5.0 * y, 700.0))) - 1.0


@dataclass
class NabScore:
    """Sums over one or more series (add them with ``+``)."""

    tp: float = 0.0  # sum of true-positive rewards
    fp: float = 0.0  # sum of false-positive costs (negative)
    fn: float = 0.0  # sum of missed-window costs (negative)
    windows: int = 0
    detected: int = 0
    false_positives: int = 0

    @property
    def raw(self) -> float:
        return self.tp + self.fp + self.fn

    @property
    def null(self) -> float:
        return -A_FN * self.windows

    @property
    def perfect(self) -> float:
        return A_TP * sigma(-1.0) * self.windows

    @property
    def normalized(self) -> float | None:
        """(raw - null) / (perfect - null): 1 perfect, 0 silence, < 0 worse than silence."""
        span = self.perfect - self.null
        return (self.raw - self.null) / span if span else None

    def __add__(self, other: NabScore) -> NabScore:
        return NabScore(
            self.tp + other.tp,
            self.fp + other.fp,
            self.fn + other.fn,
            self.windows + other.windows,
            self.detected + other.detected,
            self.false_positives + other.false_positives,
        )


def score(
    detections: Sequence[float],
    windows: Sequence[tuple[float, float]],
    t_first: float,
    t_last: float,
    probation: float = PROBATION,
) -> NabScore:
    """Score detection times (epoch s) against ``windows`` ([start, end], sorted, apart)
    on a series spanning [t_first, t_last]; the first ``probation`` of it is not scored."""
    scored_from = t_first + probation * (t_last - t_first)
    hit = [False] * len(windows)
    out = NabScore(windows=len(windows))
    for t in sorted(d for d in detections if d >= scored_from):
        inside = next((i for i, (lo, hi) in enumerate(windows) if lo <= t <= hi), None)
        if inside is not None:
            if not hit[inside]:
                lo, hi = windows[inside]
                hit[inside] = True
                out.tp += A_TP * sigma((t - hi) / (hi - lo))
            continue
        before = [(lo, hi) for lo, hi in windows if hi < t]
        out.false_positives += 1
        if before:
            lo, hi = before[-1]
            out.fp += A_FP * sigma((t - hi) / (hi - lo))
        else:
            out.fp -= A_FP
    out.detected = sum(hit)
    out.fn = A_FN * (out.detected - len(windows))
    return out


def windowed_gaussian(
    values: Sequence[float], window: int, threshold: float, min_points: int = 30
) -> list[int]:
    """Indexes where a run of |z| > ``threshold`` starts, z against the mean and standard
    deviation of the previous ``window`` values (at least ``min_points`` of them).

    One detection per run of flagged points: kinder to the baseline than flagging every
    point, since NAB charges each detection outside a window.

    >>> windowed_gaussian([1.0, 2.0] * 20 + [9.0, 9.0, 1.0, 2.0], window=40, threshold=4.0)
    [40]
    """
    x = np.asarray(values, dtype=float)
    n = len(x)
    sums = np.concatenate(([0.0], np.cumsum(x)))
    squares = np.concatenate(([0.0], np.cumsum(x * x)))
    idx = np.arange(n)
    lo = np.maximum(idx - window, 0)
    count = idx - lo
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (sums[idx] - sums[lo]) / count
        var = (squares[idx] - squares[lo]) / count - mean * mean
        z = np.abs(x - mean) / np.sqrt(np.maximum(var, 0.0))
    flagged = (count >= min_points) & (var > 0) & (z > threshold)
    starts = flagged & ~np.concatenate(([False], flagged[:-1]))
    return np.flatnonzero(starts).tolist()
