"""Synthetic per-minute series for detector tests: seasonal, noisy, seeded."""

from __future__ import annotations

import math

import numpy as np

MINUTE = 60.0
DAY_MINUTES = 1440
START = 1_793_577_600.0  # 2026-11-02T00:00:00Z, a Monday


def daily_factor(t: float, peak_to_trough: float = 2.5) -> float:
    """Smooth diurnal curve, peak at 15:00 UTC, mean about 1."""
    phase = 2 * math.pi * ((t % 86_400) / 86_400 - 15 / 24)
    amplitude = (peak_to_trough - 1) / (peak_to_trough + 1)
    return 1 + amplitude * math.cos(phase)


def spend_series(
    days: float,
    seed: int,
    requests_per_min: float = 20.0,
    usd_per_request: float = 0.004,
    peak_to_trough: float = 2.5,
    spikes: tuple[tuple[int, int, float], ...] = (),
) -> list[tuple[float, float]]:
    """(bucket start, USD) per minute: Poisson requests x lognormal cost per request.

    ``spikes`` are (start minute, length in minutes, rate multiplier).
    """
    rng = np.random.default_rng(seed)
    out = []
    for minute in range(int(days * DAY_MINUTES)):
        t = START + minute * MINUTE
        rate = requests_per_min * daily_factor(t, peak_to_trough)
        for start, length, factor in spikes:
            if start <= minute < start + length:
                rate *= factor
        n = rng.poisson(rate)
        cost = float(rng.lognormal(math.log(usd_per_request), 0.8, size=n).sum()) if n else 0.0
        out.append((t, cost))
    return out
