"""produce and topic replay against a real broker: the same alerts as file replay."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path

import pytest

from stream.core.customers import load_customers
from stream.core.pipeline import Pipeline
from stream.core.pricing import PriceTable
from stream.kafka.produce import produce
from stream.kafka.topic_replay import replay_topics
from stream.offline.simulate import SimConfig, simulate
from tests.integration.workers import replay_recorded

pytestmark = pytest.mark.integration


def identity(alerts):
    return sorted((a.fingerprint, a.status, a.starts_at, a.ends_at) for a in alerts)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("recorded")
    simulate(out, SimConfig(days=1.5, customers=8, seed=4, incidents=True, rate_per_min=60))
    return out


def test_topic_replay_of_produced_traffic_fires_what_file_replay_fires(kafka_settings, recorded):
    settings = kafka_settings
    prices = PriceTable.load(settings.resolve(settings.prices_file))
    customers = load_customers(recorded / "customers.jsonl")
    from_files = replay_recorded(settings, recorded)
    assert from_files.alerts

    topics = settings.kafka.topics
    sent_usage = asyncio.run(produce(settings.kafka, recorded / "usage.jsonl.gz", topics.usage))
    sent_errors = asyncio.run(produce(settings.kafka, recorded / "errors.jsonl.gz", topics.errors))
    assert sent_usage.sent + sent_errors.sent == from_files.lines
    assert sent_usage.unkeyed == 0 and sent_usage.failed == 0

    start = int(datetime.fromisoformat("2026-11-02T00:00:00+00:00").timestamp() * 1000)
    end = start + int(1.5 * 86400 * 1000)
    from_topics = asyncio.run(
        replay_topics(
            Pipeline(settings, prices, customers),
            settings.kafka,
            topics.usage,
            topics.errors,
            start,
            end,
        )
    )
    assert from_topics.lines == from_files.lines
    assert identity(from_topics.alerts) == identity(from_files.alerts)


def test_topic_replay_selects_the_time_range(kafka_settings, recorded):
    settings = kafka_settings
    topics = settings.kafka.topics
    asyncio.run(produce(settings.kafka, recorded / "usage.jsonl.gz", topics.usage))
    prices = PriceTable.load(settings.resolve(settings.prices_file))
    start = int(datetime.fromisoformat("2026-11-02T06:00:00+00:00").timestamp() * 1000)
    report = asyncio.run(
        replay_topics(
            Pipeline(settings, prices),
            settings.kafka,
            topics.usage,
            None,
            start,
            start + 3_600_000,
        )
    )
    pipeline_events = report.lines
    assert 0 < pipeline_events < 20_000
    import gzip

    import orjson

    from stream.core.events import to_epoch_seconds

    expected = 0
    with gzip.open(recorded / "usage.jsonl.gz") as lines:
        for line in lines:
            ts_ms = int(to_epoch_seconds(orjson.loads(line)["ts"]) * 1000)
            expected += start <= ts_ms < start + 3_600_000
    assert pipeline_events == expected


def test_backtest_of_a_topic_range_equals_the_backtest_of_the_files(
    kafka_settings, recorded, tmp_path
):
    import json
    import subprocess
    import sys

    from tests.integration.workers import REPO

    settings = kafka_settings
    topics = settings.kafka.topics
    asyncio.run(produce(settings.kafka, recorded / "usage.jsonl.gz", topics.usage))
    asyncio.run(produce(settings.kafka, recorded / "errors.jsonl.gz", topics.errors))
    config = tmp_path / "config.yaml"
    config.write_text(
        json.dumps(
            {
                "prices_file": str(REPO / "config" / "prices.yaml"),
                "kafka": {"bootstrap_servers": settings.kafka.bootstrap_servers},
            }
        )
    )
    common = ["--config", str(config), "--customers", str(recorded / "customers.jsonl"), "--json"]

    def backtest(*args: str) -> dict:
        done = subprocess.run(
            [sys.executable, "-m", "stream.commands.cli", "backtest", *args, *common],
            cwd=REPO,
            capture_output=True,
            check=True,
        )
        return json.loads(done.stdout)

    from_files = backtest(
        str(recorded / "usage.jsonl.gz"), "--errors", str(recorded / "errors.jsonl.gz")
    )
    from_topics = backtest(
        "--topic", topics.usage, "--errors-topic", topics.errors,
        "--from", "2026-11-02T00:00:00Z", "--to", "2026-11-03T12:00:00Z",
    )  # fmt: skip
    assert from_files["runs"][0]["episodes"]
    assert from_topics["runs"][0]["episodes"] == from_files["runs"][0]["episodes"]
