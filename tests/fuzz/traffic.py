"""A small fixed traffic that fires alerts, and the two paths from raw lines to alerts.

Four hours of three customers on openai/gpt-4o from T0, 12 calls a minute: acme's chat
spends 8x for 30 minutes (spend_spike, per customer and per endpoint), beta's search
retries rate limits for 15 minutes (retry_storm) and every customer's calls fail for 10
minutes (retry storms, and the provider's). :func:`replay` runs lines through file
replay; :class:`Worker` through the worker's stages as the intake wires them, no Kafka.
"""

from __future__ import annotations

import functools
import gzip
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from stream.core.alerts import Alert, build_alert
from stream.core.detect import Keyed
from stream.core.ingest import ERRORS, USAGE, DeadLetter, IngestStats
from stream.core.pipeline import Pipeline
from stream.core.pricing import PriceTable
from stream.kafka.stages import (
    GlobalStage,
    IngestStage,
    PartitionDetect,
    Priced,
    decode_bundle,
    encode_bundle,
)
from stream.kafka.state import CustomerStates
from stream.offline.replay import ReplayReport, replay_files
from stream.settings import CONFIG_DIR, Settings
from tests.fuzz.contract import NOW, T0

# Baselines warm up in an hour instead of a day, so four hours of traffic can spike.
SETTINGS = Settings(detectors={"spend_spike": {"warmup_s": 3600}})
PRICES = PriceTable.load(CONFIG_DIR / "prices.yaml")
MINUTES = int((NOW - T0) // 60)

AlertId = tuple[str, str, float, float | None]  # fingerprint, status, startsAt, endsAt


@functools.cache
def traffic() -> tuple[tuple[str, bytes], ...]:
    """The clean traffic as (kind, line) in event-time order; lines have no newline."""
    lines: list[tuple[str, bytes]] = []
    n = 0
    for minute in range(MINUTES):
        for customer, endpoint in (("acme", "chat"), ("beta", "search"), ("gamma", "chat")):
            per_minute = 32 if customer == "acme" and 150 <= minute < 180 else 4
            for k in range(per_minute):
                n += 1
                event = {
                    "event_id": f"ev-{n}",
                    "ts": round(T0 + minute * 60 + (k + 0.5) * 60 / per_minute, 3),
                    "customer_id": customer,
                    "endpoint": endpoint,
                    "provider": "openai",
                    "model": "gpt-4o",
                    "input_tokens": 2000,
                    "output_tokens": 500,
                }
                if customer == "beta" and 190 <= minute < 205 and k % 2:
                    event.update(error_type="rate_limited", attempt=2)
                elif 215 <= minute < 225 and k % 4:
                    event.update(error_type="server_error", attempt=1 + k % 2)
                lines.append((ERRORS if "error_type" in event else USAGE, orjson.dumps(event)))
    return tuple(lines)


def identify(alerts: Iterable[Alert]) -> list[AlertId]:
    return [(a.fingerprint, a.status, a.starts_at, a.ends_at) for a in alerts]


# -- file replay ----------------------------------------------------------------------------


@dataclass
class Replayed:
    """What one replay fired and counted."""

    report: ReplayReport
    stats: IngestStats
    dead: list[DeadLetter]

    @property
    def alerts(self) -> list[AlertId]:
        return identify(self.report.alerts)


def write_lines(path: Path, lines: Iterable[bytes], newline: bytes = b"\n") -> bytes:
    """Write ``lines`` (gzipped for a .gz path); returns the uncompressed content."""
    content = b"".join(line + newline for line in lines)
    path.write_bytes(gzip.compress(content, mtime=0) if path.suffix == ".gz" else content)
    return content


def replay(usage: Path, errors: Path) -> Replayed:
    """Replay the two files through a fresh pipeline."""
    dead: list[DeadLetter] = []
    pipeline = Pipeline(SETTINGS, PRICES, {}, on_dead_letter=dead.append)
    report = replay_files(pipeline, [usage], [errors], progress=False)
    return Replayed(report, pipeline.ingest.stats, dead)


# -- the worker -----------------------------------------------------------------------------


@dataclass
class Worker:
    """The worker's per-message path without Kafka, as stream.kafka.intake wires it.

    Each batch: every message through ``IngestStage.handle`` (usage:0 first, then
    errors:0, as a fetch hands them over), the accepted ones as one bundle with each
    source's newest event time, through ``encode_bundle``/``decode_bundle`` into one
    detect partition, whose closed buckets go on to the global stage. The ingest clock is
    NOW (just after the traffic); the detect clock moves a second per batch.
    """

    stage: IngestStage = field(init=False)
    detect: PartitionDetect = field(init=False)
    global_: GlobalStage = field(init=False)
    now: float = 0.0
    offsets: Counter[str] = field(default_factory=Counter)
    accepted: int = 0
    letters: list[DeadLetter] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.stage = ingest_stage()
        self.detect = PartitionDetect(SETTINGS, {}.get, CustomerStates({}), 0, 1, self.clock)
        self.global_ = GlobalStage(SETTINGS, 1, self.clock)

    def clock(self) -> float:
        return self.now

    def batch(self, messages: Sequence[tuple[str, bytes]]) -> None:
        """One fetched batch of (kind, raw) messages, handled as the intake does."""
        events = []
        marks: dict[str, float] = {}
        for kind in (USAGE, ERRORS):
            source = f"{kind}:0"
            newest = 0.0
            for raw in (raw for k, raw in messages if k == kind):
                offset = self.offsets[source]
                self.offsets[source] += 1
                result = self.stage.handle(kind, raw, source, offset)
                if isinstance(result, DeadLetter):
                    self.letters.append(result)
                    continue
                self.accepted += 1
                events.append(result)
                newest = max(newest, result.ts)
            if newest:
                marks[source] = newest
        if events or marks:
            bundle = encode_bundle(events, marks)
            assert decode_bundle(bundle) == (events, marks)  # the wire keeps every field
            count, _, _ = self.detect.add_bundle(bundle)
            assert count == len(events)
        self.close_due()
        self.now += 1.0

    def close_due(self) -> None:
        keyed: list[Keyed]
        keyed, rollups = self.detect.close_due()
        keyed += self.global_.add(0, self.detect.complete_upto(), rollups)
        runbook, external = SETTINGS.alerts.runbook_url, SETTINGS.alerts.external_url
        self.alerts += [build_alert(k.key, k.decision, runbook, external) for k in keyed]

    def run(self, lines: Sequence[tuple[str, bytes, bool]], per_batch: int = 64) -> Worker:
        """Feed (kind, raw, good) lines in batches of ``per_batch`` good ones (a batch
        keeps the bad lines that came before its last good one), then let every source
        go idle so the last buckets close."""
        batch: list[tuple[str, bytes]] = []
        good = 0
        for kind, raw, is_good in lines:
            batch.append((kind, raw))
            good += is_good
            if good == per_batch:
                self.batch(batch)
                batch, good = [], 0
        self.batch(batch)
        self.now += SETTINGS.worker.source_idle_s + 1
        self.close_due()
        return self


def ingest_stage() -> IngestStage:
    """The worker's ingest stage with its wall clock at NOW."""
    stage = IngestStage(SETTINGS, PRICES)
    stage.ingest.clock = lambda: NOW
    return stage


# A valid event of each kind, as (name, value) pairs for tests.fuzz.strategies.encode.
GOOD = {
    USAGE: [
        ("event_id", "ev-1"),
        ("ts", T0 + 60),
        ("customer_id", "acme"),
        ("endpoint", "chat"),
        ("provider", "openai"),
        ("model", "gpt-4o"),
        ("input_tokens", 2000),
    ],
}
GOOD[ERRORS] = [*GOOD[USAGE], ("error_type", "timeout")]


def handle(raw: bytes, kind: str = USAGE) -> Priced | DeadLetter:
    """One message through a fresh ingest stage."""
    return ingest_stage().handle(kind, raw, f"{kind}:0", 0)
