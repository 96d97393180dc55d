"""Silences on Kafka: the compacted ``kafka.topics.silences`` topic, key = silence id.

Each record's value is a silence as JSON (:meth:`Silence.to_dict`); the newest record of
a key is the silence (expiring one writes it again with ``ends_at`` = now), and a
tombstone (null value) forgets it. The CLI writes here; the worker follows the topic
into its :class:`~stream.notify.silences.SilenceStore` table. Reading joins no consumer
group and commits nothing (as the worker reads the customers topic), so every reader
sees the whole topic.

    silences = await read_silences(settings.kafka)              # id -> dict, to the end
    await write_silence(settings.kafka, silence)                # add or replace one
    await follow_silences(settings.kafka, table, caught_up)     # the worker: forever

Records that are not a valid silence are logged and skipped, never fatal.

>>> table = {}
>>> apply_record(table, b"s1", b'{"id": "s1", "matchers": ["team=data"], "starts_at": 1,'
...              b' "ends_at": 2, "created_by": "ana", "comment": "x"}')
True
>>> sorted(table["s1"]), apply_record(table, b"s2", b"not json"), list(table)
(['comment', 'created_by', 'ends_at', 'id', 'matchers', 'starts_at'], False, ['s1'])
>>> apply_record(table, b"s1", None), table
(True, {})
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import MutableMapping
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from stream.kafka.connection import (
    client_kwargs,
    ensure_topics,
    follow_compacted,
    partitions_of,
    reached,
)
from stream.notify.silences import Silence
from stream.settings import KafkaSettings

log = logging.getLogger(__name__)


def encode(silence: Silence) -> tuple[bytes, bytes]:
    """(key, value) of the record that stores ``silence``."""
    return silence.id.encode(), orjson.dumps(silence.to_dict())


def apply_record(
    table: MutableMapping[str, dict[str, Any]], key: bytes | None, value: bytes | None
) -> bool:
    """Apply one record of the topic to ``table`` (id -> dict); False if it was refused.

    A tombstone deletes the key. A value that is not a valid silence, or whose id is not
    its key, is logged and left out (the table keeps what it had for that key).
    """
    if key is None:
        log.warning("silence record without a key skipped")
        return False
    sid = key.decode(errors="replace")
    if value is None:
        table.pop(sid, None)
        return True
    try:
        silence = Silence.from_dict(orjson.loads(value))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        log.warning("silence record refused id=%s error=%s", sid, err)
        return False
    if silence.id != sid:
        log.warning("silence record refused id=%s error=key is not the id %s", sid, silence.id)
        return False
    table[sid] = silence.to_dict()
    return True


async def write_silence(kafka: KafkaSettings, silence: Silence) -> None:
    """Write ``silence`` (new, changed or expired) to the silences topic; waits for the ack.

    Creates the topic (compacted) when it does not exist yet.
    """
    topic = kafka.topics.silences
    await ensure_topics(kafka, [topic])
    producer = AIOKafkaProducer(**client_kwargs(kafka), acks="all", enable_idempotence=True)
    try:
        await producer.start()
        key, value = encode(silence)
        await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def _open(kafka: KafkaSettings) -> tuple[AIOKafkaConsumer, list[TopicPartition]]:
    """A group-less consumer assigned every partition of the topic, at the beginning."""
    topic = kafka.topics.silences
    consumer = AIOKafkaConsumer(**client_kwargs(kafka), group_id=None, enable_auto_commit=False)
    try:
        await consumer.start()
        partitions = [TopicPartition(topic, p) for p in await partitions_of(kafka, topic)]
        if partitions:
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
    except BaseException:
        await consumer.stop()
        raise
    return consumer, partitions


async def read_silences(kafka: KafkaSettings, timeout_s: float = 30.0) -> dict[str, dict[str, Any]]:
    """Every silence in the topic (id -> :meth:`Silence.to_dict`), read to its end offsets
    as of the call. An absent topic has none. TimeoutError after ``timeout_s`` seconds."""
    table: dict[str, dict[str, Any]] = {}
    consumer, partitions = await _open(kafka)
    try:
        if not partitions:
            return table
        ends = await consumer.end_offsets(partitions)

        async def drain() -> None:
            while not await reached(consumer, ends):
                batches = await consumer.getmany(timeout_ms=200)
                for messages in batches.values():
                    for message in messages:
                        apply_record(table, message.key, message.value)

        await asyncio.wait_for(drain(), timeout_s)
        return table
    finally:
        await consumer.stop()


async def follow_silences(
    kafka: KafkaSettings,
    table: MutableMapping[str, dict[str, Any]],
    caught_up: asyncio.Event | None = None,
) -> None:
    """Keep ``table`` equal to the topic until cancelled (run it as a task).

    Reads from the beginning; sets ``caught_up`` once the end offsets found at the start
    are reached (at once for an empty or absent topic). Partitions added later are not
    picked up; a topic created after the start is not either (the worker creates it first).
    """
    await follow_compacted(
        kafka,
        kafka.topics.silences,
        lambda key, value: apply_record(table, key, value),
        caught_up if caught_up is not None else asyncio.Event(),
    )
