"""The worker's three stages as plain objects (no Kafka in here; stream.kafka.worker wires them).

- :class:`IngestStage`: raw message -> a priced event for the events topic (keyed by
  customer), or a dead letter.
- :class:`PartitionDetect`: one detect partition: applies priced events once (source
  offsets and event ids), buckets them, runs the per-customer detectors as buckets close,
  and hands per-bucket provider/model rollups on.
- :class:`GlobalStage`: merges the partitions' rollups per bucket and runs the
  cross-customer retry storm detector once a bucket is complete.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import orjson

from detectors.retry_storm import RetryStormState
from stream.core.buckets import (
    ROW_FIELDS,
    Buckets,
    Rollup,
    count_attempt,
    current_row,
    merge_rollups,
)
from stream.core.detect import CustomerDetection, GlobalDetection, Keyed
from stream.core.events import Customer, EventRecord
from stream.core.ingest import DeadLetter, DedupWindow, Ingest
from stream.core.pricing import PriceTable
from stream.kafka.state import (
    CustomerOpenRows,
    CustomerStates,
    ShiftStep,
    partition_key,
    partition_of,
)
from stream.settings import Settings


class Priced(NamedTuple):
    """A validated, priced event as it travels on the internal events topic.

    A tuple (decoding a bundle builds one per event in C, and the detect side only
    reads fields), encoded as a JSON array of the fields in this order. Fields are only
    ever added at the end, with defaults: a worker reads what an older one wrote during
    a rolling restart (the token counts of an older event read as 0)."""

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
    input_tokens: int = 0  # uncached input, as events count them
    output_tokens: int = 0
    cached_input_tokens: int = 0

    def encode(self) -> bytes:
        return orjson.dumps(tuple(self))

    @classmethod
    def decode(cls, raw: bytes) -> Priced:
        return cls(*orjson.loads(raw))


_priced = functools.partial(tuple.__new__, Priced)
PRICED_FIELDS = len(Priced._fields)
_DEFAULTS = tuple(Priced._field_defaults.values())


def _complete(events: list[Any]) -> list[Any]:
    """Events as tuples of every field: an older worker's shorter ones get the defaults."""
    if min(map(len, events), default=PRICED_FIELDS) == PRICED_FIELDS:
        return events
    return [
        (*e, *_DEFAULTS[len(e) - PRICED_FIELDS :]) if len(e) < PRICED_FIELDS else e for e in events
    ]


def encode_bundle(events: list[Priced], marks: dict[str, float]) -> bytes:
    """A batch's events for one detect partition as one message, with the batch's newest
    event time per source: a batch costs one send per partition, not one per event, and
    every partition's watermark moves with its sources even when none of the batch's
    events are its customers' (else a sparse source would hold its buckets open)."""
    return orjson.dumps({"e": list(map(tuple, events)), "m": marks})


def decode_bundle(raw: bytes) -> tuple[list[Priced], dict[str, float]]:
    data = orjson.loads(raw)
    return list(map(_priced, _complete(data["e"]))), data["m"]


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


