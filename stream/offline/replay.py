"""Replay recorded events (JSON lines, optionally gzipped) through the embedded pipeline.

Usage and error files are merged in event time and fed to :class:`Pipeline` exactly as a
worker would see them; bad lines become dead letters that are counted, never fatal.
``replay_series`` runs the spend detector over a plain ``timestamp,value`` CSV instead.
"""

from __future__ import annotations

import csv
import gzip
import heapq
import io
import math
import os
import statistics
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Literal

from detectors import spend_spike
from detectors.spend_spike import SpendSpikeState
from stream.core.alerts import Alert, build_alert
from stream.core.events import EventRecord, Rejection, to_epoch_seconds
from stream.core.ingest import ERRORS, USAGE, DeadLetter
from stream.core.pipeline import Pipeline
from stream.settings import Settings

Item = tuple[float, int, str, EventRecord, bytes]


@dataclass
class ReplayReport:
    """What a replay read, refused and fired."""

    alerts: list[Alert] = field(default_factory=list)
    lines: int = 0
    dead_letters: int = 0  # lines refused, on reading or by the pipeline's ingest
    positions: dict[Path, int] = field(default_factory=dict)  # on-disk bytes read per file


def open_lines(path: Path) -> tuple[IO[bytes], IO[bytes]]:
    """(line reader, on-disk file) for ``path``; ``.gz`` files are decompressed on the fly."""
    disk = path.open("rb")
    if path.suffix == ".gz":
        return io.BufferedReader(gzip.GzipFile(fileobj=disk, mode="rb"), 1 << 20), disk
    return io.BufferedReader(disk, 1 << 20), disk  # type: ignore[arg-type]


