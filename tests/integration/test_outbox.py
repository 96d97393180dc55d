"""The outbox check on the real broker: which decided alerts already reached the topic."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from stream.kafka.connection import client_kwargs, ensure_topics
from stream.kafka.outbox import already_sent, identity
from stream.settings import Settings
from tests.notify.servers import alert_item

pytestmark = pytest.mark.integration


def test_already_sent_finds_exactly_the_alerts_on_the_topic(kafka_settings: Settings) -> None:
    kafka = kafka_settings.kafka
    topic = kafka.topics.alerts
    sent = [alert_item(customer_id=f"c{i}") for i in range(6)]
    resolved = alert_item("resolved", customer_id="c0")  # same fingerprint, other status
    missing = [alert_item(customer_id=f"m{i}") for i in range(4)] + [resolved]

    async def scenario() -> tuple[set, set, set]:
        await ensure_topics(kafka)
        before = time.time()
        producer = AIOKafkaProducer(**client_kwargs(kafka))
        await producer.start()
        try:
            for alert in sent:
                await producer.send_and_wait(
                    topic, orjson.dumps(alert), alert["fingerprint"].encode()
                )
        finally:
            await producer.stop()
        found = await already_sent(kafka, topic, sent + missing, before)
        later = await already_sent(kafka, topic, sent, time.time() + 3600)
        none = await already_sent(kafka, topic, [], before)
        return found, later, none

    found, later, none = asyncio.run(scenario())
    assert found == {identity(a) for a in sent}
    assert later == set()  # nothing written after that time
    assert none == set()
