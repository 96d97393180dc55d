"""The worker's intake with a fake consumer and producer: what it sends, and when it commits."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from aiokafka import TopicPartition

from stream.core.pricing import PriceTable
from stream.kafka.intake import Intake, detect_partition
from stream.kafka.stages import IngestStage, decode_bundle
from stream.kafka.state import partition_of
from stream.metrics import Metrics
from stream.settings import Settings


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, dict[str, Any]]] = []
        self.futures: list[asyncio.Future[Any]] = []

    async def send(self, topic: str, value: bytes, **kwargs: Any) -> asyncio.Future[Any]:
        self.sent.append((topic, value, kwargs))
        future = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(0.01, future.set_result, None)  # acked later
        self.futures.append(future)
        return future


class FakeConsumer:
    def __init__(self, owned: set[TopicPartition], producer: FakeProducer) -> None:
        self.owned = owned
        self.producer = producer
        self.commits: list[dict[TopicPartition, int]] = []

    def assignment(self) -> set[TopicPartition]:
        return self.owned

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        assert all(f.done() for f in self.producer.futures), "committed before the acks"
        self.commits.append(offsets)


def event(n: int, customer: str = "acme", **changes: Any) -> bytes:
    body = {
        "event_id": f"e{n}",
        "ts": time.time() - 3600 + n,
        "customer_id": customer,
        "endpoint": "chat",
        "provider": "openai",
        "model": "gpt-4o-mini",
        "input_tokens": 100,
        "output_tokens": 10,
    }
    return orjson.dumps({**body, **changes})


def message(tp: TopicPartition, offset: int, value: bytes) -> SimpleNamespace:
    return SimpleNamespace(
        topic=tp.topic, partition=tp.partition, offset=offset, key=b"k", value=value
    )


@pytest.fixture
def intake() -> Intake:
    settings = Settings()
    prices = PriceTable.load(settings.resolve(settings.prices_file))
    intake = Intake(settings, IngestStage(settings, prices), Metrics(), "app-events")
    intake.producer = FakeProducer()  # type: ignore[assignment]
    return intake


def test_detect_partition_is_the_partitioners_choice() -> None:
    for customer in ("acme", "globex", "initech", "x" * 40):
        assert detect_partition(customer, 4) == partition_of(customer.encode(), 4)


def test_a_batch_is_sent_as_bundles_and_dead_letters_then_committed(intake: Intake) -> None:
    topics = intake.settings.kafka.topics
    usage = TopicPartition(topics.usage, 0)
    producer: Any = intake.producer
    intake.consumer = FakeConsumer({usage}, producer)  # type: ignore[assignment]
    batch = {usage: [message(usage, 7, event(1)), message(usage, 8, b"{not json")]}
    batch[usage].append(message(usage, 9, event(2, customer="globex")))

    asyncio.run(intake.process(batch))  # type: ignore[arg-type]

    count = topics.partitions
    bundles = [(v, kw) for topic, v, kw in producer.sent if topic == "app-events"]
    assert len(bundles) == count  # one per detect partition, marks in each
    events = [p for value, _ in bundles for p in decode_bundle(value)[0]]
    assert sorted((p.event_id, p.offset) for p in events) == [("e1", 7), ("e2", 9)]
    for value, kwargs in bundles:
        for priced in decode_bundle(value)[0]:
            assert kwargs["partition"] == partition_of(priced.customer_id.encode(), count)
    (letter,) = [(v, kw) for topic, v, kw in producer.sent if topic == topics.deadletter]
    assert letter[0] == b"{not json"
    headers = dict(letter[1]["headers"])
    assert headers["x-spendwatch-reason"] == b"json_invalid"
    assert headers["x-spendwatch-source"] == f"{topics.usage}:0:8".encode()
    assert intake.consumer.commits == [{usage: 10}]  # type: ignore[union-attr]
    metrics = intake.metrics
    assert metrics.value("spendwatch_events_in_total", topic="usage") == 3
    assert metrics.value("spendwatch_dead_letters_total", reason="json_invalid") == 1


def test_a_batch_of_revoked_partitions_is_left_to_the_new_owner(intake: Intake) -> None:
    topics = intake.settings.kafka.topics
    mine, theirs = TopicPartition(topics.usage, 0), TopicPartition(topics.errors, 1)
    producer: Any = intake.producer
    intake.consumer = FakeConsumer({mine}, producer)  # type: ignore[assignment]
    batch = {theirs: [message(theirs, 3, event(1, error_type="timeout"))]}

    asyncio.run(intake.process(batch))  # type: ignore[arg-type]

    assert producer.sent == []
    assert intake.consumer.commits == []  # type: ignore[union-attr]
