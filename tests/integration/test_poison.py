"""Poison pills against a real broker: no payload on the input topics stops the worker or
its partition, and ``spendwatch produce`` sends every line it can."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from stream.kafka.connection import client_kwargs, ensure_topics
from stream.settings import Settings
from tests.integration.workers import REPO, WorkerProcess, read_topic, wait_for, worker_env

pytestmark = pytest.mark.integration


def usage_line(n: int, customer: str = "acme", **extra: object) -> bytes:
    body = {
        "event_id": f"p{n}",
        "ts": time.time() - 600 + n,
        "customer_id": customer,
        "endpoint": "chat",
        "provider": "openai",
        "model": "gpt-4o-mini",
        "input_tokens": 100,
        "output_tokens": 10,
    }
    return orjson.dumps({**body, **extra})


def test_produce_skips_a_line_over_the_limit_and_sends_the_lines_after_it(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "lines.jsonl"
    big = usage_line(2, pad="x" * 1_100_000)
    path.write_bytes(b"\n".join([usage_line(1), big, usage_line(3), usage_line(4)]) + b"\n")
    topic = kafka_settings.kafka.topics.usage
    done = subprocess.run(
        [sys.executable, "-m", "stream.commands.cli", "produce", str(path), "--topic", "usage"],
        cwd=REPO,
        env=worker_env(kafka_settings, 6066, tmp_path / "w"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr  # something was not sent: say so in the status
    assert f"{path}:2: {len(big):,} bytes > --max-bytes 1,000,000: not sent" in done.stderr
    assert "sent 3 records" in done.stderr and "1 too large to send" in done.stderr
    ids = sorted(orjson.loads(m.value)["event_id"] for m in read_topic(kafka_settings, topic))
    assert ids == ["p1", "p3", "p4"]


def deep(depth: int, n: int, **extra: object) -> bytes:
    return usage_line(n, nest=orjson.Fragment(b"[" * depth + b"]" * depth), **extra)


def send_raw(settings: Settings, records: list[tuple[str, bytes | None, bytes | None]]) -> None:
    """Send (topic, key, value) as an outside producer would: no size guard of ours."""

    async def send() -> None:
        await ensure_topics(settings.kafka)
        producer = AIOKafkaProducer(
            **client_kwargs(settings.kafka), max_request_size=2 * 1024 * 1024, acks="all"
        )
        await producer.start()
        try:
            for topic, key, value in records:
                await producer.send_and_wait(topic, value, key=key)
        finally:
            await producer.stop()

    asyncio.run(send())


def test_every_poison_pill_in_one_run_leaves_the_worker_running_with_exact_counts(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    """Usage, error and customer payloads that crashed or stalled the worker, in one run:
    each is refused with its reason (usage and errors to the dead-letter topic), the good
    events around them are counted, and the worker ends running and ready."""
    topics = kafka_settings.kafka.topics
    huge = usage_line(90, pad="z" * 1_048_300)
    assert 1_048_300 < len(huge) <= 1_048_500
    error_deep = deep(20_000, 91, error_type="timeout")
    bad_usage = [
        (deep(1_000, 80), "json_invalid"),
        (deep(20_000, 81), "json_invalid"),
        (huge, "too_large"),
        (None, "null_value"),
        (b"\xff\xfe garbage \x00", "invalid_utf8"),
        (usage_line(82, input_tokens="12"), "int_type"),
        (usage_line(83, ts="2099-01-01T00:00:00Z"), "ts_in_future"),
        (usage_line(84)[:-1] + b',"cost_usd":NaN}', "json_invalid"),  # NaN is not JSON
        (usage_line(85, cost_usd=1e308), "less_than_equal"),
        (b'{"event_id":"a","event_id":"b"}', "missing"),
        (b"[]", "not_an_object"),
        (b"", "null_value"),
    ]
    bad_errors = [(error_deep, "json_invalid")]
    bad_customers = [
        (b"acme", b"[" * 20_000 + b"]" * 20_000),
        (b"acme", b"\xff\xfe"),
        (b"acme", b'{"customer_id":"acme","plan":"pro","monthly_price_usd":"100"}'),
    ]
    good = [usage_line(n) for n in range(9)] + [usage_line(9, model="mystery-model-9")]
    good_errors = [usage_line(50, error_type="timeout")]
    records: list[tuple[str, bytes | None, bytes | None]] = []
    records += [(topics.usage, b"acme", raw) for raw in good[:5]]
    records += [(topics.usage, b"acme", raw) for raw, _ in bad_usage]
    records += [(topics.errors, b"acme", raw) for raw, _ in bad_errors]
    records += [(topics.customers, key, raw) for key, raw in bad_customers]
    records += [(topics.usage, b"acme", raw) for raw in good[5:]]
    records += [(topics.errors, b"acme", raw) for raw in good_errors]

    worker = WorkerProcess(kafka_settings, tmp_path, "poison").start()
    try:
        worker.wait_ready()
        send_raw(kafka_settings, records)
        usage_total = len(good) + len(bad_usage)
        errors_total = len(good_errors) + len(bad_errors)
        wait_for(
            lambda: (
                f'spendwatch_events_in_total{{topic="usage"}} {usage_total}'
                in (m := worker.metrics())
                and f'spendwatch_events_in_total{{topic="errors"}} {errors_total}' in m
            ),
            120,
            f"every message counted; log {worker.log_path}",
        )
        letters = wait_for(
            lambda: (
                (got := read_topic(kafka_settings, topics.deadletter))
                and len(got) >= len(bad_usage) + len(bad_errors)
                and got
            ),
            60,
            "dead letters",
        )
        assert len(letters) == len(bad_usage) + len(bad_errors)
        reasons = sorted(dict(m.headers)["x-spendwatch-reason"].decode() for m in letters)
        assert reasons == sorted(reason for _, reason in bad_usage + bad_errors)
        [cut] = [m for m in letters if "x-spendwatch-truncated" in dict(m.headers)]
        assert dict(cut.headers)["x-spendwatch-truncated"] == str(len(huge)).encode()
        assert dict(cut.headers)["x-spendwatch-reason"] == b"too_large"
        metrics = worker.metrics()
        expected = Counter(reason for _, reason in bad_usage + bad_errors)
        for reason, n in expected.items():
            assert f'spendwatch_dead_letters_total{{reason="{reason}"}} {n}' in metrics, reason
        customer_refusals = sum(
            float(line.split()[-1])
            for line in metrics.splitlines()
            if line.startswith('spendwatch_dead_letters_total{reason="customer_')
        )
        assert customer_refusals == len(bad_customers)
        # A good event of a model the price table does not know is priced by the
        # fallback and reported, as replay reports it.
        assert "spendwatch_unknown_model_events_total 1" in metrics
        assert "spendwatch_unknown_models 1" in metrics
        health = worker.wait_ready(30)
        assert health["unknown_models"] == [
            {"provider": "openai", "model": "mystery-model-9", "events": 1}
        ]
        assert health["ready"] and worker.proc is not None and worker.proc.poll() is None
        log = worker.log_path.read_text()
        assert "unknown model priced by fallback provider=openai model=mystery-model-9" in log
    finally:
        worker.stop()
    assert worker.proc.returncode == 0, worker.log_path.read_text()[-3000:]
