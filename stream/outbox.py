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

import functools
from collections.abc import Iterable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from stream.kafka import client_kwargs, partitions_of
from stream.settings import KafkaSettings
from stream.state import PARTITION_PREFIX, partition_of

# Under the partition records' prefix, which customer-record loading skips.
OUTBOX_PREFIX = PARTITION_PREFIX + b"outbox:"
# How far before the outbox's write the alerts topic is searched: the alerts were sent
# after that write, so any slack only covers clock skew between worker and broker.
SEARCH_MARGIN_MS = 60_000

Identity = tuple[str, str, str]  # fingerprint, status, startsAt


@functools.cache
def outbox_key(partition: int, partitions: int) -> bytes:
    """A table key that lands in ``partition`` (so it moves with the partition's state)."""
    for n in range(100_000):
        key = OUTBOX_PREFIX + f"{partition}:{n}".encode()
        if partition_of(key, partitions) == partition:
            return key
    raise ValueError(f"no key hashes to partition {partition} of {partitions}")


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
    """Which of ``alerts`` are on ``topic`` at or after ``since_s`` (minus a margin).

    Reads only the partitions the alerts' keys (fingerprints) map to, group-less, from the
    offset of that time to the current end.
    """
    wanted = {identity(a) for a in alerts}
    if not wanted:
        return set()
    count = len(await partitions_of(kafka, topic))
    if not count:
        return set()
    parts = sorted({partition_of(fp.encode(), count) for fp, _, _ in wanted})
    tps = [TopicPartition(topic, p) for p in parts]
    consumer = AIOKafkaConsumer(**client_kwargs(kafka), group_id=None, enable_auto_commit=False)
    await consumer.start()
    found: set[Identity] = set()
    try:
        consumer.assign(tps)
        since_ms = int(since_s * 1000) - SEARCH_MARGIN_MS
        starts = await consumer.offsets_for_times({tp: since_ms for tp in tps})
        ends = await consumer.end_offsets(tps)
        pending = set()
        for tp in tps:
            start = starts.get(tp)
            if start is None or start.offset >= ends[tp]:
                continue  # nothing written since then
            consumer.seek(tp, start.offset)
            pending.add(tp)
        while pending:
            batches = await consumer.getmany(*pending, timeout_ms=1000)
            for tp, messages in batches.items():
                for message in messages:
                    try:
                        seen = identity(orjson.loads(message.value))
                    except (orjson.JSONDecodeError, KeyError, TypeError):
                        continue
                    if seen in wanted:
                        found.add(seen)
                if messages and messages[-1].offset + 1 >= ends[tp]:
                    pending.discard(tp)
    finally:
        await consumer.stop()
    return found
