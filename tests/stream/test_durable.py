"""journal.durable waits for the producer's buffer to drain, where faust's flush gives up.

A table write goes to faust's ProducerBuffer first; its background task hands messages
to the Kafka client one at a time. faust's ``flush()`` waits for that only while a message
leaves the buffer every 0.1 s. These tests use faust's real buffer, with a channel that
takes 0.25 s per message in place of the Kafka client (a busy event loop, a full send
queue), and a producer that notes what the buffer held when its own flush was called.
"""

from __future__ import annotations

import asyncio
from typing import Any

import faust
from faust.transport.producer import ProducerBuffer
from faust.types.tuples import FutureMessage, PendingMessage

from stream.kafka.journal import durable

SEND_S = 0.25  # per message: longer than faust's 0.1 s patience


class SlowChannel:
    def __init__(self) -> None:
        self.published = 0

    async def publish_message(self, fut: FutureMessage, wait: bool = False) -> None:
        await asyncio.sleep(SEND_S)
        self.published += 1
        fut.set_result(None)  # type: ignore[arg-type]


class Producer:
    """The part of faust's producer durable() uses: its buffer, and flush()."""

    def __init__(self, buffer: ProducerBuffer) -> None:
        self.buffer = buffer
        self.flushed_with: list[int] = []

    async def flush(self) -> None:
        self.flushed_with.append(self.buffer.size)


def queued(count: int) -> tuple[ProducerBuffer, SlowChannel]:
    buffer = ProducerBuffer()
    buffer.app = faust.App("durable-test", broker="kafka://127.0.0.1:9")
    channel = SlowChannel()
    for i in range(count):
        message = PendingMessage(channel, b"k", b"%d" % i, None, None, None, None, None, None)
        buffer.put(FutureMessage(message))
    return buffer, channel


async def with_buffer(count: int, body: Any) -> tuple[ProducerBuffer, SlowChannel]:
    buffer, channel = queued(count)
    await buffer.start()
    try:
        await body(buffer)
    finally:
        await buffer.stop()
    return buffer, channel


def test_faust_flush_returns_with_messages_still_in_the_buffer():
    # Why durable() exists: the buffer's own flush gave up with writes still queued.
    left: list[int] = []

    async def body(buffer: ProducerBuffer) -> None:
        await buffer.flush()
        left.append(buffer.size)
        await durable(Producer(buffer))  # drained, so the buffer stops cleanly

    asyncio.run(with_buffer(5, body))
    assert left[0] >= 3


def test_durable_returns_only_once_the_buffer_is_empty_then_flushes_the_client():
    producers: list[Producer] = []

    async def body(buffer: ProducerBuffer) -> None:
        producer = Producer(buffer)
        producers.append(producer)
        await durable(producer)

    _, channel = asyncio.run(with_buffer(5, body))
    assert channel.published >= 4  # the fifth is with the client: its flush waits for it
    assert producers[0].flushed_with == [0]


def test_durable_with_an_empty_buffer_only_flushes_the_client():
    producers: list[Producer] = []

    async def body(buffer: ProducerBuffer) -> None:
        producers.append(Producer(buffer))
        await durable(producers[0])

    asyncio.run(with_buffer(0, body))
    assert producers[0].flushed_with == [0]
