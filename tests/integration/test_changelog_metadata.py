"""Why the worker has its producer track the tables' changelog topics (Worker.
learn_changelog_topics), on a real broker: a faust table with ``use_partitioner`` picks
its changelog partition from the producer's metadata synchronously on every write, and
crashes its agent when the topic is missing there. Knowing the topic once is not enough:
the producer's metadata holds every topic until a send asks for one it has not seen, and
from then on only the topics it tracks."""

from __future__ import annotations

import asyncio
import uuid
from types import SimpleNamespace

import pytest
from aiokafka import AIOKafkaProducer

from stream.kafka.connection import ensure_topics
from stream.kafka.worker import Worker
from stream.settings import Settings

pytestmark = pytest.mark.integration


def _table(name: str) -> SimpleNamespace:
    """What learn_changelog_topics reads of a faust table: its changelog topic's name."""
    return SimpleNamespace(changelog_topic=SimpleNamespace(get_topic_name=lambda: name))


async def _scenario(settings: Settings, learn: bool) -> set[int] | None:
    kafka = settings.kafka
    changelog, later = f"{kafka.app_id}-cl-{uuid.uuid4().hex[:6]}", f"{kafka.app_id}-later"
    await ensure_topics(kafka, [changelog])
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers)
    await producer.start()
    try:
        # Tracking no topic yet, a metadata refresh brings every topic (as a worker's
        # producer has them when its tables start writing).
        await producer.client.force_metadata_update()
        assert producer.client.cluster.partitions_for_topic(changelog)
        if learn:
            worker = SimpleNamespace(
                app=SimpleNamespace(producer=SimpleNamespace(_ensure_producer=lambda: producer)),
                known_changelogs=set(),
            )
            await Worker.learn_changelog_topics(worker, _table(changelog))  # type: ignore[arg-type]
            assert worker.known_changelogs == {changelog}
        await ensure_topics(kafka, [later])  # a topic the producer has not seen
        await producer.send_and_wait(later, b"x", key=b"k")
        return producer.client.cluster.partitions_for_topic(changelog)
    finally:
        await producer.stop()


def test_an_untracked_changelog_drops_out_of_the_producers_metadata(kafka_settings):
    assert asyncio.run(_scenario(kafka_settings, learn=False)) is None


def test_a_changelog_the_worker_learnt_stays_in_the_producers_metadata(kafka_settings):
    partitions = asyncio.run(_scenario(kafka_settings, learn=True))
    assert partitions and len(partitions) == kafka_settings.kafka.topics.partitions
