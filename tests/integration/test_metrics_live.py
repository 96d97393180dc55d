"""/metrics of a real worker on a real broker is valid Prometheus text, per promtool."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from stream.kafka.produce import produce
from tests.integration.workers import WorkerProcess, wait_for
from tests.promtool import check_metrics

pytestmark = pytest.mark.integration

GOOD = {
    "event_id": "ok-1",
    "ts": "2026-11-02T10:00:00Z",
    "customer_id": "acme",
    "endpoint": "chat",
    "provider": "openai",
    "model": "gpt-4o",
    "input_tokens": 10,
}


def send(settings, tmp: Path, name: str, records: list[bytes]) -> None:
    path = tmp / f"{name}.jsonl"
    path.write_bytes(b"\n".join(records) + b"\n")
    asyncio.run(produce(settings.kafka, path, settings.kafka.topics.usage))


def test_worker_metrics_pass_promtool_after_good_events_and_a_dead_letter(kafka_settings, tmp_path):
    settings = kafka_settings
    worker = WorkerProcess(settings, tmp_path).start()
    try:
        worker.wait_ready()
        assert "# TYPE spendwatch_dead_letters_total counter" in worker.metrics()

        good = [
            orjson.dumps({**GOOD, "event_id": f"ok-{n}", "ts": f"2026-11-02T10:00:0{n}Z"})
            for n in range(3)
        ]
        send(settings, tmp_path, "good", good)
        wait_for(
            lambda: 'spendwatch_events_in_total{topic="usage"} 3' in worker.metrics(),
            60,
            f"the three good events counted; log {worker.log_path}",
        )
        send(settings, tmp_path, "bad", [b"{not json"])
        wait_for(
            lambda: 'spendwatch_dead_letters_total{reason="json_invalid"} 1' in worker.metrics(),
            60,
            f"the malformed event counted as a dead letter; log {worker.log_path}",
        )

        text = worker.metrics()
        result = check_metrics(text)
        assert result.returncode == 0, f"{result.stdout}{result.stderr}\n{text}"
        lines = text.splitlines()
        at = lines.index("# TYPE spendwatch_dead_letters_total counter")
        assert lines[at - 1].startswith("# HELP spendwatch_dead_letters_total ")
        assert 'spendwatch_batch_seconds_count{stage="ingest"}' in text
    finally:
        worker.stop()
