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
from collections.abc import Iterable, Iterator, MutableMapping
from typing import Any

import orjson
from aiokafka.partitioner import murmur2

from detectors.cost_shift import CostShiftState
from detectors.margin_breach import MarginBreachState
from detectors.retry_storm import RetryStormState
from detectors.spend_spike import SpendSpikeState


class OpenRows:
    """A customer's rows in buckets not closed yet (kept with its states, so no single
    record grows with the whole partition while a backlog holds many buckets open).

    Either decoded ``rows``, or ``encoded`` (the JSON array of the rows, as
    :class:`CustomerOpenRows` keeps them), which is written out as is.

    >>> OpenRows(encoded=b'[[7,"chat","openai","gpt-4o",0.5,1]]').rows
    [[7, 'chat', 'openai', 'gpt-4o', 0.5, 1]]
    """

    episode = None  # never an open alert

    def __init__(self, rows: list[list[Any]] | None = None, encoded: bytes | None = None) -> None:
        self._rows = rows if rows is not None or encoded is not None else []
        self.encoded = encoded

    @property
    def rows(self) -> list[list[Any]]:
        """[bucket index, endpoint, provider, model, *counts] per row."""
        if self._rows is None:
            self._rows = orjson.loads(self.encoded or b"[]")
        return self._rows

    def to_dict(self) -> dict[str, Any]:
        if self.encoded is not None:
            return {"rows": orjson.Fragment(self.encoded)}
        return {"rows": self.rows}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OpenRows:
        return cls(data["rows"])


class ShiftStep:
    """A customer's usage per endpoint in the cost_shift step being summed (see
    ``CustomerDetection.shift_steps``), kept with its states like its open rows.

    >>> ShiftStep.from_dict(ShiftStep(5, [["chat", 1.0, 2, 2, 10, 0, 5]]).to_dict()).rows
    [['chat', 1.0, 2, 2, 10, 0, 5]]
    """

    episode = None  # never an open alert

    def __init__(self, step: int, rows: list[list[Any]]) -> None:
        self.step = step
        self.rows = rows  # [endpoint, cost, ok, attempts, input, cached, output]

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "rows": self.rows}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ShiftStep:
        return cls(data["step"], data["rows"])


# Records' slots that hold no detector state (no keys to judge for an open alert).
NOT_DETECTORS = ("open", "shift_step")
RowKey = tuple[str, str, str, str]  # customer, endpoint, provider, model


class CustomerOpenRows:
    """Which open rows each customer has, and their JSON, kept per (customer, bucket).

    Saving a customer's open rows re-encodes only the buckets whose rows changed since
    the last save and joins the rest as they were: a consumer catching up may hold
    hundreds of buckets open (one topic read far ahead of another), most of them
    unchanged from one batch to the next.

    >>> rows = CustomerOpenRows()
    >>> rows.changed(7, ("acme", "chat", "openai", "gpt-4o"), [0.5, 1.0])
    >>> [(customer, opened.rows) for customer, opened in rows.save()]
    [('acme', [[7, 'chat', 'openai', 'gpt-4o', 0.5, 1.0]])]
    >>> rows.closed(7, {("acme", "chat", "openai", "gpt-4o"): [0.5, 1.0]})
    >>> list(rows.save())
    [('acme', None)]
    """

    def __init__(self) -> None:
        # (customer, bucket index) -> row key -> the bucket's row (the same list)
        self.cells: dict[tuple[str, int], dict[RowKey, list[float]]] = {}
        self.encoded: dict[str, dict[int, bytes]] = {}  # customer -> index -> JSON rows
        self.dirty: set[tuple[str, int]] = set()

    def changed(self, index: int, key: RowKey, row: list[float]) -> None:
        """The row ``key`` of bucket ``index`` was created or updated."""
        cell_key = (key[0], index)
        cell = self.cells.get(cell_key)
        if cell is None:
            cell = self.cells[cell_key] = {}
        cell[key] = row
        self.dirty.add(cell_key)

    def closed(self, index: int, rows: dict[RowKey, list[float]]) -> None:
        """Bucket ``index`` closed with these rows: they are no longer open."""
        for key in rows:
            cell_key = (key[0], index)
            if self.cells.pop(cell_key, None) is not None:
                self.dirty.add(cell_key)

    def save(self) -> Iterator[tuple[str, OpenRows | None]]:
        """Each customer whose open rows changed since the last save, with all its open
        rows now (None: it has none left)."""
        customers: set[str] = set()
        for customer, index in self.dirty:
            cell = self.cells.get((customer, index))
            encoded = self.encoded.get(customer)
            if cell is None:
                if encoded is not None:
                    encoded.pop(index, None)
            else:
                if encoded is None:
                    encoded = self.encoded[customer] = {}
                rows = [[index, k[1], k[2], k[3], *row] for k, row in cell.items()]
                encoded[index] = orjson.dumps(rows)[1:-1]  # without the brackets: joined
            customers.add(customer)
        self.dirty.clear()
        for customer in customers:
            encoded = self.encoded.get(customer)
            if encoded:
                yield customer, OpenRows(encoded=b"[" + b",".join(encoded.values()) + b"]")
            else:
                self.encoded.pop(customer, None)
                yield customer, None


