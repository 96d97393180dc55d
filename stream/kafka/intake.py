"""The worker's intake: usage + errors topics -> bundles on the internal events topic.

A plain aiokafka consumer (its own group, ``{app_id}-ingest``) instead of a faust agent:
faust spends tens of microseconds of Python per message (fetcher, buffer, stream
iterator, acking), which capped the worker at about 8,000 events/s while a plain
consumer reads several hundred thousand; see docs/faust-streaming-notes.md, section 9.
The bundles it sends go to the faust side (detect, tables) unchanged.

Each batch from ``getmany`` is validated and priced by :class:`stream.kafka.stages.IngestStage`,
sent as one bundle per detect partition (with each source's newest event time) and its
refused messages as dead letters; only once every send is acknowledged are the batch's
offsets committed (at-least-once: detect drops re-delivered events by source offset and
duplicates by event id). A rebalance waits for the batch in flight to be committed.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from stream.core.events import Rejection
from stream.core.ingest import ERRORS, USAGE, DeadLetter
from stream.kafka.connection import client_kwargs
from stream.kafka.stages import IngestStage, Priced, encode_bundle
from stream.kafka.state import partition_key, partition_of
from stream.metrics import Metrics
from stream.settings import Settings

log = logging.getLogger("spendwatch.intake")


@functools.lru_cache(maxsize=65_536)
def detect_partition(customer_id: str, partitions: int) -> int:
    """The detect partition of a customer (murmur2 is pure Python: worth caching)."""
    return partition_of(customer_id.encode(), partitions)


class Intake(ConsumerRebalanceListener):
    """Consume the input topics in batches and hand them on as bundles."""

    def __init__(
        self, settings: Settings, stage: IngestStage, metrics: Metrics, events_topic: str
    ) -> None:
        self.settings = settings
        self.stage = stage
        self.metrics = metrics
        self.events_topic = events_topic
        self.lock = asyncio.Lock()  # held by a batch from processing to commit
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        # Wall time when the intake last had nothing left to read: how long it has been
        # behind is what readiness judges (record timestamps are event times, which a
        # replay of old traffic makes look days late).
        self.caught_up_at = time.time()
        self.broker_ok_at = 0.0  # wall time of the last answer from the cluster

    async def run(self) -> None:
        """Consume until cancelled (the worker stopping), then leave the group cleanly."""
        kafka, worker = self.settings.kafka, self.settings.worker
        session_ms = int(worker.session_timeout_s * 1000)
        self.consumer = consumer = AIOKafkaConsumer(
            **client_kwargs(kafka),
            group_id=f"{kafka.app_id}-ingest",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=session_ms,
            heartbeat_interval_ms=max(1000, session_ms // 4),
        )
        self.producer = producer = AIOKafkaProducer(
            **client_kwargs(kafka), acks="all", enable_idempotence=True, linger_ms=2
        )
        await producer.start()
        try:
            await consumer.start()
            consumer.subscribe([kafka.topics.usage, kafka.topics.errors], listener=self)
            within_ms = int(worker.batch_within_s * 1000)
            while True:
                batches = await consumer.getmany(
                    timeout_ms=within_ms, max_records=worker.batch_size
                )
                if batches:
                    async with self.lock:
                        await self.process(batches)
                if not batches or self.caught_up(batches):
                    self.caught_up_at = time.time()
        finally:
            await consumer.stop()
            await producer.stop()

    async def process(self, batches: dict[TopicPartition, list[Any]]) -> None:
        """Send one batch's bundles and dead letters, await their acks, commit its offsets."""
        assert self.consumer is not None and self.producer is not None
        owned = self.consumer.assignment()
        # Revoked while this batch waited for the lock: the new owner reads it again.
        batches = {tp: m for tp, m in batches.items() if m and tp in owned}
        if not batches:
            return
        started = time.perf_counter()
        count = self.settings.kafka.topics.partitions
        out: dict[int, list[Priced]] = {p: [] for p in range(count)}
        marks: dict[str, float] = {}
        counts: Counter[str] = Counter()
        sends: list[asyncio.Future[Any]] = []
        usage, handle = self.settings.kafka.topics.usage, self.stage.handle
        for tp, messages in batches.items():
            kind = USAGE if tp.topic == usage else ERRORS
            source = f"{tp.topic}:{tp.partition}"
            newest = marks.get(source, 0.0)
            for message in messages:
                try:
                    result = handle(kind, message.value or b"", source, message.offset)
                except Exception as exc:  # noqa: BLE001 - no payload may stop the stream
                    result = refused(kind, message.value or b"", exc)
                if isinstance(result, DeadLetter):
                    sends.append(await self.send_dead_letter(result, message))
                else:
                    out[detect_partition(result.customer_id, count)].append(result)
                    if result.ts > newest:
                        newest = result.ts
            if newest:
                marks[source] = newest
            counts[kind] += len(messages)
        # One message per detect partition, routed as the table routes its customers.
        for partition, events in out.items():
            if events or marks:
                sends.append(
                    await self.producer.send(
                        self.events_topic,
                        encode_bundle(events, marks),
                        key=partition_key(partition, count),
                        partition=partition,
                    )
                )
        await asyncio.gather(*sends)
        offsets = {tp: messages[-1].offset + 1 for tp, messages in batches.items()}
        try:
            await self.consumer.commit(offsets)
        except CommitFailedError as exc:  # the group moved on; the new owner re-reads
            log.warning("intake commit failed (rebalanced) error=%s", exc)
        for kind, n in counts.items():
            self.metrics.inc("spendwatch_events_in_total", n, topic=kind)
        self.metrics.observe(
            "spendwatch_batch_seconds", time.perf_counter() - started, stage="ingest"
        )

    def caught_up(self, batches: dict[TopicPartition, list[Any]]) -> bool:
        """Whether every partition of ``batches`` was read to its high watermark."""
        assert self.consumer is not None
        for tp, messages in batches.items():
            high = self.consumer.highwater(tp)
            if messages and high is not None and messages[-1].offset + 1 < high:
                return False
        return True

    def lag_s(self, now: float) -> float:
        """Seconds since the intake last had nothing left to read (0 while caught up)."""
        return max(0.0, now - self.caught_up_at)

    async def probe(self, timeout_s: float) -> bool:
        """Ask the cluster for its metadata; remember when it last answered."""
        if self.producer is None:
            return False
        try:
            await asyncio.wait_for(self.producer.client.fetch_all_metadata(), timeout_s)
        except (KafkaError, OSError, TimeoutError):
            return False
        self.broker_ok_at = time.time()
        return True

    async def send_dead_letter(self, letter: DeadLetter, message: Any) -> asyncio.Future[Any]:
        """Send a refused message with its reason in headers; the future of its ack."""
        assert self.producer is not None
        self.metrics.inc("spendwatch_dead_letters_total", reason=letter.rejection.reason)
        source = f"{message.topic}:{message.partition}:{message.offset}"
        key, value, headers = dead_letter_record(
            letter, message.key, source, self.settings.worker.dead_letter_max_bytes
        )
        return await self.producer.send(
            self.settings.kafka.topics.deadletter, value, key=key, headers=headers
        )

    # -- rebalance listener -------------------------------------------------------------

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        # The batch in flight finishes (sent, acked, committed) before the group moves on.
        async with self.lock:
            log.info("intake partitions revoked %s", _names(revoked))

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        log.info("intake partitions assigned %s", _names(assigned))


