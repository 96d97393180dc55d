"""The worker's three stages as plain objects (no Kafka in here; stream.worker wires them).

- :class:`IngestStage`: raw message -> a priced event for the events topic (keyed by
  customer), or a dead letter.
- :class:`PartitionDetect`: one detect partition: applies priced events once (source
  offsets and event ids), buckets them, runs the per-customer detectors as buckets close,
  and hands per-bucket provider/model rollups on.
- :class:`GlobalStage`: merges the partitions' rollups per bucket and runs the
  cross-customer retry storm detector once a bucket is complete.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from detectors.retry_storm import RetryStormState
from stream.detect import Buckets, CustomerDetection, GlobalDetection, Keyed, Rollup, merge_rollups
from stream.events import Customer, ErrorEvent, UsageEvent
from stream.ingest import DeadLetter, DedupWindow, Ingest
from stream.pricing import PriceTable
from stream.settings import Settings
from stream.state import CustomerStates, partition_key


@dataclass(slots=True)
class Priced:
    """A validated, priced event as it travels on the internal events topic."""

    kind: str
    event_id: str
    ts: float
    customer_id: str
    endpoint: str
    provider: str
    model: str
    attempt: int
    failed: bool
    rate_limited: bool
    cost: float
    source: str  # "topic:partition" it was ingested from
    offset: int  # its offset there

    def encode(self) -> bytes:
        return orjson.dumps([getattr(self, name) for name in self.__slots__])

    @classmethod
    def decode(cls, raw: bytes) -> Priced:
        return cls(*orjson.loads(raw))


class IngestStage:
    """Validate and price raw messages; no de-duplication here (see PartitionDetect)."""

    def __init__(self, settings: Settings, prices: PriceTable) -> None:
        self.ingest = Ingest(settings.ingest, prices, dedup=False, clock=time.time)

    def handle(self, kind: str, raw: bytes, source: str, offset: int) -> Priced | DeadLetter:
        event = self.ingest.parse(kind, raw)
        if isinstance(event, DeadLetter):
            return event
        cost = self.ingest.admit(kind, event, raw)
        if isinstance(cost, DeadLetter):
            return cost
        assert cost is not None  # without de-duplication nothing is dropped here
        return priced(kind, event, cost, source, offset)


def priced(
    kind: str, event: UsageEvent | ErrorEvent, cost: float, source: str, offset: int
) -> Priced:
    return Priced(
        kind,
        event.event_id,
        event.ts,
        event.customer_id,
        event.endpoint,
        event.provider,
        event.model,
        event.attempt,
        event.failed,
        event.rate_limited,
        cost,
        source,
        offset,
    )


class SourceClock:
    """The watermark of a merged stream: the slowest active source's newest event time.

    Events reach a detect partition from many source partitions (usage and errors topics),
    which a consumer catching up on a backlog reads at different speeds. Closing buckets
    on the newest event time of any source would make the slower sources' events late; so
    the watermark is the minimum over sources of their newest event time, leaving out
    sources idle for ``idle_s`` of wall time (a source that has stopped must not hold
    every alert back). ``clock`` is injected so tests control time.
    """

    def __init__(self, idle_s: float, clock: Callable[[], float]) -> None:
        self.idle_s = idle_s
        self.clock = clock
        self.newest: dict[str, float] = {}
        self.seen: dict[str, float] = {}

    def expect(self, sources: list[str]) -> None:
        """Sources known to exist but not seen yet hold the watermark until they go idle:
        a consumer catching up may read one topic's backlog well after another's."""
        now = self.clock()
        for source in sources:
            if source not in self.newest:
                self.newest[source] = 0.0
                self.seen[source] = now

    def observe(self, source: str, ts: float) -> None:
        if ts > self.newest.get(source, 0.0):
            self.newest[source] = ts
        self.seen[source] = self.clock()

    def watermark(self) -> float | None:
        if not self.newest:
            return None
        now = self.clock()
        active = [t for s, t in self.newest.items() if now - self.seen[s] < self.idle_s]
        return min(active) if active else max(self.newest.values())


class PartitionDetect:
    """Per-customer detection for one partition of the events topic."""

    def __init__(
        self,
        settings: Settings,
        customers: Callable[[str], Customer | None],
        states: CustomerStates,
        partition: int,
        partitions: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.states = states
        self.clock = SourceClock(settings.worker.source_idle_s, clock)
        self.key = partition_key(partition, partitions)
        self.buckets = Buckets(settings.buckets.width_s, settings.buckets.allowed_lateness_s)
        self.detection = CustomerDetection(settings, customers, store=states.view)
        self.dedup = DedupWindow(settings.ingest.dedup_horizon_s)
        self.sources: dict[str, int] = {}
        self.duplicates = 0
        self.replayed = 0

    def add(self, event: Priced) -> bool:
        """Count ``event`` unless it was applied before (re-delivery) or is a duplicate."""
        if event.offset <= self.sources.get(event.source, -1):
            self.replayed += 1
            return False
        self.sources[event.source] = event.offset
        self.clock.observe(event.source, event.ts)
        if self.dedup.seen(event.event_id, event.ts):
            self.duplicates += 1
            return False
        self.buckets.add(event, event.cost)  # type: ignore[arg-type]
        return True

    def close_due(self) -> tuple[list[Keyed], list[tuple[int, Rollup]]]:
        """Judge every bucket the watermark has passed; decisions and rollups, oldest first."""
        keyed: list[Keyed] = []
        rollups: list[tuple[int, Rollup]] = []
        for index in self.buckets.closable(self.clock.watermark()):
            decisions, rollup = self.detection.close(index, self.buckets.pop(index))
            keyed += decisions
            rollups.append((index, rollup))
        return keyed, rollups

    def snapshot(self) -> bytes:
        """This partition's own record: open buckets, watermark, applied source offsets."""
        buckets = self.buckets
        return orjson.dumps(
            {
                "open": {
                    str(index): [[*key, *row] for key, row in rows.items()]
                    for index, rows in buckets.open.items()
                },
                "closed_upto": buckets.closed_upto,
                "watermark": buckets.watermark,
                "sources": self.sources,
                "source_times": self.clock.newest,
            }
        )

    def restore(self, raw: bytes, active: dict[str, set[Any]]) -> None:
        """Resume from a snapshot and the open episodes found in the recovered records."""
        data = orjson.loads(raw)
        buckets = self.buckets
        buckets.open = {
            int(index): {tuple(row[:4]): row[4:] for row in rows}  # type: ignore[misc]
            for index, rows in data["open"].items()
        }
        buckets.closed_upto = data["closed_upto"]
        buckets.watermark = data["watermark"]
        self.sources = dict(data["sources"])
        for source, ts in data.get("source_times", {}).items():
            self.clock.observe(source, ts)
        self.adopt(active)

    def adopt(self, active: dict[str, set[Any]]) -> None:
        """Judge these keys every bucket (they have an open episode)."""
        for name, keys in active.items():
            self.detection.active[name] |= keys


