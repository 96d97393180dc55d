"""The Kafka worker, end to end on a real broker: the same alerts as replay, bad input to
the dead-letter topic, and the web port's health and metrics."""

from __future__ import annotations

import asyncio
import gzip
import json
import signal
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from stream.core.customers import load_customers
from stream.core.events import to_epoch_seconds
from stream.kafka.connection import client_kwargs, partitions_of
from stream.kafka.produce import produce
from stream.offline.simulate import SimConfig, simulate
from tests.integration.workers import (
    WorkerProcess,
    closing_records,
    read_topic,
    replay_recorded,
    wait_for,
)

pytestmark = pytest.mark.integration
BUCKET = 60.0


def write_lines(path: Path, records: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(records) + b"\n")
    return path


def closing_events(settings, end: datetime, tmp: Path) -> Path:
    """The closing records (see ``closing_records``) a quarter hour past ``end``, as a file."""
    return write_lines(tmp / "closing.jsonl", closing_records(settings, end.timestamp() + 15 * 60))


def identity(alert: dict) -> tuple:
    return (alert["fingerprint"], alert["status"], alert["startsAt"], alert["endsAt"])


def replay_alerts(settings, traffic: Path) -> list[dict]:
    """What file replay fires on the recorded traffic (the reference for the worker)."""
    return [a.to_payload() for a in replay_recorded(settings, traffic).alerts]


def wait_for_alerts(
    settings, expected: list[dict], workers: list[WorkerProcess], alive=lambda: None
) -> list[dict]:
    """The alerts topic once it holds every expected alert (per customer by identity,
    provider-wide by fingerprint and status). ``alive`` is called on each look (to fail
    at once when a worker that should be running has exited)."""
    per_customer = {identity(a) for a in expected if "customer_id" in a["labels"]}
    provider = {
        (a["fingerprint"], a["status"]) for a in expected if "customer_id" not in a["labels"]
    }

    missing: list = []

    def complete():
        alive()
        got = [json.loads(m.value) for m in read_topic(settings, settings.kafka.topics.alerts)]
        mine = {identity(a) for a in got if "customer_id" in a["labels"]}
        theirs = {(a["fingerprint"], a["status"]) for a in got if "customer_id" not in a["labels"]}
        missing[:] = sorted(per_customer - mine) + sorted(provider - theirs)
        return got if not missing else None

    try:
        return wait_for(complete, 300, "every alert replay fires", every_s=3)
    except AssertionError as exc:
        logs = " ".join(str(w.log_path) for w in workers)
        raise AssertionError(
            f"{exc}; missing {missing}; logs {logs}; workers: {progress(workers)}"
        ) from None


def progress(workers: list[WorkerProcess]) -> list:
    """Where each worker stands, for a failure's message: its health and event counts;
    and each running worker writes the stacks of its tasks to its log (a stuck agent)."""
    wanted = (
        "spendwatch_events_in_total",
        "spendwatch_events_detected_total",
        "spendwatch_late_events_total",  # events whose bucket had closed: dropped
        "lag",
    )
    out: list = []
    for worker in workers:
        health = worker.health()
        if health is None:
            out.append("no answer")
            continue
        counts = [
            line
            for line in worker.fetch("/metrics", retry_s=2).decode().splitlines()
            if not line.startswith("#") and any(w in line for w in wanted)
        ]
        out.append({"health": health, "metrics": counts})
        if worker.proc is not None and worker.proc.poll() is None:
            worker.proc.send_signal(signal.SIGUSR1)  # mode: every task's stack, to its log
    time.sleep(2)
    return out


def customer_alerts(alerts: list[dict]) -> list[tuple]:
    return sorted(identity(a) for a in alerts if "customer_id" in a["labels"])


