"""Labelled plain metric series (no USD) and the detectors scored on them.

Each series is one anomaly type (spike, drop, level shift, variance change, gap) at one
step (1 min, 5 min, 15 min, 1 h), two anomalies of that type after the probation, each
with a NAB window of 10 % of the series' length over 2, centred on its onset. Levels are
drawn log-uniformly between 0.1 and 1000 per step (metrics come at any scale), with a
daily cycle of 20-50 % and 5-20 % noise. Sizes: spikes 2-5x for 1, 3 or 10 steps; drops to
0-40 % for 3, 10 or 30 steps; level shifts up 1.5-3x or down to 30-65 %, lasting; variance
4-8x the noise for 30-150 steps; gaps of 5, 30 or 120 steps without rows.

Detectors (by name in :data:`DETECTORS`) return detection times: the end of the step whose
value made them decide, when an on-call would know.

- ``spendwatch``: ``spendwatch replay --series``'s path (``read_series`` on the CSV, then
  ``replay_series`` with its defaults and the config's settings); a firing counts at the
  end of the step whose update returned it.
- ``windowed_gaussian``: |z| > 4 against the previous day of values (48 to 1,440 of them).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.detection import nab
from detectors import spend_spike
from detectors.decision import Decision
from detectors.spend_spike import SpendSpikeParams, SpendSpikeState
from stream.core.alerts import rfc3339
from stream.offline.replay import read_series, replay_series
from stream.offline.simulate import START
from stream.settings import Settings

TYPES = ("spike", "drop", "level_shift", "variance", "gap")
STEPS_S = (60, 300, 900, 3600)
SPAN_DAYS = {60: 7, 300: 14, 900: 28, 3600: 90}
ANOMALIES = 2  # per series
WINDOW_SHARE = 0.10  # of a series' length, shared by its anomalies (NAB)
GAUSSIAN_Z = 4.0
SERIES_KEY = "bench"
LEVEL_BANDS = ("level_under_10", "level_10_and_over")
PARTS = ("all", *(f"type:{t}" for t in TYPES), *(f"step:{s}s" for s in STEPS_S), *LEVEL_BANDS)


@dataclass(frozen=True)
class LabelledSeries:
    name: str
    kind: str  # one of TYPES
    step_s: int
    times: list[float]  # epoch s, bucket starts, rows present only
    values: list[float]
    windows: list[tuple[float, float]]  # epoch s
    t_first: float
    t_last: float
    level: float


def make_series(kind: str, step_s: int, seed: int) -> LabelledSeries:
    """One labelled series of ``kind`` at ``step_s``, drawn from ``seed``."""
    rng = np.random.default_rng([seed, TYPES.index(kind), step_s])
    n = SPAN_DAYS[step_s] * 86_400 // step_s
    t0 = START.timestamp()
    times = t0 + step_s * np.arange(n)
    level = 10 ** rng.uniform(-1, 3)
    hours = (times / 3600) % 24
    cycle = 1 + rng.uniform(0.2, 0.5) * np.cos(2 * np.pi * (hours - rng.uniform(0, 24)) / 24)
    noise_cv = rng.uniform(0.05, 0.2)
    noise = rng.standard_normal(n)
    values = level * cycle * (1 + noise_cv * noise)
    window = int(WINDOW_SHARE * n / ANOMALIES)
    first = int(nab.PROBATION * n) + window // 2
    part = (n - window // 2 - first) // ANOMALIES
    onsets = [first + k * part + int(rng.integers(0, part // 2)) for k in range(ANOMALIES)]
    keep = np.ones(n, dtype=bool)
    for onset in onsets:
        _inject(rng, kind, values, keep, onset, level * cycle, noise_cv)
    values = np.maximum(values, 0.0)
    windows = [
        (float(times[o - window // 2]), float(times[min(o + window // 2, n - 1)])) for o in onsets
    ]
    return LabelledSeries(
        f"{kind}-{step_s}s-{seed}",
        kind,
        step_s,
        times[keep].tolist(),
        values[keep].tolist(),
        windows,
        float(times[0]),
        float(times[-1] + step_s),
        float(level),
    )


def _inject(
    rng: np.random.Generator,
    kind: str,
    values: np.ndarray,
    keep: np.ndarray,
    onset: int,
    expected: np.ndarray,
    noise_cv: float,
) -> None:
    if kind == "spike":
        width = int(rng.choice([1, 3, 10]))
        values[onset : onset + width] *= rng.uniform(2, 5)
    elif kind == "drop":
        width = int(rng.choice([3, 10, 30]))
        values[onset : onset + width] *= rng.uniform(0, 0.4)
    elif kind == "level_shift":
        values[onset:] *= rng.uniform(1.5, 3) if rng.random() < 0.5 else rng.uniform(0.3, 0.65)
    elif kind == "variance":
        width = int(rng.integers(30, 151))
        extra = noise_cv * rng.uniform(4, 8) * rng.standard_normal(width)
        end = min(onset + width, len(values))
        values[onset:end] += expected[onset:end] * extra[: end - onset]
    else:  # gap
        keep[onset : onset + int(rng.choice([5, 30, 120]))] = False


def write_csv(series: LabelledSeries, path: Path) -> Path:
    """The series as ``timestamp,value`` rows with a header, as a metric export writes."""
    rows = ["timestamp,value"]
    rows += [f"{rfc3339(t)},{v!r}" for t, v in zip(series.times, series.values, strict=True)]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def spendwatch_detections(series: LabelledSeries, csv: Path, settings: Settings) -> list[float]:
    """Firings of ``spendwatch replay --series`` on the CSV (``read_series``, then
    ``replay_series`` with its defaults), each at the end of the step whose update
    returned it."""
    read = read_series(csv)
    with _decision_times() as ends:
        alerts = replay_series(read, settings, SERIES_KEY)
    if len(ends) != len(alerts):
        raise RuntimeError(
            f"replay_series returned {len(alerts)} alerts from {len(ends)} spend_spike"
            " decisions: it no longer judges through spend_spike.update; update"
            " bench/detection/series.py"
        )
    return [end for alert, end in zip(alerts, ends, strict=True) if alert.status == "firing"]


@contextmanager
def _decision_times() -> Iterator[list[float]]:
    """While open, ``spend_spike.update`` notes the end of the step of each decision it
    returns (epoch s): when the series path knew. The bench process only, restored after."""
    original = spend_spike.update
    ends: list[float] = []

    def update(
        state: SpendSpikeState, t: float, width: float, spend: float, params: SpendSpikeParams
    ) -> list[Decision]:
        decisions = list(original(state, t, width, spend, params))
        ends.extend([t + width] * len(decisions))
        return decisions

    spend_spike.update = update
    try:
        yield ends
    finally:
        spend_spike.update = original


def gaussian_detections(series: LabelledSeries, csv: Path, settings: Settings) -> list[float]:
    """The windowed-Gaussian baseline over the rows present, window one day of steps."""
    window = min(1440, max(48, 86_400 // series.step_s))
    found = nab.windowed_gaussian(series.values, window, GAUSSIAN_Z)
    return [series.times[i] + series.step_s for i in found]


DETECTORS: dict[str, Callable[[LabelledSeries, Path, Settings], list[float]]] = {
    "spendwatch": spendwatch_detections,
    "windowed_gaussian": gaussian_detections,
}


def corpus(per_cell: int) -> list[tuple[str, int, int]]:
    """(kind, step, seed) of every series: ``per_cell`` of each kind at each step."""
    return [(k, s, seed) for k in TYPES for s in STEPS_S for seed in range(1, per_cell + 1)]


def level_band(series: LabelledSeries) -> str:
    """Whether a step's value is under 10 (small counts, sub-dollar spend) or not."""
    return LEVEL_BANDS[0] if series.level < 10 else LEVEL_BANDS[1]