class GlobalStage:
    """The provider/model retry storm over all partitions' rollups."""

    def __init__(self, settings: Settings, lag_buckets: int) -> None:
        self.states: dict[Any, RetryStormState] = {}
        self.detection = GlobalDetection(settings, store=lambda name: self.states)
        self.pending: dict[int, Rollup] = {}
        self.closed_upto = -(2**62)
        self.lag = lag_buckets
        self.late = 0

    def add(self, index: int, rollup: Rollup) -> list[Keyed]:
        """Merge one partition's rollup of bucket ``index``; judge buckets now complete."""
        if index <= self.closed_upto:
            self.late += 1
            return []
        merge_rollups(self.pending.setdefault(index, {}), rollup)
        newest = max(self.pending)
        keyed: list[Keyed] = []
        for due in sorted(i for i in self.pending if i <= newest - self.lag):
            keyed += self.detection.close(due, self.pending.pop(due))
            self.closed_upto = due
        return keyed

    def snapshot(self) -> bytes:
        return orjson.dumps(
            {
                "states": [[p, m, s.to_dict()] for (p, m), s in self.states.items()],
                "pending": {
                    str(i): [[p, m, *row] for (p, m), row in r.items()]
                    for i, r in self.pending.items()
                },
                "closed_upto": self.closed_upto,
            }
        )

    def restore(self, raw: bytes) -> None:
        data = orjson.loads(raw)
        self.states.clear()
        for provider, model, state in data["states"]:
            restored = RetryStormState.from_dict(state)
            self.states[(provider, model)] = restored
            if restored.episode is not None:
                self.detection.active.add((provider, model))
        self.pending = {
            int(i): {(row[0], row[1]): row[2:] for row in rows}
            for i, rows in data["pending"].items()
        }
        self.closed_upto = data["closed_upto"]


def encode_rollup(index: int, rollup: Rollup) -> bytes:
    return orjson.dumps({"i": index, "r": [[p, m, *row] for (p, m), row in rollup.items()]})


def decode_rollup(raw: bytes) -> tuple[int, Rollup]:
    data = orjson.loads(raw)
    return data["i"], {(row[0], row[1]): row[2:] for row in data["r"]}
