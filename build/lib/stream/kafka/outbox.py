"""Alerts emitted once across crashes: an outbox in the partition's state, checked on recovery.

A detect partition judges a batch, then writes its state (customers' records, its own
record) and, last, its *outbox*: the alert transitions that batch decided. Only once
those writes are acknowledged are the alerts sent. So after a crash:

- state not durable: the events are read again, the same alerts are decided again, and
  they had not been sent (sending waits for the state) — nothing lost, nothing twice;
- state durable: the outbox says which alerts were decided. Some or all may have reached
  the alerts topic before the crash; :func:`already_sent` reads the topic from just before
  the outbox was written and the worker sends only the ones missing.

The outbox is replaced by the next batch's, so it holds one batch of alerts at most.

>>> raw = encode_outbox([b'{"fingerprint": "f1"}'], written_at=1.5)
>>> decode_outbox(raw)
(1.5, [{'fingerprint': 'f1'}])
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from stream.kafka.state import PARTITION_PREFIX, partition_key
from stream.kafka.topic_replay import read_range
from stream.settings import KafkaSettings

# Under the partition records' prefix, which customer-record loading skips.
OUTBOX_PREFIX = PARTITION_PREFIX + b"outbox:"
# How far before the outbox's write the alerts topic is searched: the alerts were sent
# after that write, so any slack only covers clock skew between worker and broker.
SEARCH_MARGIN_MS = 60_000

Identity = tuple[str, str, str]  # fingerprint, status, startsAt


def outbox_key(partition: int, partitions: int) -> bytes:
    """A table key that lands in ``partition`` (so it moves with the partition's state)."""
    return partition_key(partition, partitions, OUTBOX_PREFIX)


def encode_outbox(alerts: list[bytes], written_at: float) -> bytes:
    """The outbox record: alert payloads (JSON) and the wall time it was written."""
    return b'{"t":%s,"a":[%s]}' % (orjson.dumps(written_at), b",".join(alerts))


def decode_outbox(raw: bytes) -> tuple[float, list[dict[str, Any]]]:
    data = orjson.loads(raw)
    return float(data["t"]), list(data["a"])


def identity(alert: dict[str, Any]) -> Identity:
    """What makes two alert messages the same transition."""
    return str(alert["fingerprint"]), str(alert["status"]), str(alert["startsAt"])


async def already_sent(
    kafka: KafkaSettings, topic: str, alerts: Iterable[dict[str, Any]], since_s: float
) -> set[Identity]:
    """Which of ``alerts`` are on ``topic`` at or after ``since_s`` (minus a margin)."""
    wanted = {identity(a) for a in alerts}
    if not wanted:
        return set()
    since_ms = int(since_s * 1000) - SEARCH_MARGIN_MS
    found: set[Identity] = set()
    for record in await read_range(kafka, topic, "alerts", since_ms, 2**63 - 1):
        try:
            seen = identity(orjson.loads(record.value))
        except (orjson.JSONDecodeError, KeyError, TypeError):
            continue
        if seen in wanted:
            found.add(seen)
    return found
