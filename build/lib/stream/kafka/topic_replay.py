"""Replay a time range of Kafka topics through the embedded pipeline.

Reads with a group-less consumer (``assign`` + ``seek`` to the offsets for the start
time), so the worker's consumer group is neither joined nor committed for. Records are
selected by their timestamp (``spendwatch produce`` stamps each with the event's time),
ordered by it, and fed to the same :class:`Pipeline` that file replay uses. The range is
held in memory while it is sorted: replay long periods in pieces.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition

from stream.core.ingest import ERRORS, USAGE
from stream.core.pipeline import Pipeline
from stream.kafka.connection import client_kwargs, partitions_of
from stream.offline.replay import ReplayReport
from stream.settings import KafkaSettings


@dataclass(frozen=True, order=True)
class Record:
    timestamp_ms: int
    partition: int
    offset: int
    kind: str
    value: bytes


async def read_range(
    kafka: KafkaSettings, topic: str, kind: str, start_ms: int, end_ms: int
) -> list[Record]:
    """Records of ``topic`` with start_ms <= timestamp < end_ms, from every partition."""
    consumer = AIOKafkaConsumer(
        **client_kwargs(kafka),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in await partitions_of(kafka, topic)]
        if not partitions:
            return []
        consumer.assign(partitions)
        starts = await consumer.offsets_for_times({tp: start_ms for tp in partitions})
        ends = await consumer.end_offsets(partitions)
        pending = {}
        for tp in partitions:
            found = starts.get(tp)
            if found is None or found.offset >= ends[tp]:
                continue  # nothing at or after start_ms in this partition
            consumer.seek(tp, found.offset)
            pending[tp] = ends[tp]
        records: list[Record] = []
        while pending:
            batches = await consumer.getmany(*pending, timeout_ms=1000, max_records=5000)
            for tp, messages in batches.items():
                for message in messages:
                    if start_ms <= message.timestamp < end_ms and message.value is not None:
                        records.append(
                            Record(
                                message.timestamp, tp.partition, message.offset, kind, message.value
                            )
                        )
                    if message.offset + 1 >= pending.get(tp, 0) or message.timestamp >= end_ms:
                        pending.pop(tp, None)
        return records
    finally:
        await consumer.stop()


async def replay_topics(
    pipeline: Pipeline,
    kafka: KafkaSettings,
    usage_topic: str,
    errors_topic: str | None,
    start_ms: int,
    end_ms: int,
) -> ReplayReport:
    """Replay [start_ms, end_ms) of the usage (and errors) topic; flush at the end."""
    records = await read_range(kafka, usage_topic, USAGE, start_ms, end_ms)
    if errors_topic:
        records += await read_range(kafka, errors_topic, ERRORS, start_ms, end_ms)
    records.sort()
    report = ReplayReport(lines=len(records))
    for record in records:
        report.alerts += pipeline.feed(record.kind, record.value)
    report.alerts += pipeline.flush()
    report.dead_letters = sum(pipeline.ingest.stats.rejected.values())
    return report