def refused(kind: str, raw: bytes, exc: BaseException) -> DeadLetter:
    """The dead letter of a message whose handling raised: named by the exception's type."""
    log.warning("message refused kind=%s error=%s: %.200s", kind, type(exc).__name__, exc)
    return DeadLetter(kind, Rejection.of_exception(exc), raw)


def dead_letter_record(
    letter: DeadLetter, key: bytes | None, source: str, max_bytes: int
) -> tuple[bytes | None, bytes, list[tuple[str, bytes]]]:
    """(key, value, headers) of a dead letter, its reason in the headers, at most about
    ``max_bytes`` in all: a message the broker took can still be too large to send again
    with headers, so the value is cut (and the key, if it alone is too large) and marked
    ``x-spendwatch-truncated: <original value bytes>``. The reason is always kept.

    >>> letter = DeadLetter("usage", Rejection("too_large", "(root)", "big"), b"x" * 5000)
    >>> key, value, headers = dead_letter_record(letter, b"k", "usage:0:7", 2000)
    >>> named = dict(headers)
    >>> len(value) < 2000, named["x-spendwatch-truncated"], named["x-spendwatch-reason"]
    (True, b'5000', b'too_large')
    """
    rejection = letter.rejection
    headers = [
        ("x-spendwatch-reason", rejection.reason.encode()),
        ("x-spendwatch-field", rejection.field.encode()[:1024]),
        ("x-spendwatch-detail", rejection.detail.encode()[:1024]),
        ("x-spendwatch-source", source.encode()),
    ]
    value = letter.raw
    overhead = sum(len(name) + len(data) for name, data in headers) + 256  # record framing
    if key is not None and len(key) > max_bytes // 4:
        key = key[: max_bytes // 4]
    room = max_bytes - overhead - len(key or b"") - 64  # and the truncation header
    if len(value) > room:
        headers.append(("x-spendwatch-truncated", str(len(value)).encode()))
        value = value[: max(room, 0)]
    return key, value, headers


def _names(partitions: Sequence[TopicPartition]) -> str:
    return ",".join(f"{tp.topic}:{tp.partition}" for tp in sorted(partitions)) or "-"
