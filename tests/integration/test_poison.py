"""Poison pills against a real broker: no payload on the input topics stops the worker or
its partition, and ``spendwatch produce`` sends every line it can."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from stream.settings import Settings
from tests.integration.workers import REPO, read_topic, worker_env

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
