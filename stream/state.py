"""Detection state of a Kafka worker: one record per customer, one per detect partition.

Every detector state of a customer (its spend baselines, its endpoints' retry windows,
its margin) lives in one record keyed by the customer id, the same key the events topic
is partitioned by, so a customer's state always sits in the changelog partition of the
events that update it and moves with them between workers. Records are kept decoded in
memory and written back (one changelog message each) once per batch, not per event.

Each detect partition also has one record of its own (open buckets, watermark, and the
newest source offset applied per ingest partition), under a key chosen to hash to that
partition. Source offsets make re-delivered events after a crash harmless: they are
skipped, not counted twice.

>>> states = CustomerStates({})
>>> from detectors.margin_breach import MarginBreachState
>>> states.view("margin")["acme"] = MarginBreachState(cost_usd=1.5)
>>> states.flush()
1
>>> CustomerStates(states.table).view("margin")["acme"].cost_usd
1.5
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, MutableMapping
from typing import Any

import orjson
from aiokafka.partitioner import murmur2

from detectors.margin_breach import MarginBreachState
from detectors.retry_storm import RetryStormState
from detectors.spend_spike import SpendSpikeState


class OpenRows:
    """A customer's rows in buckets not closed yet (kept with its states, so no single
    record grows with the whole partition while a backlog holds many buckets open)."""

    episode = None  # never an open alert

    def __init__(self, rows: list[list[Any]] | None = None) -> None:
        self.rows = rows or []  # [bucket index, endpoint, provider, model, *counts]

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OpenRows:
        return cls(data["rows"])


STATE_TYPES: dict[str, Any] = {
    "open": OpenRows,
    "spike_customer": SpendSpikeState,
    "spike_endpoint": SpendSpikeState,
    "retry_endpoint": RetryStormState,
    "margin": MarginBreachState,
}
PER_ENDPOINT = ("spike_endpoint", "retry_endpoint")
_SEP = "\x1f"
PARTITION_PREFIX = b"\x00partition:"


def partition_of(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives ``key`` (murmur2, as producers do)."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


@functools.cache
def partition_key(partition: int, partitions: int) -> bytes:
    """A table key that hashes to ``partition``: where that partition's own record lives."""
    for n in range(100_000):
        key = PARTITION_PREFIX + f"{partition}:{n}".encode()
        if partition_of(key, partitions) == partition:
            return key
    raise ValueError(f"no key hashes to partition {partition} of {partitions}")


class CustomerStates:
    """Decoded per-customer records over a table of bytes (a Faust table, or a dict)."""

    def __init__(self, table: MutableMapping[bytes, bytes]) -> None:
        self.table = table
        self.cache: dict[str, dict[str, Any]] = {}
        self.dirty: set[str] = set()

    def record(self, customer: str) -> dict[str, Any]:
        cached = self.cache.get(customer)
        if cached is None:
            raw = self.table.get(customer.encode())
            cached = self.cache[customer] = decode(raw) if raw else {}
        return cached

    def view(self, name: str) -> MutableMapping[Any, Any]:
        """The states of detector ``name`` keyed as CustomerDetection keys them."""
        return _View(self, name)

    def flush(self) -> int:
        """Write every changed record back to the table; returns how many."""
        for customer in self.dirty:
            self.table[customer.encode()] = encode(self.cache[customer])
        written = len(self.dirty)
        self.dirty.clear()
        return written

    def load(self, items: Iterator[tuple[bytes, bytes]]) -> dict[str, set[Any]]:
        """Decode recovered records; returns the keys with an open episode, per detector."""
        active: dict[str, set[Any]] = {name: set() for name in STATE_TYPES if name != "open"}
        for key, raw in items:
            if key.startswith(PARTITION_PREFIX):
                continue
            customer = key.decode()
            record = self.cache[customer] = decode(raw)
            for slot, state in record.items():
                if state.episode is not None:
                    name, _, endpoint = slot.partition(_SEP)
                    active[name].add((customer, endpoint) if name in PER_ENDPOINT else customer)
        return active


def _slot(name: str, key: Any) -> tuple[str, str]:
    if name in PER_ENDPOINT:
        customer, endpoint = key
        return customer, f"{name}{_SEP}{endpoint}"
    return key, name


class _View(MutableMapping[Any, Any]):
    """A detector's states as a mapping, stored inside the customers' records."""

    def __init__(self, states: CustomerStates, name: str) -> None:
        self.states = states
        self.name = name

    def __getitem__(self, key: Any) -> Any:
        customer, slot = _slot(self.name, key)
        return self.states.record(customer)[slot]

    def get(self, key: Any, default: Any = None) -> Any:
        customer, slot = _slot(self.name, key)
        return self.states.record(customer).get(slot, default)

    def __setitem__(self, key: Any, value: Any) -> None:
        customer, slot = _slot(self.name, key)
        self.states.record(customer)[slot] = value
        self.states.dirty.add(customer)

    def __delitem__(self, key: Any) -> None:
        customer, slot = _slot(self.name, key)
        del self.states.record(customer)[slot]
        self.states.dirty.add(customer)

    def __iter__(self) -> Iterator[Any]:
        for customer, record in self.states.cache.items():
            for slot in record:
                name, _, endpoint = slot.partition(_SEP)
                if name == self.name:
                    yield (customer, endpoint) if name in PER_ENDPOINT else customer

    def __len__(self) -> int:
        return sum(1 for _ in self)


def encode(record: dict[str, Any]) -> bytes:
    return orjson.dumps({slot: state.to_dict() for slot, state in record.items()})


def decode(raw: bytes) -> dict[str, Any]:
    data = orjson.loads(raw)
    return {
        slot: STATE_TYPES[slot.partition(_SEP)[0]].from_dict(value) for slot, value in data.items()
    }