STATE_TYPES: dict[str, Any] = {
    "open": OpenRows,
    "shift_step": ShiftStep,
    "spike_customer": SpendSpikeState,
    "spike_endpoint": SpendSpikeState,
    "shift_customer": CostShiftState,
    "shift_endpoint": CostShiftState,
    "retry_endpoint": RetryStormState,
    "margin": MarginBreachState,
}
PER_ENDPOINT = ("spike_endpoint", "shift_endpoint", "retry_endpoint")
_SEP = "\x1f"
PARTITION_PREFIX = b"\x00partition:"


# An encoded record begins with a flag, 1 when it holds something a partition must know as
# it opens: an open episode, open rows, a cost_shift step being summed. A record written
# before the flag shows them by these marks (orjson, compact).
_FLAG = b'{"#":'
_OPENING_MARKS = (b'"episode":{', b'"open":', b'"shift_step":')


def needs_opening(raw: bytes) -> bool:
    """True when the record ``raw`` may hold an open episode, open rows or a step being
    summed; a record without any of them is left encoded when its partition opens, and
    decoded when its customer is first used (:meth:`CustomerStates.record`). Read from
    the record's flag, or for a record written before it, its marks.

    >>> needs_opening(b'{"#":0,"spike_customer":{"v":6,"episode":null,"last_t":60.0}}')
    False
    >>> needs_opening(b'{"#":1,"spike_customer":{"v":6,"episode":{"since":0},"last_t":60.0}}')
    True
    >>> needs_opening(b'{"spike_customer":{"v":6,"episode":null,"last_t":60.0}}')
    False
    >>> needs_opening(b'{"spike_customer":{"v":6,"episode":{"since":0},"last_t":60.0}}')
    True
    """
    if raw.startswith(_FLAG):
        return raw[len(_FLAG) : len(_FLAG) + 1] != b"0"
    return any(mark in raw for mark in _OPENING_MARKS)


def opening(
    items: Iterable[tuple[bytes, bytes]], partition: int, partitions: int
) -> list[tuple[bytes, bytes]]:
    """The records of ``partition`` that it decodes as it opens: those with something open
    (:func:`needs_opening`; only their keys are hashed). The others are decoded when their
    customer is first used: a restarted worker with a million quiet customers neither
    decodes nor holds them all at once."""
    return [
        (k, v) for k, v in items if needs_opening(v) and partition_of(k, partitions) == partition
    ]


def partition_of(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives ``key`` (murmur2, as producers do)."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


@functools.cache
def partition_key(partition: int, partitions: int, prefix: bytes = PARTITION_PREFIX) -> bytes:
    """A table key that hashes to ``partition``: where that partition's own records live
    (loading customers' records skips keys starting with ``PARTITION_PREFIX``)."""
    for n in range(100_000):
        key = prefix + f"{partition}:{n}".encode()
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
        changes = self.take_changes()
        for key, raw in changes.items():
            self.table[key] = raw
        return len(changes)

    def take_changes(self) -> dict[bytes, bytes]:
        """Every changed record, encoded and keyed as the table keys it (for a journal
        entry, stream.kafka.journal); from now on they count as unchanged."""
        changes = {customer.encode(): encode(self.cache[customer]) for customer in self.dirty}
        self.dirty.clear()
        return changes

    def load(self, items: Iterator[tuple[bytes, bytes]]) -> dict[str, set[Any]]:
        """Decode recovered records; returns the keys with an open episode, per detector."""
        active: dict[str, set[Any]] = {n: set() for n in STATE_TYPES if n not in NOT_DETECTORS}
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
    """A customer's record: its flag (:func:`needs_opening`) first, then each slot's state."""
    opened = any(s in NOT_DETECTORS or state.episode is not None for s, state in record.items())
    return orjson.dumps({"#": int(opened), **{s: state.to_dict() for s, state in record.items()}})


def decode(raw: bytes) -> dict[str, Any]:
    data = orjson.loads(raw)
    data.pop("#", None)
    return {
        slot: STATE_TYPES[slot.partition(_SEP)[0]].from_dict(value) for slot, value in data.items()
    }
