"""Event-time buckets: one row of counts per (customer, endpoint, provider, model).

Events are summed into the open bucket of their key: one dict lookup per event. When the
watermark (newest event time) passes a bucket's end plus the allowed lateness, the
bucket can be closed and handed to detection (:mod:`stream.core.detect`). Later events for a
closed bucket are counted and dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stream.core.events import EventRecord

# Row of one (customer, endpoint, provider, model) in one bucket: USD and counts of all
# attempts; tokens as events count them (input excludes cache reads). Successful requests
# are REQUESTS - FAILURES (every attempt is one or the other): no column of their own.
COST, REQUESTS, FAILURES, RETRIES, RATE_LIMITED, WASTED, FIRST_FAILURES, RETRIED = range(8)
COUNTS = 8  # the fields above: all a provider/model rollup carries
INPUT_TOKENS, OUTPUT_TOKENS, CACHED_TOKENS = 8, 9, 10
ROW_FIELDS = 11
# A rollup row is the counts, then the failures and attempts of the customer with the
# most failures. Rollups carry no tokens (the cross-customer detector needs none, and a
# partition's report of a backlog's rollups must stay under the broker's message limit).
TOP_CUSTOMER, TOP_REQUESTS = COUNTS, COUNTS + 1
RowKey = tuple[str, str, str, str]
Rollup = dict[tuple[str, str], list[float]]  # (provider, model) -> counts row


def current_row(row: list[float]) -> list[float]:
    """A bucket row in this layout: one saved before token counts were kept (a worker's
    open rows during a rolling restart: the counts alone) reads as no tokens."""
    if len(row) >= ROW_FIELDS:
        return row
    return [*row, *[0.0] * (ROW_FIELDS - len(row))]


def merge_rollups(into: Rollup, part: Rollup) -> None:
    """Add a partial rollup (one partition's) into ``into``: sums, and the top customer."""
    for key, row in part.items():
        total = into.get(key)
        if total is None:
            into[key] = row.copy()
            continue
        for i in range(COUNTS):
            total[i] += row[i]
        if row[TOP_CUSTOMER] > total[TOP_CUSTOMER]:
            total[TOP_CUSTOMER], total[TOP_REQUESTS] = row[TOP_CUSTOMER], row[TOP_REQUESTS]


def count_attempt(
    row: list[float],
    cost: float,
    attempt: int,
    failed: bool,
    rate_limited: bool,
    input_tokens: int,
    output_tokens: int,
    cached_tokens: int,
) -> None:
    """Add one attempt costing ``cost`` USD to a bucket row (the one place that says what
    counts as a failure, a retry and a retried request), with its token counts."""
    row[COST] += cost
    row[REQUESTS] += 1
    row[INPUT_TOKENS] += input_tokens
    row[OUTPUT_TOKENS] += output_tokens
    row[CACHED_TOKENS] += cached_tokens
    if failed:
        row[FAILURES] += 1
        row[WASTED] += cost
        if attempt == 1:
            row[FIRST_FAILURES] += 1
    if attempt > 1:
        row[RETRIES] += 1
        if attempt == 2:
            row[RETRIED] += 1
    if rate_limited:
        row[RATE_LIMITED] += 1


@dataclass
class DetectStats:
    late_events: int = 0
    buckets_closed: int = 0
    unknown_customers: set[str] = field(default_factory=set)


class Buckets:
    """Open event-time buckets and the watermark that closes them (pure, no clock)."""

    def __init__(self, width_s: float, lateness_s: float) -> None:
        self.width = width_s
        self.lateness = lateness_s
        self.open: dict[int, dict[RowKey, list[float]]] = {}
        self.closed_upto = -(2**62)  # index of the newest closed bucket
        self.watermark = 0.0
        self.stats = DetectStats()

    def add(self, event: EventRecord, cost: float) -> None:
        ts = event.ts
        index = int(ts // self.width)
        if index <= self.closed_upto:
            self.stats.late_events += 1
            return
        rows = self.open.get(index)
        if rows is None:
            rows = self.open[index] = {}
        key = (event.customer_id, event.endpoint, event.provider, event.model)
        row = rows.get(key)
        if row is None:
            row = rows[key] = [0.0] * ROW_FIELDS
        count_attempt(
            row,
            cost,
            event.attempt,
            event.failed,
            event.rate_limited,
            event.input_tokens,
            event.output_tokens,
            event.cached_input_tokens,
        )
        if ts > self.watermark:
            self.watermark = ts

    def closable(self, watermark: float | None = None) -> list[int]:
        """Indexes of open buckets the watermark (default: newest event time) has passed."""
        if not self.open:
            return []
        mark = self.watermark if watermark is None else watermark
        limit = (mark - self.lateness) // self.width  # buckets ending before
        return sorted(i for i in self.open if i < limit)

    def pop(self, index: int) -> dict[RowKey, list[float]]:
        self.closed_upto = max(self.closed_upto, index)
        self.stats.buckets_closed += 1
        return self.open.pop(index)
