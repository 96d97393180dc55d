"""``spendwatch produce``: publish recorded or simulated JSON lines to a topic, keyed by customer.

Each line is sent as it is (bad lines too: they are what the dead-letter path is tested
with). The key is the line's ``customer_id`` when it has one, and the record timestamp is
the event's ``ts``, so topic replay can select a range of event time. A line longer than
``max_bytes`` (default: what a broker takes by default, less framing) is not sent: it is
reported with its line number and the lines after it go on; so does a record the client
refuses at once.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from stream.core.events import to_epoch_seconds
from stream.kafka.connection import client_kwargs, ensure_topics
from stream.offline.replay import open_lines
from stream.settings import KafkaSettings


@dataclass
class ProduceReport:
    sent: int = 0
    unkeyed: int = 0  # lines without a readable customer_id (sent anyway, unkeyed)
    failed: int = 0  # records the broker did not accept
    too_large: list[tuple[int, int]] = field(default_factory=list)  # (line number, bytes)
    seconds: float = 0.0


async def _settle(pending: list[asyncio.Future[Any]]) -> int:
    """Wait for the deliveries; the number that failed. Clears ``pending``."""
    results = await asyncio.gather(*pending, return_exceptions=True)
    pending.clear()
    return sum(isinstance(r, BaseException) for r in results)


def key_and_time(raw: bytes) -> tuple[bytes | None, int | None]:
    """(customer_id as key bytes, event time in epoch ms) of a line, where readable."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None, None
    if not isinstance(data, dict):
        return None, None
    customer = data.get("customer_id")
    key = customer.encode() if isinstance(customer, str) and customer else None
    try:
        stamp = int(to_epoch_seconds(data.get("ts")) * 1000)
    except ValueError:
        stamp = None
    return key, stamp


MAX_LINE_BYTES = 1_000_000  # a broker's default message.max.bytes is 1,048,588 per batch


async def produce(
    kafka: KafkaSettings,
    path: Path,
    topic: str,
    rate: float | None = None,
    max_bytes: int = MAX_LINE_BYTES,
) -> ProduceReport:
    """Send every line of ``path`` to ``topic``; at most ``rate`` lines per second if given.
    Lines over ``max_bytes`` are skipped and listed in the report."""
    report = ProduceReport()
    pending: list[asyncio.Future[Any]] = []
    await ensure_topics(kafka, [topic])
    producer = AIOKafkaProducer(
        **client_kwargs(kafka),
        acks="all",
        enable_idempotence=True,
        linger_ms=20,
        max_request_size=max_bytes + 64 * 1024,
    )
    await producer.start()
    started = time.monotonic()
    try:
        lines, disk = open_lines(path)
        with lines, disk:
            for number, raw in enumerate(lines, start=1):
                raw = raw.rstrip(b"\r\n")
                if not raw:
                    continue
                if len(raw) > max_bytes:
                    report.too_large.append((number, len(raw)))
                    continue
                key, stamp = key_and_time(raw)
                report.unkeyed += key is None
                # Brokers refuse record timestamps far in the future; such an event still
                # goes out (for the worker to refuse), stamped by the broker's clock.
                if stamp is not None and stamp > time.time() * 1000:
                    stamp = None
                try:
                    pending.append(await producer.send(topic, raw, key=key, timestamp_ms=stamp))
                except KafkaError:  # refused before sending (e.g. too large for the client)
                    report.failed += 1
                    continue
                report.sent += 1
                if len(pending) >= 10_000:
                    report.failed += await _settle(pending)
                if rate:
                    ahead = report.sent / rate - (time.monotonic() - started)
                    if ahead > 0:
                        await asyncio.sleep(ahead)
        await producer.flush()
        report.failed += await _settle(pending)
    finally:
        await producer.stop()
    report.seconds = time.monotonic() - started
    return report
