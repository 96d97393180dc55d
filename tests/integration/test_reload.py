"""Hot reload on the real broker: a running worker's config file is changed to raise one
customer's spend_spike threshold. Alerts after the change follow the new threshold, the
baselines learnt before it are kept (another customer's spike fires at once, inside what
would be a second warm-up), and the process is the same one. An invalid edit, and a
SIGHUP with it in place, leave the version in force and are counted as refused."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream.core.pipeline import Pipeline
from stream.core.pricing import PriceTable
from stream.kafka.produce import produce
from stream.kafka.reload import version_of
from stream.offline.replay import replay_files
from stream.settings import Settings, load_settings
from tests.integration.workers import (
    REPO,
    WorkerProcess,
    closing_records,
    key_in_partition,
    read_topic,
    wait_for,
)

pytestmark = pytest.mark.integration
WIDTH = 60
PRICES = REPO / "config" / "prices.yaml"
TOKENS = 10_000  # gpt-4o input at $2.50 per million: $0.025 an event
WARM_MINUTES, SPIKE_MINUTES, AFTER_MINUTES = 30, 5, 10


def config_text(override: dict[str, Any] | None = None, margin: float = 0.2) -> str:
    """Plain (not seasonal) baselines warm after 20 buckets; fire after 2 breaching ones."""
    spike = {
        "seasonal": False,
        "warmup_s": 20 * WIDTH,
        "consecutive": 2,
        "calm_buckets": 2,
        # No flap damping: the episode must resolve within the 10 calm minutes sent.
        "rearm_s": 0,
        "relative_margin": margin,
    }
    detectors: dict[str, Any] = {"spend_spike": spike}
    if override:
        detectors["overrides"] = [override]
    return json.dumps({"prices_file": str(PRICES), "detectors": detectors}, indent=2) + "\n"


def events(customers: list[str], start: float) -> list[bytes]:
    """Steady spend ($3/h each) for WARM_MINUTES, then 10x for SPIKE_MINUTES, then steady."""
    out = []
    for minute in range(WARM_MINUTES + SPIKE_MINUTES + AFTER_MINUTES):
        spiking = WARM_MINUTES <= minute < WARM_MINUTES + SPIKE_MINUTES
        for customer in customers:
            for i in range(20 if spiking else 2):
                out.append(
                    orjson.dumps(
                        {
                            "event_id": f"{customer}-{minute}-{i}",
                            "ts": start + minute * WIDTH + i,
                            "customer_id": customer,
                            "endpoint": "chat",
                            "provider": "openai",
                            "model": "gpt-4o",
                            "input_tokens": TOKENS,
                        }
                    )
                )
    return out


def send(settings: Settings, lines: list[bytes], path: Path) -> None:
    path.write_bytes(b"\n".join(lines) + b"\n")
    asyncio.run(produce(settings.kafka, path, settings.kafka.topics.usage))


def firing_spikes(alerts: list[dict[str, Any]]) -> set[str]:
    """Customers with a firing spend_spike (customer or customer + endpoint key)."""
    return {
        a["labels"]["customer_id"]
        for a in alerts
        if a["labels"]["alertname"] == "spend_spike" and a["status"] == "firing"
    }


def replayed(config: Path, lines: list[bytes], tmp: Path) -> set[str]:
    settings = load_settings(config)
    path = tmp / "replay.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    pipeline = Pipeline(settings, PriceTable.load(PRICES))
    report = replay_files(pipeline, [path], progress=False)
    return firing_spikes([a.to_payload() for a in report.alerts])


def refused(worker: WorkerProcess) -> int:
    for line in worker.metrics().splitlines():
        if line.startswith('spendwatch_config_reload_total{result="refused"}'):
            return int(float(line.split()[-1]))
    return 0


def test_a_changed_config_applies_live_keeping_baselines_and_a_bad_one_is_refused(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    settings = kafka_settings
    partitions = settings.kafka.topics.partitions
    # Both customers in one detect partition: their buckets are judged in the same pass.
    calm = key_in_partition(0, partitions, "calm-")
    spiky = key_in_partition(0, partitions, "spiky-")
    start = (time.time() // 3600 - 3) * 3600  # three hours ago, on the hour
    traffic = events([calm, spiky], start)
    warm = [e for e in traffic if orjson.loads(e)["ts"] < start + WARM_MINUTES * WIDTH]
    rest = traffic[len(warm) :]

    config = tmp_path / "spendwatch.yaml"
    config.write_text(config_text())
    raised = tmp_path / "raised.yaml"  # calm's spikes must be 20x their baseline
    raised.write_text(
        config_text({"match": {"customer_id": calm}, "spend_spike": {"relative_margin": 20.0}})
    )
    # The reference: under the first config both spikes fire, under the second only one.
    assert replayed(config, traffic, tmp_path) == {calm, spiky}
    assert replayed(raised, traffic, tmp_path) == {spiky}

    env = {"SPENDWATCH_WORKER__SOURCE_IDLE_S": "3", "SPENDWATCH_WORKER__CONFIG_POLL_S": "0.5"}
    worker = WorkerProcess(settings, tmp_path, "r1", config=config, env=env).start()
    try:
        first = worker.wait_ready()
        assert first["config_version"] == version_of(config.read_bytes())
        assert first["config_file"] == str(config)
        pid = worker.proc.pid if worker.proc else None

        send(settings, warm, tmp_path / "warm.jsonl")
        config.write_bytes(raised.read_bytes())  # ship the raised threshold
        new_version = version_of(raised.read_bytes())
        health = wait_for(
            lambda: (h := worker.health()) and h["config_version"] == new_version and h,
            30,
            f"config not applied; log {worker.log_path}",
        )
        assert health["config_reloads"] == 1 and health["ready"]
        assert "config applied version=" + new_version in worker.log_path.read_text()

        closing = closing_records(settings, start + 90 * WIDTH)
        send(settings, rest + closing, tmp_path / "rest.jsonl")

        def spiky_resolved() -> list[dict[str, Any]] | None:
            got = [json.loads(m.value) for m in read_topic(settings, settings.kafka.topics.alerts)]
            done = any(
                a["labels"]["customer_id"] == spiky and a["status"] == "resolved" for a in got
            )
            return got if done else None

        alerts = wait_for(spiky_resolved, 60, f"spiky's spike episode; log {worker.log_path}")
        # The raised threshold holds for calm; spiky fires inside what a reset baseline
        # would still be warming up for (20 buckets): the learnt baselines were kept.
        assert firing_spikes(alerts) == {spiky}
        assert worker.proc is not None and worker.proc.poll() is None
        assert worker.proc.pid == pid

        # An invalid edit: refused, reported, the version in force stays.
        config.write_text(config_text(margin=-1))
        wait_for(lambda: refused(worker) == 1, 30, "the invalid config was not refused")
        log = worker.log_path.read_text()
        assert f"config refused file={config}" in log
        assert "detectors.spend_spike.relative_margin" in log
        # SIGHUP looks again at once (and does not end the worker).
        worker.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: refused(worker) == 2, 30, "SIGHUP did not make the worker look")
        health = worker.health()
        assert health is not None
        assert health["config_version"] == new_version and health["config_refused"]
        assert worker.proc.poll() is None
        assert f'spendwatch_config_info{{version="{new_version}"}} 1' in worker.metrics()
    finally:
        worker.stop()