class Progress:
    """A progress bar on stderr, only when stderr is a terminal (bytes of input read)."""

    def __init__(self, total_bytes: int) -> None:
        self.total = max(total_bytes, 1)
        self.enabled = sys.stderr.isatty()
        self.last = -1

    def show(self, done_bytes: int, events: int) -> None:
        if not self.enabled:
            return
        percent = min(100, 100 * done_bytes // self.total)
        if percent == self.last:
            return
        self.last = percent
        bar = "#" * (percent // 4) + "." * (25 - percent // 4)
        sys.stderr.write(f"\r[{bar}] {percent:3d}%  {events:,} events")
        sys.stderr.flush()

    def done(self) -> None:
        if self.enabled and self.last >= 0:
            sys.stderr.write("\n")


# How many of a file's first events are read before any is let into the merge: those
# stamped far ahead of the earliest of them are refused (a file's head has no history).
HEAD_EVENTS = 16


def _read(pipeline: Pipeline, kind: str, path: Path, report: ReplayReport) -> Iterator[Item]:
    """Parsed events of one file in file order; bad lines go to the pipeline as dead letters.

    Bad lines include those stamped more than ``ingest.max_future_skew_s`` ahead of the
    newest event time read from this file so far (``Ingest.future_rejection``): waiting in
    the merge, such a line would let the other file drain first and make this file's later
    events late. The file's first events have no history: the first ``HEAD_EVENTS`` are
    read before any goes on, and one that far ahead of every event after it is refused
    (a file of one event is judged against the merged stream time when it is admitted).
    """
    ingest = pipeline.ingest
    parse, future, limit = ingest.parse, ingest.future_rejection, ingest.future_limit
    what = f"the stream time of {path.name}"
    head: list[Item] | None = []  # the first events, until they are judged
    newest = 0.0  # newest event time let through from this file, epoch s; 0: none yet
    # Lines up to here pass without asking the rule: its limit when last asked, which lags
    # ``newest``, so it asks too often, never too rarely (-inf: the next line asks).
    unchecked_until = -math.inf
    seq = 0

    def refuse(rejection: Rejection, raw: bytes) -> None:
        ingest.stats.reject(kind, rejection)
        if pipeline.on_dead_letter:
            pipeline.on_dead_letter(DeadLetter(kind, rejection, raw.rstrip(b"\r\n")))

    def judged_head(items: list[Item]) -> Iterator[Item]:
        """The head's events, less those far ahead of every event after them (the last
        one: of the newest let through before it)."""
        nonlocal newest, unchecked_until
        after = [0.0] * len(items)  # the earliest event time after each; 0: none
        for i in range(len(items) - 2, -1, -1):
            later = items[i + 1][0]
            after[i] = later if not after[i + 1] else min(later, after[i + 1])
        for item, reference in zip(items, after, strict=True):
            rejection = future(item[0], reference or newest, f"the first events of {path.name}")
            if rejection is not None:
                refuse(rejection, item[4])
                continue
            newest = max(newest, item[0])
            yield item
        unchecked_until = limit(newest)

    lines, disk = open_lines(path)
    with lines, disk:
        for raw in lines:
            if raw.isspace():
                continue
            report.lines += 1
            if report.lines % 10_000 == 0:
                report.positions[path] = disk.tell()
            # JSON allows the trailing newline: it is stripped only from what is kept (the
            # raw bytes of a dead letter; ingest strips those it refuses later).
            event = parse(kind, raw)
            if isinstance(event, DeadLetter):
                event.raw = raw.rstrip(b"\r\n")
                if pipeline.on_dead_letter:
                    pipeline.on_dead_letter(event)
                continue
            ts = event.ts
            seq += 1
            if head is not None:
                head.append((ts, seq, kind, event, raw))
                if len(head) == HEAD_EVENTS:
                    yield from judged_head(head)
                    head = None
                continue
            if ts > unchecked_until:
                rejection = future(ts, newest, what)
                if rejection is not None:
                    refuse(rejection, raw)
                    continue
                unchecked_until = limit(ts)  # ts is the newest now
            if ts > newest:
                newest = ts
            yield ts, seq, kind, event, raw
    if head:
        yield from judged_head(head)


def _merge2(first: Iterator[Item], second: Iterator[Item]) -> Iterator[Item]:
    """``heapq.merge`` of two streams, written out (the usual replay: usage and errors).

    Items never compare equal (the kinds differ across streams, ``seq`` within one), so
    the order is the same as ``heapq.merge``'s.
    """
    a = next(first, None)
    b = next(second, None)
    while a is not None and b is not None:
        if b < a:
            yield b
            b = next(second, None)
        else:
            yield a
            a = next(first, None)
    if a is not None:
        yield a
        yield from first
    if b is not None:
        yield b
        yield from second


def replay_files(
    pipeline: Pipeline,
    usage: Iterable[Path],
    errors: Iterable[Path] = (),
    progress: bool = True,
) -> ReplayReport:
    """Merge the files in event time and run them through ``pipeline``; flush at the end."""
    report = ReplayReport()
    rejected = pipeline.ingest.stats.rejected
    refused_before = rejected.total()
    sources = [(USAGE, Path(p)) for p in usage] + [(ERRORS, Path(p)) for p in errors]
    bar = Progress(sum(os.path.getsize(p) for _, p in sources)) if progress else None
    streams = [_read(pipeline, kind, path, report) for kind, path in sources]
    merged = (
        streams[0]
        if len(streams) == 1
        else _merge2(*streams)
        if len(streams) == 2
        else heapq.merge(*streams)
    )
    add = pipeline.add
    alerts = report.alerts
    for n, (_, _, kind, event, raw) in enumerate(merged, start=1):
        new = add(kind, event, raw)
        if new:
            alerts += new
        if bar is not None and n % 50_000 == 0:
            bar.show(sum(report.positions.values()), n)
    alerts += pipeline.flush()
    report.dead_letters = rejected.total() - refused_before
    if bar is not None:
        bar.done()
    return report


@dataclass(frozen=True)
class Series:
    """A metric export: bucket start times (epoch s) and values, at a regular interval."""

    times: list[float]
    values: list[float]
    interval_s: float


def read_series(path: Path) -> Series:
    """Read ``timestamp,value`` rows (header optional); the interval is the median step."""
    times: list[float] = []
    values: list[float] = []
    with path.open(newline="", encoding="utf-8") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            if not row or row[0].startswith("#"):
                continue
            if len(row) < 2:
                raise ValueError(f"{path}:{number}: expected 'timestamp,value', got {row!r}")
            stamp, value = row[0].strip(), row[1].strip()
            try:
                number_value = float(value)
            except ValueError:
                if number == 1:
                    continue  # a header row
                raise ValueError(f"{path}:{number}: value {value!r} is not a number") from None
            times.append(_series_time(path, number, stamp))
            values.append(number_value)
    if len(times) < 2:
        raise ValueError(f"{path}: needs at least two rows to infer the interval")
    order = sorted(range(len(times)), key=times.__getitem__)
    times = [times[i] for i in order]
    values = [values[i] for i in order]
    steps = [b - a for a, b in zip(times, times[1:], strict=False) if b > a]
    if not steps:
        raise ValueError(f"{path}: all timestamps are equal")
    return Series(times, values, statistics.median(steps))


def _series_time(path: Path, number: int, stamp: str) -> float:
    try:
        return (
            to_epoch_seconds(float(stamp))
            if stamp.replace(".", "", 1).isdigit()
            else (to_epoch_seconds(stamp if _has_offset(stamp) else stamp + "+00:00"))
        )
    except ValueError as exc:
        raise ValueError(f"{path}:{number}: timestamp {stamp!r}: {exc}") from None


def _has_offset(stamp: str) -> bool:
    tail = stamp[10:]
    return stamp.endswith(("Z", "z")) or "+" in tail or tail.count("-") > 0


def replay_series(
    series: Series,
    settings: Settings,
    key: str,
    direction: Literal["up", "down", "both"] | None = None,
    usd: bool = False,
) -> list[Alert]:
    """Run spend_spike over the series as the value per interval of one key.

    A metric series has no unit: by default the series mode applies
    (:data:`detectors.spend_spike.SERIES_MODE`: confirmation and calm in time, no USD
    rule or floor, gaps skipped, both directions); ``usd`` keeps the config's USD rules
    instead. ``direction`` (up, down, both) overrides either. Daily seasonality is learnt
    only when the interval is 15 minutes or less (coarser series have too few points per
    hour of day); warm-up is at least 20 intervals.
    """
    params = settings.detectors.spend_spike
    width = series.interval_s
    if not usd:
        params = replace(params, **spend_spike.SERIES_MODE)
    if direction is not None:
        params = replace(params, direction=direction)
    params = replace(
        params,
        seasonal=params.seasonal and width <= 900,
        warmup_s=max(params.warmup_s if width <= 900 else 0.0, 20 * width),
    )
    state = SpendSpikeState.new(params)
    alerts: list[Alert] = []
    labels = {"customer_id": key}
    for t, value in zip(series.times, series.values, strict=True):
        start = (t // width) * width
        for decision in spend_spike.update(state, start, width, value, params):
            alerts.append(build_alert(labels, decision, settings.alerts.runbook_url))
    return alerts
