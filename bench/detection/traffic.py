"""Simulated traffic through an alert source: simulate() to files, then replay them.

The default source, ``pipeline``, is what ``spendwatch replay`` runs: ingest, buckets and
every detector the config enables. Each firing is kept with the event time at which it
came out (the watermark when the pipeline returned it), which is later than its
``startsAt`` (the first bad bucket): delays are measured to when an on-call could know.
Sources are looked up by name in :data:`SOURCES`; a detector that is not in the pipeline
yet can be scored by adding one function here, and the scorer needs no change.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from stream.core.alerts import Alert
from stream.core.customers import load_customers
from stream.core.events import EventRecord
from stream.core.pipeline import Pipeline
from stream.core.pricing import PriceTable
from stream.offline.replay import replay_files
from stream.offline.simulate import START, SimConfig, simulate
from stream.offline.simulate.world import build_world
from stream.settings import Settings, load_settings


@dataclass(frozen=True)
class RunSpec:
    """One simulated run: an incident run (``incident_kinds``) or a clean one."""

    name: str
    seed: int
    days: float
    customers: int
    rate_per_min: float
    start_day: float = 0.0  # days after START (a Monday)
    incident_kinds: tuple[str, ...] = ()
    incident_sizes: tuple[tuple[str, tuple[float, ...]], ...] = ()  # () the catalog's
    bursts: float = 0.0
    sparse_share: float = 0.0

    @property
    def clean(self) -> bool:
        return not self.incident_kinds

    def sim_config(self) -> SimConfig:
        return SimConfig(
            days=self.days,
            customers=self.customers,
            seed=self.seed,
            rate_per_min=self.rate_per_min,
            start=START + timedelta(days=self.start_day),
            incident_kinds=self.incident_kinds,
            incident_sizes=dict(self.incident_sizes) or None,
            bursts=self.bursts,
            sparse_share=self.sparse_share,
        )


@dataclass(frozen=True)
class Firing:
    """One firing transition: what it is about, when it says it started, when it came out."""

    alertname: str
    key: dict[str, str]  # customer_id / endpoint / provider / model, as labelled
    severity: str
    starts_at: float  # epoch s, event time of the first bad bucket
    emitted_at: float  # epoch s, event time at which the source returned it


@dataclass
class RunResult:
    spec: RunSpec
    truth: dict[str, Any]
    firings: list[Firing]
    keys: dict[str, int]  # keys the detectors judge, by kind
    events: int
    seconds: float  # wall time to simulate and replay
    cpu_seconds: float  # this process's CPU time for it
    sources: list[str] = field(default_factory=list)


KEY_LABELS = ("customer_id", "endpoint", "provider", "model")


class TimedPipeline(Pipeline):
    """The pipeline, noting the event time (watermark) at which each alert came out."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.emitted_at: list[float] = []

    def add(self, kind: str, event: EventRecord, raw: bytes = b"") -> list[Alert]:
        alerts = super().add(kind, event, raw)
        if alerts:
            self.emitted_at += [self.buckets.watermark] * len(alerts)
        return alerts

    def flush(self) -> list[Alert]:
        alerts = super().flush()
        self.emitted_at += [self.buckets.watermark] * len(alerts)
        return alerts


def replay_pipeline(outdir: Path, settings: Settings) -> tuple[list[Firing], int]:
    """Firings of the whole pipeline over a simulated run's files, and lines read."""
    prices = PriceTable.load(settings.resolve(settings.prices_file))
    pipeline = TimedPipeline(settings, prices, load_customers(outdir / "customers.jsonl"))
    report = replay_files(
        pipeline, [outdir / "usage.jsonl.gz"], [outdir / "errors.jsonl.gz"], progress=False
    )
    if len(pipeline.emitted_at) != len(report.alerts):
        raise RuntimeError("alerts came out of the pipeline by a path TimedPipeline misses")
    firings = [
        Firing(
            alert.labels["alertname"],
            {k: alert.labels[k] for k in KEY_LABELS if k in alert.labels},
            alert.labels["severity"],
            alert.starts_at,
            at,
        )
        for alert, at in zip(report.alerts, pipeline.emitted_at, strict=True)
        if alert.status == "firing"
    ]
    return firings, report.lines


# name -> (run's directory, settings) -> (firings, lines read). Add a source here to score
# a detector that the pipeline does not run yet; its firings need only carry alertname.
SOURCES: dict[str, Callable[[Path, Settings], tuple[list[Firing], int]]] = {
    "pipeline": replay_pipeline,
}


def judged_keys(cfg: SimConfig, prices: PriceTable) -> dict[str, int]:
    """How many keys the detectors judge in a run: customers, (customer, endpoint) pairs
    and (provider, model) pairs, from the simulated world."""
    world = build_world(cfg, prices)
    return {
        "customer": len(world.customers),
        "endpoint": len(world.endpoints),
        "provider_model": len({ep.model for ep in world.endpoints}),
    }


def run_traffic(
    spec: RunSpec, config: Path | None, sources: tuple[str, ...] = ("pipeline",)
) -> RunResult:
    """Simulate ``spec`` into a temporary directory and replay it through ``sources``."""
    settings = load_settings(config)
    started, cpu = time.perf_counter(), time.process_time()
    cfg = spec.sim_config()
    with tempfile.TemporaryDirectory(prefix="bench-detection-") as tmp:
        outdir = Path(tmp)
        simulate(outdir, cfg)
        truth = json.loads((outdir / "truth.json").read_text())
        firings: list[Firing] = []
        events = 0
        for name in sources:
            found, events = SOURCES[name](outdir, settings)
            firings += found
    prices = PriceTable.load(settings.resolve(settings.prices_file))
    return RunResult(
        spec,
        truth,
        sorted(
            firings, key=lambda f: (f.emitted_at, f.starts_at, f.alertname, sorted(f.key.items()))
        ),
        judged_keys(cfg, prices),
        events,
        time.perf_counter() - started,
        time.process_time() - cpu,
        list(sources),
    )


def epoch(stamp: str) -> float:
    """RFC 3339 (as truth.json writes it) to epoch seconds."""
    return datetime.fromisoformat(stamp).timestamp()