@pytest.fixture(scope="module")
def traffic(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("worker-traffic")
    simulate(out, SimConfig(days=1.5, customers=8, seed=4, incidents=True, rate_per_min=60))
    return out


def test_the_worker_fires_the_alerts_replay_fires(kafka_settings, traffic, tmp_path):
    settings = kafka_settings
    expected = replay_alerts(settings, traffic)
    assert any("customer_id" not in a["labels"] for a in expected)  # a provider storm too
    worker = WorkerProcess(settings, tmp_path).start()
    try:
        worker.wait_ready()
        send_traffic(settings, traffic, tmp_path, [worker])
        got = wait_for_alerts(settings, expected, [worker])
        assert customer_alerts(got) == customer_alerts(expected)  # none missing, extra, twice
        theirs = [a for a in got if "customer_id" not in a["labels"]]
        provider = [a for a in expected if "customer_id" not in a["labels"]]
        assert sorted((a["fingerprint"], a["status"]) for a in theirs) == sorted(
            (a["fingerprint"], a["status"]) for a in provider
        )
        for alert in theirs:
            twin = next(
                a
                for a in provider
                if (a["fingerprint"], a["status"]) == (alert["fingerprint"], alert["status"])
            )
            drift = abs(
                datetime.fromisoformat(alert["startsAt"]).timestamp()
                - datetime.fromisoformat(twin["startsAt"]).timestamp()
            )
            assert drift <= BUCKET, (alert, twin)
        metrics = worker.metrics()
        with gzip.open(traffic / "usage.jsonl.gz") as usage:
            lines = sum(1 for _ in usage)
        closing = settings.kafka.topics.partitions
        assert f'spendwatch_events_in_total{{topic="usage"}} {lines + closing}' in metrics
        assert 'spendwatch_alerts_total{alertname="spend_spike"' in metrics
    finally:
        worker.stop()


async def produce_both(settings, usage: Path, errors: Path) -> None:
    """Usage and errors produced at the same time, as live traffic arrives. One after the
    other, the errors topic got nothing while the usage file was being produced; on a busy
    machine that took longer than worker.source_idle_s (10 s), so the errors source went
    idle, the usage alone moved the watermark, and the errors came after their buckets had
    closed (seen: three retry_storm alerts missing, in a run beside a CPU-bound process)."""
    topics = settings.kafka.topics
    await asyncio.gather(
        produce(settings.kafka, usage, topics.usage),
        produce(settings.kafka, errors, topics.errors),
    )


def send_traffic(
    settings, traffic: Path, tmp_path: Path, workers: list[WorkerProcess], before_closing=None
) -> None:
    """Customers (and wait until loaded), usage, errors; then closing events."""
    topics = settings.kafka.topics
    customers = load_customers(traffic / "customers.jsonl")
    asyncio.run(produce(settings.kafka, traffic / "customers.jsonl", topics.customers))
    wait_for(
        lambda: min(w.health()["customers"] for w in workers) >= len(customers),
        60,
        "customers loaded",
    )
    asyncio.run(produce_both(settings, traffic / "usage.jsonl.gz", traffic / "errors.jsonl.gz"))
    if before_closing:
        before_closing()
    end = datetime.fromisoformat("2026-11-03T12:00:00+00:00")
    asyncio.run(produce(settings.kafka, closing_events(settings, end, tmp_path), topics.usage))


def test_bad_input_lands_in_the_dead_letter_topic_with_its_reason(kafka_settings, tmp_path):
    settings = kafka_settings
    good = {
        "event_id": "ok-1",
        "ts": "2026-11-02T10:00:00Z",
        "customer_id": "acme",
        "endpoint": "chat",
        "provider": "openai",
        "model": "gpt-4o",
        "input_tokens": 10,
    }
    bad = [
        (b"{not json", "json_invalid"),
        (b"\xff\xfe\xfd", "invalid_utf8"),
        (orjson.dumps({**good, "event_id": "b1", "input_tokens": "ten"}), "int_type"),
        (orjson.dumps({**good, "event_id": "b2", "input_tokens": -1}), "greater_than_equal"),
        (orjson.dumps({k: v for k, v in good.items() if k != "model"}), "missing"),
        (orjson.dumps({**good, "event_id": "b3", "input_tokens": 10**15}), "less_than_equal"),
        (orjson.dumps({**good, "event_id": "b4", "ts": "1970-01-02T00:00:00Z"}), "bad_timestamp"),
        (orjson.dumps({**good, "event_id": "b5", "ts": "2100-06-01T00:00:00Z"}), "bad_timestamp"),
        (orjson.dumps({**good, "event_id": "b6", "tags": {"x": "y" * 70_000}}), "too_large"),
        (orjson.dumps({**good, "event_id": "b7", "ts": time.time() + 7200}), "ts_in_future"),
    ]
    records = (
        [orjson.dumps(good)]
        + [raw for raw, _ in bad]
        + [orjson.dumps({**good, "event_id": "ok-2", "ts": "2026-11-02T10:00:05Z"})]
    )
    path = write_lines(tmp_path / "mixed.jsonl", records)

    worker = WorkerProcess(settings, tmp_path).start()
    try:
        worker.wait_ready()
        asyncio.run(produce(settings.kafka, path, settings.kafka.topics.usage))
        letters = wait_for(
            lambda: (
                (got := read_topic(settings, settings.kafka.topics.deadletter))
                and len(got) >= len(bad)
                and got
            ),
            120,
            f"dead letters; log {worker.log_path}",
        )
        assert len(letters) == len(bad)
        by_value = {m.value: dict(m.headers) for m in letters}
        for raw, reason in bad:
            assert by_value[raw]["x-spendwatch-reason"].decode() == reason  # original bytes kept
        wait_for(
            lambda: (
                f'spendwatch_events_in_total{{topic="usage"}} {len(records)}' in worker.metrics()
            ),
            30,
            "both good events counted after the bad ones (the stream went on)",
        )
        metrics = worker.metrics()
        assert 'spendwatch_dead_letters_total{reason="bad_timestamp"} 2' in metrics
        assert 'spendwatch_dead_letters_total{reason="json_invalid"} 1' in metrics
    finally:
        worker.stop()


def split_at(path: Path, at: float, out: Path) -> tuple[Path, Path]:
    """``path``'s lines before the first one stamped at or after ``at`` (epoch s), and the
    rest, as two files in ``out``: sent one after the other they are the file, in order."""
    with gzip.open(path) as lines:
        records = [line.rstrip(b"\n") for line in lines]
    cut = next(
        (i for i, r in enumerate(records) if to_epoch_seconds(orjson.loads(r)["ts"]) >= at),
        len(records),
    )
    stem = path.name.split(".")[0]
    return (
        write_lines(out / f"{stem}-1.jsonl", records[:cut]),
        write_lines(out / f"{stem}-2.jsonl", records[cut:]),
    )


def end_offset(settings, topic: str) -> int:
    """The sum of ``topic``'s partitions' end offsets: how many records it has ever had."""

    async def read() -> int:
        kafka = settings.kafka
        consumer = AIOKafkaConsumer(**client_kwargs(kafka), group_id=None)
        await consumer.start()
        try:
            parts = [TopicPartition(topic, p) for p in await partitions_of(kafka, topic)]
            return sum((await consumer.end_offsets(parts)).values())
        finally:
            await consumer.stop()

    return asyncio.run(read())


def detected(worker: WorkerProcess) -> int:
    for line in worker.metrics().splitlines():
        if line.startswith("spendwatch_events_detected_total "):
            return int(float(line.split()[-1]))
    return 0


class RollupTooLarge(Exception):
    """A worker crashed sending a rollup report over the broker's 1 MB message limit."""


def running(worker: WorkerProcess) -> None:
    """Fail at once if ``worker`` has exited, with RollupTooLarge for that known crash."""
    assert worker.proc is not None
    if worker.proc.poll() is None:
        return
    log = worker.log_path.read_text(errors="replace")
    if "MessageSizeTooLargeError" in log:
        raise RollupTooLarge(f"{worker.log_path}")
    raise AssertionError(f"worker exited {worker.proc.returncode}; log {worker.log_path}")


# A restarted worker that closes many buckets in one tick (a source idle while the other
# brought hours of event time) once sent them all in one rollup report over the broker's
# 1 MB limit and crashed; it sends them in parts now (stages.rollup_reports).
def test_a_worker_killed_mid_stream_resumes_from_its_changelogs(kafka_settings, traffic, tmp_path):
    """Half the traffic sent, SIGKILL while the worker is at it, a new worker, the other half:
    baselines come back from the changelogs (the day-2 incidents still fire, which a second
    warm-up would miss), no alert is lost and none is sent twice (the outbox), even after
    waiting until nothing more can come."""
    settings = kafka_settings
    topics = settings.kafka.topics
    expected = replay_alerts(settings, traffic)
    middle = datetime.fromisoformat("2026-11-02T18:00:00+00:00").timestamp()  # 18 h of 36
    usage = split_at(traffic / "usage.jsonl.gz", middle, tmp_path)
    errors = split_at(traffic / "errors.jsonl.gz", middle, tmp_path)
    closing = closing_events(
        settings, datetime.fromisoformat("2026-11-03T12:00:00+00:00"), tmp_path
    )
    first = WorkerProcess(settings, tmp_path, "w1").start()
    second = WorkerProcess(settings, tmp_path, "w2")
    try:
        first.wait_ready()
        customers = load_customers(traffic / "customers.jsonl")
        asyncio.run(produce(settings.kafka, traffic / "customers.jsonl", topics.customers))
        wait_for(lambda: first.health()["customers"] >= len(customers), 60, "customers loaded")
        asyncio.run(produce_both(settings, usage[0], errors[0]))
        # killed while it works through the first half (its state partly in the changelogs)
        wait_for(
            lambda: running(first) or events_in(first) >= 20_000, 120, "the first worker at work"
        )
        first.kill()
        second.start().wait_ready(180)
        asyncio.run(produce_both(settings, usage[1], errors[1]))
        asyncio.run(produce(settings.kafka, closing, topics.usage))
        wait_for_alerts(settings, expected, [first, second], alive=lambda: running(second))
        # Keep looking until a late duplicate would have arrived: the new worker has detected
        # every event sent since the crash, and neither its count nor the alerts topic moves
        # between two reads 5 s apart (longer than worker.tick_s, which closes idle buckets).
        after_crash = sum(f.read_bytes().count(b"\n") for f in (usage[1], errors[1], closing))

        def settled() -> bool:
            running(second)
            before = (detected(second), end_offset(settings, topics.alerts))
            if before[0] < after_crash:
                return False
            time.sleep(5)
            return (detected(second), end_offset(settings, topics.alerts)) == before

        wait_for(settled, 180, "the new worker done and the alerts topic still", every_s=1)
        got = [json.loads(m.value) for m in read_topic(settings, topics.alerts)]
        twice = [i for i, n in Counter(identity(a) for a in got).items() if n > 1]
        assert twice == [], f"sent twice: {twice}"
        # every alert replay fires, none lost and none extra
        assert customer_alerts(got) == customer_alerts(expected)
    finally:
        first.kill()
        second.stop()


def events_in(worker: WorkerProcess) -> int:
    total = 0
    for line in worker.metrics().splitlines():
        if line.startswith("spendwatch_events_in_total{"):
            total += int(float(line.split()[-1]))
    return total


def test_two_workers_share_the_partitions_and_one_stopping_loses_no_alert(
    kafka_settings, traffic, tmp_path
):
    settings = kafka_settings
    expected = replay_alerts(settings, traffic)
    one = WorkerProcess(settings, tmp_path, "w1").start()
    two = WorkerProcess(settings, tmp_path, "w2").start()

    def stop_one_mid_stream() -> None:
        wait_for(lambda: events_in(one) > 0 and events_in(two) > 0, 120, "both taking part")
        two.stop()  # its partitions and their state move to the other worker

    try:
        one.wait_ready()
        two.wait_ready()
        send_traffic(settings, traffic, tmp_path, [one, two], before_closing=stop_one_mid_stream)
        got = wait_for_alerts(settings, expected, [one, two])
        # every alert replay fires, none lost and none sent twice (the outbox)
        assert customer_alerts(got) == customer_alerts(expected)
    finally:
        one.stop()
        two.stop()
