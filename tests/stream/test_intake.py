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


def run_batch(intake: Intake, values: list[bytes | None]) -> tuple[list[Any], list[Any]]:
    """Process one batch of ``values`` on usage:0 (offsets 0..); (accepted, dead letters)."""
    topics = intake.settings.kafka.topics
    usage = TopicPartition(topics.usage, 0)
    producer: Any = intake.producer
    intake.consumer = FakeConsumer({usage}, producer)  # type: ignore[assignment]
    batch = {usage: [message(usage, n, v) for n, v in enumerate(values)]}  # type: ignore[arg-type]
    asyncio.run(intake.process(batch))  # type: ignore[arg-type]
    assert intake.consumer.commits == [{usage: len(values)}]  # type: ignore[union-attr]
    bundles = [v for topic, v, _ in producer.sent if topic == "app-events"]
    accepted = [p for value in bundles for p in decode_bundle(value)[0]]
    letters = [(v, kw) for topic, v, kw in producer.sent if topic == topics.deadletter]
    return accepted, letters


def nested(depth: int) -> bytes:
    return event(2, deep=orjson.Fragment(b"[" * depth + b"]" * depth))


@pytest.mark.parametrize("depth", [1_000, 20_000])
def test_deep_nesting_is_a_dead_letter_and_the_batch_goes_on(intake: Intake, depth: int) -> None:
    deep = nested(depth)
    accepted, letters = run_batch(intake, [event(1), deep, event(3)])
    assert [p.event_id for p in accepted] == ["e1", "e3"]
    [(value, kwargs)] = letters
    assert value == deep
    assert dict(kwargs["headers"])["x-spendwatch-reason"] == b"json_invalid"


def test_an_error_event_nested_deep_is_a_dead_letter(intake: Intake) -> None:
    topics = intake.settings.kafka.topics
    errors = TopicPartition(topics.errors, 0)
    producer: Any = intake.producer
    intake.consumer = FakeConsumer({errors}, producer)  # type: ignore[assignment]
    bad = event(1, error_type="timeout", x=orjson.Fragment(b"[" * 5000 + b"]" * 5000))
    asyncio.run(intake.process({errors: [message(errors, 0, bad)]}))  # type: ignore[dict-item]
    [letter] = [kw for topic, _, kw in producer.sent if topic == topics.deadletter]
    assert dict(letter["headers"])["x-spendwatch-reason"] == b"json_invalid"


def test_any_exception_while_handling_a_message_dead_letters_it_by_type(
    intake: Intake, monkeypatch: pytest.MonkeyPatch
) -> None:
    handle = intake.stage.handle

    def fragile(kind: str, raw: bytes, source: str, offset: int) -> Any:
        if b"boom" in raw:
            raise ZeroDivisionError("a defect no test foresaw")
        return handle(kind, raw, source, offset)

    monkeypatch.setattr(intake.stage, "handle", fragile)
    boom = event(2, endpoint="boom")
    accepted, letters = run_batch(intake, [event(1), boom, event(3)])
    assert [p.event_id for p in accepted] == ["e1", "e3"]
    [(value, kwargs)] = letters
    headers = dict(kwargs["headers"])
    assert headers["x-spendwatch-reason"] == b"ZeroDivisionError"
    assert b"a defect no test foresaw" in headers["x-spendwatch-detail"]
    assert value == boom
    assert intake.metrics.value("spendwatch_dead_letters_total", reason="ZeroDivisionError") == 1


def test_a_null_value_is_a_dead_letter_with_its_reason(intake: Intake) -> None:
    accepted, letters = run_batch(intake, [None, event(2)])
    assert [p.event_id for p in accepted] == ["e2"]
    [(value, kwargs)] = letters
    assert value == b""
    assert dict(kwargs["headers"])["x-spendwatch-reason"] == b"null_value"


@pytest.mark.parametrize("size", [1_048_500, 2_000_000])
def test_a_dead_letter_too_large_to_send_whole_is_cut_and_keeps_its_reason(
    intake: Intake, size: int
) -> None:
    accepted, letters = run_batch(intake, [b"x" * size, event(2)])
    assert [p.event_id for p in accepted] == ["e2"]
    [(value, kwargs)] = letters
    limit = intake.settings.worker.dead_letter_max_bytes
    headers = dict(kwargs["headers"])
    framed = len(value) + len(kwargs["key"] or b"")
    framed += sum(len(k) + len(v) for k, v in headers.items())
    assert framed <= limit
    assert value == b"x" * len(value) and len(value) > limit - 4096
    assert headers["x-spendwatch-truncated"] == str(size).encode()
    assert headers["x-spendwatch-reason"] == b"too_large"


def test_a_dead_letter_that_fits_is_sent_whole_and_unmarked(intake: Intake) -> None:
    limit = intake.settings.worker.dead_letter_max_bytes
    _, letters = run_batch(intake, [b"y" * (limit - 4096)])
    [(value, kwargs)] = letters
    assert len(value) == limit - 4096
    assert "x-spendwatch-truncated" not in dict(kwargs["headers"])
