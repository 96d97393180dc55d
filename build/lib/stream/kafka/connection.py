"""Kafka connection settings turned into client arguments (aiokafka and faust).

One place decides TLS and SASL, so the worker, ``produce`` and topic replay connect the
same way: bootstrap servers, client id, TLS (CA file, client certificate) and SASL
(PLAIN, SCRAM-SHA-256, SCRAM-SHA-512), over plaintext or TLS.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Iterable
from typing import Any

from stream.settings import KafkaSettings, Settings

USAGE, ERRORS, CUSTOMERS = "usage", "errors", "customers"


def ssl_context(kafka: KafkaSettings) -> ssl.SSLContext | None:
    """A verifying TLS context for SSL / SASL_SSL, with the client certificate if given."""
    if kafka.security_protocol not in ("SSL", "SASL_SSL"):
        return None
    context = ssl.create_default_context(cafile=str(kafka.ssl_cafile) if kafka.ssl_cafile else None)
    if kafka.ssl_certfile:
        context.load_cert_chain(
            str(kafka.ssl_certfile), str(kafka.ssl_keyfile) if kafka.ssl_keyfile else None
        )
    return context


def client_kwargs(kafka: KafkaSettings) -> dict[str, Any]:
    """Keyword arguments for AIOKafkaProducer / AIOKafkaConsumer / the admin client."""
    kwargs: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers,
        "client_id": kafka.client_id,
        "security_protocol": kafka.security_protocol,
    }
    context = ssl_context(kafka)
    if context is not None:
        kwargs["ssl_context"] = context
    if kafka.security_protocol.startswith("SASL"):
        kwargs["sasl_mechanism"] = kafka.sasl_mechanism
        kwargs["sasl_plain_username"] = kafka.sasl_username
        kwargs["sasl_plain_password"] = (
            kafka.sasl_password.get_secret_value() if kafka.sasl_password else None
        )
    return kwargs


def faust_credentials(kafka: KafkaSettings) -> Any:
    """The ``broker_credentials`` for a faust App (None for plaintext)."""
    import faust

    context = ssl_context(kafka)
    if kafka.security_protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=kafka.sasl_username,
            password=kafka.sasl_password.get_secret_value() if kafka.sasl_password else None,
            ssl_context=context,
            mechanism=kafka.sasl_mechanism,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def topic_name(settings: Settings, kind: str) -> str:
    """The topic name for ``usage``, ``errors`` or ``customers`` (or a literal name)."""
    topics = settings.kafka.topics
    return {USAGE: topics.usage, ERRORS: topics.errors, CUSTOMERS: topics.customers}.get(kind, kind)


async def ensure_topics(kafka: KafkaSettings, names: Iterable[str] | None = None) -> list[str]:
    """Create the topics (default: all of spendwatch's) that do not exist yet.

    Topics get ``kafka.topics.partitions`` and ``replication_factor``; the customers topic
    and silences topics are compacted (latest record per key). Existing topics are left as they are.
    Returns the names it created.
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    topics = kafka.topics
    if names is None:
        names = (
            topics.usage,
            topics.errors,
            topics.customers,
            topics.alerts,
            topics.deadletter,
            topics.silences,
        )
    admin = AIOKafkaAdminClient(**client_kwargs(kafka))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [
            NewTopic(
                name,
                topics.partitions,
                topics.replication_factor,
                topic_configs=(
                    {"cleanup.policy": "compact"}
                    if name in (topics.customers, topics.silences)
                    else None
                ),
            )
            for name in dict.fromkeys(names)
            if name not in existing
        ]
        if new:
            await admin.create_topics(new)
        return [t.name for t in new]
    finally:
        await admin.close()


async def partitions_of(kafka: KafkaSettings, topic: str) -> list[int]:
    """Partition ids of ``topic`` as the cluster reports them now ([] if it does not exist)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**client_kwargs(kafka))
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    for entry in described:
        if entry.get("topic") == topic and not entry.get("error_code"):
            return sorted(p["partition"] for p in entry.get("partitions", []))
    return []


async def reached(consumer: Any, ends: dict[Any, int]) -> bool:
    """Whether ``consumer`` has read every assigned partition up to ``ends``."""
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return False
    return True


async def follow_compacted(
    kafka: KafkaSettings,
    topic: str,
    apply: Callable[[bytes | None, bytes | None], Any],
    ready: asyncio.Event,
) -> None:
    """Apply every record (key, value) of a compacted topic from its beginning, then keep
    following it until cancelled. ``ready`` is set once the end offsets found at the start
    are reached (at once for an empty or absent topic). Partitions added later are not
    picked up. Group-less: every worker reads the whole topic."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(**client_kwargs(kafka), group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in await partitions_of(kafka, topic)]
        ends: dict[Any, int] = {}
        if partitions:
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            ends = await consumer.end_offsets(partitions)
        if all(end == 0 for end in ends.values()):
            ready.set()
        while partitions:
            batches = await consumer.getmany(timeout_ms=1000)
            for messages in batches.values():
                for message in messages:
                    apply(message.key, message.value)
            if not ready.is_set() and await reached(consumer, ends):
                ready.set()
    finally:
        await consumer.stop()
