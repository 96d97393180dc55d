"""Which of the alerts a batch decided have reached the alerts topic already.

A batch's alerts are sent only once its journal entry and records are durable
(stream.kafka.journal). A worker killed after that may have sent some of them, all, or
none: a worker that recovers the partition reads the alerts topic from just before the
entry was written and sends only the ones missing, so none is lost and none sent twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from stream.kafka.topic_replay import read_range
from stream.settings import KafkaSettings

# How far before the journal entry's write the alerts topic is searched: alerts are sent
# after that write, so any slack only covers clock skew between worker and broker.
SEARCH_MARGIN_MS = 60_000

Identity = tuple[str, str, str]  # fingerprint, status, startsAt


def identity(alert: dict[str, Any]) -> Identity:
    """What makes two alert messages the same transition."""
    return str(alert["fingerprint"]), str(alert["status"]), str(alert["startsAt"])


async def already_sent(
    kafka: KafkaSettings, topic: str, alerts: Iterable[dict[str, Any]], since_s: float
) -> set[Identity]:
    """Which of ``alerts`` are on ``topic`` at or after ``since_s`` (minus a margin)."""
    wanted = {identity(a) for a in alerts}
    if not wanted:
        return set()
    since_ms = int(since_s * 1000) - SEARCH_MARGIN_MS
    found: set[Identity] = set()
    for record in await read_range(kafka, topic, "alerts", since_ms, 2**63 - 1):
        try:
            seen = identity(orjson.loads(record.value))
        except (orjson.JSONDecodeError, KeyError, TypeError):
            continue
        if seen in wanted:
            found.add(seen)
    return found
