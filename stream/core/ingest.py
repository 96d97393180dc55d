"""Ingest: raw message bytes -> a validated, priced event, or a dead letter with its reason.

Checks, in order: size, JSON and contract (stream.core.events), event_id duplicates within a
horizon of event time, and timestamps too far ahead of stream time (one event stamped in
2099 must not drag the watermark there and make all others late). Pricing follows the
contract: ``cost_usd`` on the event wins; otherwise the price table prices the tokens.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from stream.core.events import EventRecord, Rejection, read_error, read_usage
from stream.core.pricing import PriceTable
from stream.settings import IngestSettings

USAGE = "usage"
ERRORS = "errors"


@dataclass(slots=True)
class DeadLetter:
    """A refused message: where it came from, why, and its original bytes."""

    kind: str  # "usage" | "errors"
    rejection: Rejection
    raw: bytes


class DedupWindow:
    """Remembers event ids for at least ``horizon_s`` of event time (two generations).

    >>> d = DedupWindow(60.0)
    >>> d.seen("a", 0.0), d.seen("a", 30.0), d.seen("a", 130.0)
    (False, True, False)
    """

    __slots__ = ("horizon", "generation", "current", "previous", "rotate_at")

    def __init__(self, horizon_s: float) -> None:
        self.horizon = max(horizon_s, 1e-9)
        self.generation = 0
        self.rotate_at = self.horizon  # event time at which the next generation starts
        self.current: set[str] = set()
        self.previous: set[str] = set()

    def seen(self, event_id: str, ts: float) -> bool:
        """True if ``event_id`` was seen recently; otherwise remember it."""
        if ts >= self.rotate_at:
            generation = int(ts // self.horizon)
            self.previous = self.current if generation == self.generation + 1 else set()
            self.current = set()
            self.generation = generation
            self.rotate_at = (generation + 1) * self.horizon
        if event_id in self.current or event_id in self.previous:
            return True
        self.current.add(event_id)
        return False

    def __len__(self) -> int:
        return len(self.current) + len(self.previous)


@dataclass
class IngestStats:
    """Counters a worker exports as metrics and replay prints at the end."""

    accepted: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    first_rejections: list[tuple[str, Rejection]] = field(default_factory=list)

    def reject(self, kind: str, rejection: Rejection, keep: int = 5) -> None:
        self.rejected[rejection.reason] += 1
        if len(self.first_rejections) < keep:
            self.first_rejections.append((kind, rejection))


class Ingest:
    """Validate, de-duplicate and price events; refuse the rest with a reason."""

    def __init__(
        self,
        settings: IngestSettings,
        prices: PriceTable,
        dedup: bool = True,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.settings = settings
        self.prices = prices
        # "Too far in the future" is judged against the wall clock where there is one (the
        # worker: a backlog read faster on one topic is not the future), else against the
        # newest event time seen (replay, which must not depend on when it runs).
        self.clock = clock
        # The Kafka worker de-duplicates after repartitioning by customer instead, where all
        # copies of an event meet.
        self.dedup = DedupWindow(settings.dedup_horizon_s) if dedup else None
        self.stats = IngestStats()
        self.stream_time = 0.0  # newest accepted event time, epoch s
        # Event times up to here pass without asking future_rejection: its limit when last
        # asked, which lags stream time, so it asks too often, never too rarely (about once
        # per max_future_skew_s of event time). With a clock every advance asks.
        self._unchecked_until = -math.inf

    def parse(self, kind: str, raw: bytes) -> EventRecord | DeadLetter:
        """Parse one message of ``kind`` ("usage" or "errors")."""
        limit = self.settings.max_event_bytes
        # A file's line ends with its newline, which is not part of the message.
        if len(raw) > limit and len(raw.rstrip(b"\r\n")) > limit:
            rejection = Rejection(
                "too_large",
                "(root)",
                f"{len(raw)} bytes > ingest.max_event_bytes {self.settings.max_event_bytes}",
            )
            self.stats.reject(kind, rejection)
            return DeadLetter(kind, rejection, raw)
        if not raw:
            rejection = Rejection("null_value", "(root)", "the message has no value")
            self.stats.reject(kind, rejection)
            return DeadLetter(kind, rejection, raw)
        try:
            event = read_usage(raw) if kind == USAGE else read_error(raw)
        except Exception as exc:  # noqa: BLE001 - no payload may stop the stream
            # The readers refuse what they know with a reason; anything else they raise
            # is still this message's fault: refused, named by the exception's type.
            event = Rejection.of_exception(exc)
        if isinstance(event, Rejection):
            self.stats.reject(kind, event)
            return DeadLetter(kind, event, raw)
        return event

    def future_limit(self, reference: float) -> float:
        """The latest event time (epoch s) not refused as ``ts_in_future`` against
        ``reference``: ``reference + ingest.max_future_skew_s``; none (inf) while the
        reference is 0, which means there is none yet (the first event of a stream, or of
        a file in replay)."""
        return reference + self.settings.max_future_skew_s if reference else math.inf

    def future_rejection(
        self, ts: float, reference: float, what: str = "stream time"
    ) -> Rejection | None:
        """A ``ts_in_future`` rejection if ``ts`` is past :meth:`future_limit` of
        ``reference`` (both epoch s; ``what`` names the reference in the detail).

        File replay asks this against the newest event time of the same file, so a file's
        first line is not refused there (no reference yet); it is judged only when
        :meth:`admit` takes it, against the stream time of the merged files.

        >>> from stream.core.pricing import ModelPrice, PriceTable, PriceTableConfig
        >>> free = PriceTable.from_config(PriceTableConfig(fallback=ModelPrice(input=0, output=0)))
        >>> ingest = Ingest(IngestSettings(max_future_skew_s=60), free)
        >>> ingest.future_rejection(1_000.0, 0.0), ingest.future_rejection(1_060.0, 1_000.0)
        (None, None)
        >>> ingest.future_rejection(1_061.0, 1_000.0).detail
        '61 s ahead of stream time (ingest.max_future_skew_s 60)'
        """
        if ts <= self.future_limit(reference):
            return None
        return Rejection(
            "ts_in_future",
            "ts",
            f"{ts - reference:.0f} s ahead of {what} "
            f"(ingest.max_future_skew_s {self.settings.max_future_skew_s:.0f})",
        )

    def admit(self, kind: str, event: EventRecord, raw: bytes = b"") -> float | DeadLetter | None:
        """The event's cost in USD if it is new; None for a duplicate; a dead letter if refused."""
        ts = event.ts
        if ts > self.stream_time:
            if ts > self._unchecked_until:
                rejection = (
                    self.future_rejection(ts, self.clock(), "the clock")
                    if self.clock is not None
                    else self.future_rejection(ts, self.stream_time)
                )
                if rejection is not None:
                    self.stats.reject(kind, rejection)
                    return DeadLetter(kind, rejection, raw.rstrip(b"\r\n"))
                if self.clock is None:
                    self._unchecked_until = self.future_limit(ts)
            self.stream_time = ts
        if self.dedup is not None and self.dedup.seen(event.event_id, ts):
            self.stats.duplicates += 1
            return None
        self.stats.accepted[kind] += 1
        if event.cost_usd is not None:
            return event.cost_usd
        return self.prices.cost_usd(
            event.provider,
            event.model,
            event.input_tokens,
            event.output_tokens,
            event.cached_input_tokens,
            event.cache_write_tokens,
        )
