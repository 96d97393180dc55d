"""A batch's writes to a state table, all or nothing: its journal entry goes first.

A detect partition's batch changes many records of its table (customers' states, the
partition's own record) and decides alerts. Kafka makes one message atomic, not many: a
worker killed while a batch's records are on their way leaves some of them in the
changelog and not others, and a customer whose new record arrived would have the batch's
events counted twice when they are delivered again.

So a batch is *committed* by one journal entry, written before any of its records: the new
value of every record the batch changes and the alerts it decided. An entry larger than a
message is cut into parts, each carrying the entry's sequence number and part count. Then
come the records themselves; the alerts are sent once all of it is durable. The changelog
keeps order within a partition, so after a crash:

- the entry is incomplete (a part missing or older): none of the batch's records were
  written, its events are read again and decide the same alerts, none sent yet;
- the entry is complete: :meth:`Journal.recover` writes its records again (some may not
  have arrived) and hands back its alerts, and the previous entry's, for the worker to send
  those the alerts topic does not have (:func:`stream.kafka.outbox.already_sent`).

Entries alternate between two sets of keys by their number's parity, so writing one never
destroys the one before it, whose alerts may still be on their way; the worker flushes
the producer before a write that would replace an entry whose alerts it has sent since
its last flush.

>>> table = {}
>>> journal = Journal(table, lambda parity, part: b"j:%d:%d" % (parity, part))
>>> journal.write({b"acme": b'{"n":1}', b"gone": None}, [b'{"fingerprint":"f1"}'], now=5.0)
1
>>> del table[b"acme"]  # the record did not arrive before the crash
>>> [(e.seq, e.alerts) for e in Journal(table, journal.key).recover()]
[(1, [{'fingerprint': 'f1'}])]
>>> table[b"acme"]
b'{"n":1}'
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import orjson

from stream.kafka.state import PARTITION_PREFIX, partition_key

log = logging.getLogger(__name__)

# Under the partition records' prefix, which customer-record loading skips.
JOURNAL_PREFIX = PARTITION_PREFIX + b"journal:"
# An entry's part holds records up to about this many bytes: well inside the broker's
# 1 MB message limit (a single record larger than this gets a part of its own).
PART_BYTES = 500_000


@dataclass
class Entry:
    """A complete journal entry as recovered: its number, when it was written, its alerts
    and its reports to the global stage."""

    seq: int
    written_at: float
    alerts: list[dict[str, Any]]
    reports: list[dict[str, Any]]


class Journal:
    """The journal of one table partition. ``key(parity, part)`` names where a part goes:
    keys that hash to that partition. The records it carries are JSON documents."""

    def __init__(
        self,
        table: MutableMapping[bytes, bytes],
        key: Callable[[int, int], bytes],
        part_bytes: int = PART_BYTES,
    ) -> None:
        self.table = table
        self.key = key
        self.part_bytes = part_bytes
        self.seq = 0  # the newest entry written or recovered

    def write(
        self,
        writes: dict[bytes, bytes | None],
        alerts: list[bytes],
        now: float,
        reports: list[bytes] | tuple[()] = (),
    ) -> int:
        """Commit a batch: its entry, then its records (``None`` deletes one). Returns the
        entry's number. Only once the table's writes are durable may the alerts be sent.
        ``reports`` (JSON) are kept to be sent again on recovery, as they may not have
        arrived (their receiver knows what it has merged)."""
        self.seq += 1
        seq, parity = self.seq, self.seq % 2
        items: list[tuple[str, bytes]] = [("a", alert) for alert in alerts]
        items += [("r", report) for report in reports]
        items += [
            ("w", b"[%s,%s]" % (orjson.dumps(key.decode()), b"null" if value is None else value))
            for key, value in writes.items()
        ]
        parts = _cut(items, self.part_bytes)
        stamp = orjson.dumps(now)
        for i, part in enumerate(parts):
            fields = b"".join(
                b',"%s":[%s]' % (kind.encode(), b",".join(raw for k, raw in part if k == kind))
                for kind in ("a", "r", "w")
            )
            # Every part says which entry it is of, and how many parts that entry has.
            head = b'{"s":%d,"n":%d,"i":%d,"t":%s' % (seq, len(parts), i, stamp)
            self.table[self.key(parity, i)] = head + fields + b"}"
        _apply(self.table, writes)
        return seq

    def recover(self) -> list[Entry]:
        """After a restart or a move: write the newest complete entry's records again and
        return the entries whose alerts may not have been sent, oldest first (the newest
        complete one, and the one before it if it is still complete)."""
        found = [entry for parity in (0, 1) if (entry := self._read(parity)) is not None]
        found.sort(key=lambda e: e[0].seq)
        if not found:
            return []
        newest, writes = found[-1]
        _apply(self.table, writes)
        self.seq = newest.seq
        return [entry for entry, _ in found if entry.seq >= newest.seq - 1]

    def _read(self, parity: int) -> tuple[Entry, dict[bytes, bytes | None]] | None:
        raw = self.table.get(self.key(parity, 0))
        if not raw:
            return None
        first = orjson.loads(raw)
        seq, count = first["s"], first["n"]
        entry = Entry(seq, float(first["t"]), [], [])
        writes: dict[bytes, bytes | None] = {}
        for i in range(count):
            part = first if i == 0 else _load(self.table.get(self.key(parity, i)))
            if part is None or part["s"] != seq:
                return None  # cut short by a crash: its records were never written
            entry.alerts += part.get("a", [])
            entry.reports += part.get("r", [])
            for key, value in part.get("w", []):
                writes[key.encode()] = None if value is None else orjson.dumps(value)
        return entry, writes


def _load(raw: bytes | None) -> dict[str, Any] | None:
    return orjson.loads(raw) if raw else None


def _cut(items: list[tuple[str, bytes]], limit: int) -> list[list[tuple[str, bytes]]]:
    """The items in parts of about ``limit`` bytes each (at least one part, maybe empty)."""
    parts: list[list[tuple[str, bytes]]] = [[]]
    size = 0
    for item in items:
        weight = len(item[1]) + 1
        if parts[-1] and size + weight > limit:
            parts.append([])
            size = 0
        parts[-1].append(item)
        size += weight
    return parts


def _apply(table: MutableMapping[bytes, bytes], writes: dict[bytes, bytes | None]) -> None:
    for key, value in writes.items():
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value


def partition_journal(
    table: MutableMapping[bytes, bytes],
    partition: int,
    partitions: int,
    part_bytes: int = PART_BYTES,
) -> Journal:
    """The journal of a detect partition, under keys that hash to it."""

    def key(parity: int, part: int) -> bytes:
        return partition_key(partition, partitions, JOURNAL_PREFIX + b"%d:%d:" % (parity, part))

    return Journal(table, key, part_bytes)


async def durable(producer: Any, warn_after_s: float = 10.0) -> None:
    """Wait until everything given to faust's ``producer`` is on the broker: its buffer
    drained into the Kafka client, then the client's batches acknowledged.

    A table's writes (the journal entry, the records) go to the producer's buffer first,
    and faust's ``flush()`` stops waiting for the buffer after 0.1 s in which no message
    left it: on a busy event loop it returned with writes still queued, and alerts sent
    after it could reach the alerts topic before the state that decided them. Here the
    buffer is flushed again until it is empty (a warning every ``warn_after_s`` it is
    not), then the client is flushed.
    """
    buffer = producer.buffer
    started = last_warning = time.monotonic()
    while buffer.size:
        await buffer.flush()  # returns after 0.1 s without progress
        now = time.monotonic()
        if buffer.size and now - last_warning >= warn_after_s:
            log.warning(
                "producer buffer still holds %s messages after %.0f s", buffer.size, now - started
            )
            last_warning = now
    await producer.flush()