def score_series(per_cell: int, settings: Settings) -> dict[str, Any]:
    """NAB scores of every detector in :data:`DETECTORS` on the corpus: overall, by
    anomaly type, by step and by level band; and the first detector's over the second's."""
    totals: dict[str, dict[str, nab.NabScore]] = {name: {} for name in DETECTORS}
    with tempfile.TemporaryDirectory(prefix="bench-series-") as tmp:
        for kind, step, seed in corpus(per_cell):
            series = make_series(kind, step, seed)
            csv = write_csv(series, Path(tmp) / f"{series.name}.csv")
            for name, detect in DETECTORS.items():
                found = nab.score(
                    detect(series, csv, settings), series.windows, series.t_first, series.t_last
                )
                for part in ("all", f"type:{kind}", f"step:{step}s", level_band(series)):
                    mine = totals[name]
                    mine[part] = mine.get(part, nab.NabScore()) + found
    out: dict[str, Any] = {
        "series": len(corpus(per_cell)),
        "profile": {
            "a_tp": nab.A_TP,
            "a_fp": nab.A_FP,
            "a_fn": nab.A_FN,
            "probation": nab.PROBATION,
        },
        "detectors": {
            name: {part: _figures(parts[part]) for part in PARTS if part in parts}
            for name, parts in totals.items()
        },
    }
    first, second = list(DETECTORS)[:2]
    a, b = (out["detectors"][n]["all"]["score"] for n in (first, second))
    out["ratio"] = {"of": first, "over": second, "value": a / b if b and b > 0 else None}
    return out


def _figures(s: nab.NabScore) -> dict[str, Any]:
    normalized = s.normalized
    return {
        "score": None if normalized is None else max(0.0, normalized),
        "score_unclipped": normalized,
        "raw": s.raw,
        "windows": s.windows,
        "windows_detected": s.detected,
        "window_recall": s.detected / s.windows if s.windows else None,
        "false_positives": s.false_positives,
    }