def priced(kind: str, event: EventRecord, cost: float, source: str, offset: int) -> Priced:
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
        event.input_tokens,
        event.output_tokens,
        event.cached_input_tokens,
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
        self.partition = partition
        self.partitions = partitions
        self.key = partition_key(partition, partitions)
        self.buckets = Buckets(settings.buckets.width_s, settings.buckets.allowed_lateness_s)
        self.detection = CustomerDetection(settings, customers, store=states.view)
        self.dedup = DedupWindow(settings.ingest.dedup_horizon_s)
        self.sources: dict[str, int] = {}
        self.open_rows = CustomerOpenRows()
        self.duplicates = 0
        self.replayed = 0
        self.saved: bytes | None = None  # this partition's record as last written

    def add(self, event: Priced) -> bool:
        """Count ``event`` unless it was applied before (re-delivery) or is a duplicate."""
        replayed = self.replayed
        counted = self._apply([event])
        if self.replayed == replayed:  # its source moved on, even if it was a duplicate
            self.clock.observe(event.source, event.ts)
        return counted == 1

    def add_bundle(self, raw: bytes) -> tuple[int, int, float]:
        """Apply an encoded bundle (see :func:`encode_bundle`): its events, then its
        sources' event-time marks. Returns the events in it, how many were dropped as
        re-delivered or duplicate, and its newest mark (event time, 0.0 if none). The marks
        hold each source's newest event time of the whole batch, so they cover every event
        here: the clock moves once per source, not per event."""
        data = orjson.loads(raw)
        events, marks = _complete(data["e"]), data["m"]
        applied = self._apply(events)
        observe = self.clock.observe
        for source, ts in marks.items():
            observe(source, ts)
        return len(events), len(events) - applied, max(marks.values(), default=0.0)

    def _apply(self, events: Sequence[Sequence[Any]]) -> int:
        """Bucket events given as their fields (Priced's order); returns how many counted.

        ``Buckets.add`` done on the fields themselves, without an object per event (the
        worker's hottest loop); rows are counted by the same ``buckets.count_attempt``.
        """
        sources, seen = self.sources, self.dedup.seen
        buckets = self.buckets
        width, closed_upto, open_ = buckets.width, buckets.closed_upto, buckets.open
        watermark = buckets.watermark
        cells, dirty = self.open_rows.cells, self.open_rows.dirty
        replayed = duplicates = late = counted = 0
        for (
            _kind, event_id, ts, customer, endpoint, provider, model,
            attempt, failed, rate_limited, cost, source, offset,
            input_tokens, output_tokens, cached_tokens,
        ) in events:  # fmt: skip
            if offset <= sources.get(source, -1):
                replayed += 1
                continue
            sources[source] = offset
            if seen(event_id, ts):
                duplicates += 1
                continue
            counted += 1
            index = int(ts // width)
            if index <= closed_upto:
                late += 1
                continue
            if ts > watermark:
                watermark = ts
            rows = open_.get(index)
            if rows is None:
                rows = open_[index] = {}
            key = (customer, endpoint, provider, model)
            row = rows.get(key)
            cell_key = (customer, index)
            if row is None:
                row = rows[key] = [0.0] * ROW_FIELDS
                cell = cells.get(cell_key)
                if cell is None:
                    cell = cells[cell_key] = {}
                cell[key] = row
            dirty.add(cell_key)
            count_attempt(
                row, cost, attempt, failed, rate_limited, input_tokens, output_tokens, cached_tokens
            )
        buckets.watermark = watermark
        buckets.stats.late_events += late
        self.replayed += replayed
        self.duplicates += duplicates
        return counted

    def close_due(self) -> tuple[list[Keyed], list[tuple[int, Rollup]]]:
        """Judge every bucket the watermark has passed; decisions and rollups, oldest first."""
        keyed: list[Keyed] = []
        rollups: list[tuple[int, Rollup]] = []
        for index in self.buckets.closable(self.clock.watermark()):
            rows = self.buckets.pop(index)
            self.open_rows.closed(index, rows)
            decisions, rollup = self.detection.close(index, rows)
            keyed += decisions
            rollups.append((index, rollup))
        return keyed, rollups

    def complete_upto(self) -> int:
        """The newest bucket index this partition will receive no more events for."""
        mark = self.clock.watermark()
        if mark is None:
            mark = self.buckets.watermark
        buckets = self.buckets
        return max(buckets.closed_upto, int((mark - buckets.lateness) // buckets.width) - 1)

    def save_open_rows(self) -> None:
        """Put the open rows of customers that changed into their records, and their
        usage in cost_shift's step being summed (closed buckets not judged yet)."""
        states = self.states
        for customer, rows in self.open_rows.save():
            record = states.record(customer)
            if rows is None:
                record.pop("open", None)
            else:
                record["open"] = rows
            states.dirty.add(customer)
        for customer, step in self.detection.shift_steps():
            record = states.record(customer)
            if step is None:
                record.pop("shift_step", None)
            else:
                record["shift_step"] = ShiftStep(*step)
            states.dirty.add(customer)

    def changes(self) -> dict[bytes, bytes | None]:
        """What closing buckets changed, for the batch's journal entry: the records of its
        customers (their open rows included) and, last, this partition's own record."""
        self.save_open_rows()
        writes: dict[bytes, bytes | None] = dict(self.states.take_changes())
        snapshot = self.snapshot()
        if snapshot != self.saved:
            writes[self.key] = self.saved = snapshot
        return writes

    def snapshot(self) -> bytes:
        """This partition's own record (small): progress and applied source offsets."""
        buckets = self.buckets
        return orjson.dumps(
            {
                "closed_upto": buckets.closed_upto,
                "watermark": buckets.watermark,
                "sources": self.sources,
                "source_times": self.clock.newest,
            }
        )

    def restore(self, raw: bytes, active: dict[str, set[Any]]) -> None:
        """Resume from a snapshot, the customers' open rows, their usage in cost_shift's
        step being summed, and their open episodes."""
        data = orjson.loads(raw)
        buckets = self.buckets
        buckets.closed_upto = data["closed_upto"]
        buckets.watermark = data["watermark"]
        self.sources = dict(data["sources"])
        for source, ts in data.get("source_times", {}).items():
            self.clock.observe(source, ts)
        for customer, record in self.states.cache.items():
            if partition_of(customer.encode(), self.partitions) != self.partition:
                continue
            summed = record.get("shift_step")
            if summed is not None:
                self.detection.resume_shift_step(customer, summed.step, summed.rows)
            opened = record.get("open")
            if opened is None:
                continue
            for index, endpoint, provider, model, *counts in opened.rows:
                if index > buckets.closed_upto:
                    row = current_row(counts)  # saved by an older worker: no tokens
                    key = (customer, endpoint, provider, model)
                    buckets.open.setdefault(index, {})[key] = row
                    self.open_rows.changed(index, key, row)
        self.adopt(active)

    def adopt(self, active: dict[str, set[Any]]) -> None:
        """Judge these keys every bucket (they have an open episode)."""
        for name, keys in active.items():
            self.detection.active[name] |= keys


class GlobalStage:
    """The provider/model retry storm over all partitions' rollups.

    A bucket is judged once every detect partition has closed it (each reports how far it
    has closed with its rollups, and on every idle tick), leaving out partitions that have
    reported nothing for ``idle_s``: partitions catching up on a backlog move at different
    speeds, and judging a bucket before the slowest had reported would miss its failures.
    """

    def __init__(
        self,
        settings: Settings,
        partitions: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.states: dict[Any, RetryStormState] = {}
        self.detection = GlobalDetection(settings, store=lambda name: self.states)
        self.pending: dict[int, Rollup] = {}
        self.changed: set[int] = set()  # pending buckets to write / delete since saved
        self.closed_upto = -(2**62)
        self.progress = SourceClock(settings.worker.source_idle_s, clock)
        self.progress.expect([str(p) for p in range(partitions)])
        self.late = 0
        # Per partition, the newest (bucket, piece) merged: a report sent again (a worker
        # restarted after sending it, or this stage's input delivered again) is not
        # merged twice. A partition sends its buckets, and their pieces, in order.
        self.merged: dict[int, tuple[int, int]] = {}
        self.repeated = 0

    def add(
        self,
        partition: int,
        complete_upto: int,
        part: list[tuple[int, Rollup]],
        pieces: list[tuple[int, int]] | None = None,
    ) -> list[Keyed]:
        """One partition's rollups of the buckets it closed, and up to where it is complete
        (``pieces``: each rollup's (bucket, piece), see :func:`rollup_reports`)."""
        merged = self.merged.get(partition)
        for n, (index, rollup) in enumerate(part):
            if pieces is not None:
                piece = pieces[n]
                if merged is not None and piece <= merged:
                    self.repeated += 1
                    continue
                merged = self.merged[partition] = piece
            if index <= self.closed_upto:
                self.late += 1
            else:
                merge_rollups(self.pending.setdefault(index, {}), rollup)
                self.changed.add(index)
        self.progress.observe(str(partition), float(complete_upto))
        return self.judge_complete()

    def judge_complete(self) -> list[Keyed]:
        """Judge the pending buckets every active partition has closed."""
        complete = self.progress.watermark()
        keyed: list[Keyed] = []
        if complete is None:
            return keyed
        for due in sorted(i for i in self.pending if i <= complete):
            keyed += self.detection.close(due, self.pending.pop(due))
            self.changed.add(due)
            self.closed_upto = due
        return keyed

    def snapshot(self) -> bytes:
        """The stage's own record: detector states and how far it has judged."""
        return orjson.dumps(
            {
                "states": [[p, m, s.to_dict()] for (p, m), s in self.states.items()],
                "closed_upto": self.closed_upto,
                "merged": [[p, *piece] for p, piece in self.merged.items()],
            }
        )

    def pending_changes(self) -> dict[int, bytes | None]:
        """Pending buckets changed since last asked: their rollup, or None once judged.
        Each is its own record, so a long backlog does not make one huge message."""
        out = {
            index: (encode_rollup(self.pending[index]) if index in self.pending else None)
            for index in self.changed
        }
        self.changed.clear()
        return out

    def restore(self, raw: bytes, pending: dict[int, bytes]) -> None:
        data = orjson.loads(raw)
        self.states.clear()
        for provider, model, state in data["states"]:
            restored = RetryStormState.from_dict(state)
            self.states[(provider, model)] = restored
            if restored.episode is not None:
                self.detection.active.add((provider, model))
        self.closed_upto = data["closed_upto"]
        self.merged = {p: (i, k) for p, i, k in data.get("merged", [])}
        self.pending = {i: decode_rollup(raw) for i, raw in pending.items() if i > self.closed_upto}


def encode_rollup(rollup: Rollup) -> bytes:
    return orjson.dumps([[p, m, *row] for (p, m), row in rollup.items()])


def decode_rollup(raw: bytes) -> Rollup:
    return {(row[0], row[1]): row[2:] for row in orjson.loads(raw)}


def encode_rollups(
    partition: int,
    complete_upto: int,
    part: list[tuple[int, Rollup]],
    pieces: list[int] | None = None,
) -> bytes:
    """A detect partition's report to the global stage: rollups and how far it has closed.
    ``pieces`` numbers each rollup within its bucket (a bucket too large for one message is
    sent in numbered pieces), so that the stage merges a piece delivered twice only once."""
    report: dict[str, Any] = {
        "p": partition,
        "w": complete_upto,
        "r": [[i, [[p, m, *row] for (p, m), row in r.items()]] for i, r in part],
    }
    if pieces is not None:
        report["k"] = pieces
    return orjson.dumps(report)


# A report larger than this is sent in parts: a restarted worker that closes hours of
# buckets in one tick would otherwise exceed the broker's 1 MB message limit and crash.
MAX_REPORT_BYTES = 900_000


def rollup_reports(
    partition: int,
    complete_upto: int,
    part: list[tuple[int, Rollup]],
    max_bytes: int = MAX_REPORT_BYTES,
) -> list[bytes]:
    """:func:`encode_rollups` as messages of at most about ``max_bytes`` each, in order.

    Only the last says how far the partition has closed: the others carry no progress (0,
    which the global stage's clock ignores), so no bucket is judged before all its parts
    were merged. A bucket too large for one message is split by rows into numbered
    pieces. Rows go in sorted order, so a bucket closed again after a restart is cut into
    the same pieces, which the global stage then knows it has merged.

    >>> rows = [(7, {("openai", f"m{i}"): [1.0] * 10 for i in range(300)})]
    >>> reports = rollup_reports(0, 7, rows, max_bytes=4_000)
    >>> len(reports) > 1, [decode_rollups(r)[1] for r in reports][-2:]
    (True, [0, 7])
    >>> [decode_rollups(r)[3] for r in reports][:2]
    [[(7, 0)], [(7, 1)]]
    """
    pieces: list[tuple[int, int, Rollup, int]] = []  # bucket, piece, rows, encoded size
    for index, rollup in part:
        piece: Rollup = {}
        size = number = 0
        for key in sorted(rollup):
            weight = len(orjson.dumps([*key, *rollup[key]])) + 1
            if piece and size + weight > max_bytes - 100:
                pieces.append((index, number, piece, size))
                piece, size, number = {}, 0, number + 1
            piece[key] = rollup[key]
            size += weight
        pieces.append((index, number, piece, size))
    messages: list[list[tuple[int, int, Rollup, int]]] = [[]]
    size = 0
    for piece_ in pieces:
        if messages[-1] and size + piece_[3] + 20 > max_bytes - 100:
            messages.append([])
            size = 0
        messages[-1].append(piece_)
        size += piece_[3] + 20
    last = len(messages) - 1
    return [
        encode_rollups(
            partition,
            complete_upto if n == last else 0,
            [(index, rows) for index, _, rows, _ in message],
            [k for _, k, _, _ in message],
        )
        for n, message in enumerate(messages)
    ]


def decode_rollups(
    raw: bytes,
) -> tuple[int, int, list[tuple[int, Rollup]], list[tuple[int, int]] | None]:
    """A report: its partition, progress, rollups and each one's (bucket, piece) if
    numbered (reports of workers from before the numbering are not)."""
    data = orjson.loads(raw)
    part = [(i, {(row[0], row[1]): row[2:] for row in rows}) for i, rows in data["r"]]
    pieces = data.get("k")
    keys = None if pieces is None else [(i, k) for (i, _), k in zip(part, pieces, strict=True)]
    return data["p"], data["w"], part, keys
