"""Simulated LLM API traffic in the contract formats, optionally with labelled incidents.

``iter_events`` yields ``("usage" | "errors", event)`` in event-time order (benchmarks);
``simulate`` writes ``usage.jsonl.gz``, ``errors.jsonl.gz``, ``customers.jsonl`` and, with
incidents, ``truth.json``: the labels an evaluation scores alerts against. Everything
follows from the seed, so the same :class:`SimConfig` writes byte-identical files.

The traffic is what a gateway sees from a fleet of LLM products: heavy-tailed customers,
a diurnal (peak 15:00 UTC, 2.5x the trough) and weekly (weekends 0.7x) cycle, Poisson
arrivals, lognormal token counts, prompt caching on Anthropic, ~1.5 % failed attempts of
which ~70 % are retried, a few producer duplicates and mixed timestamp formats. Incidents
(runaway loop, model switch, retry loop, provider outage) start on the last day after a
full day of history; plan overgrowth runs from the start.

>>> round(float(diurnal(15.0) / diurnal(3.0)), 2), weekly(START.timestamp() + 5.5 * 86_400)
(2.5, 0.7)
>>> kind, event = next(iter_events(SimConfig(days=0.01, customers=3, rate_per_min=20)))
>>> kind, event["customer_id"][:4], event["attempt"]
('usage', 'cus_', 1)
"""

from stream.offline.simulate.traffic import iter_events
from stream.offline.simulate.world import (
    DEFAULT_PRICES,
    START,
    SimConfig,
    diurnal,
    weekly,
)
from stream.offline.simulate.writing import SimSummary, simulate

__all__ = [
    "DEFAULT_PRICES",
    "START",
    "SimConfig",
    "SimSummary",
    "diurnal",
    "iter_events",
    "simulate",
    "weekly",
]
