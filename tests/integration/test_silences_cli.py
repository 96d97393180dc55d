"""``spendwatch silence add / list / expire`` as a user runs them, on a real broker.

Each test has its own silences topic (the ``kafka_settings`` prefix); the commands run
as subprocesses, pointed at the test broker and topic through the environment.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import orjson
import pytest

from stream.kafka.silence_topic import follow_silences, read_silences, write_silence
from stream.notify.silences import Silence, SilenceStore
from stream.settings import Settings
from tests.notify.cli_config import write_config

pytestmark = pytest.mark.integration


def spendwatch(settings: Settings, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "SPENDWATCH_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "SPENDWATCH_KAFKA__TOPICS__SILENCES": settings.kafka.topics.silences,
    }
    return subprocess.run(
        [sys.executable, "-m", "stream.commands.cli", "silence", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


@pytest.fixture
def config(tmp_path: Path) -> Path:
    static = {
        "id": "nightly-batch",
        "matchers": ['customer_id="initech"'],
        "starts_at": "2020-01-01T00:00:00Z",
        "ends_at": "2099-01-01T00:00:00Z",
        "author": "ops",
        "comment": "static window",
    }
    return write_config(tmp_path, {"silences": [static]})


def listed(settings: Settings, config: Path, *flags: str) -> dict[str, dict]:
    result = spendwatch(settings, config, "list", "--json", *flags)
    assert result.returncode == 0, result.stderr
    return {item["id"]: item for item in map(orjson.loads, result.stdout.splitlines())}


def test_a_silence_added_is_listed_active_and_expired_on_request(kafka_settings, config):
    added = spendwatch(
        kafka_settings, config, "add",
        'alertname="spend_spike"', 'customer_id=~"acme-.*"',
        "--duration", "1h30m", "--author", "ana", "--comment", "load test",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    sid = added.stdout.strip()
    assert uuid.UUID(sid)
    items = listed(kafka_settings, config)
    item = items[sid]
    assert item["state"] == "active" and item["source"] == "topic"
    assert item["matchers"] == ['alertname="spend_spike"', 'customer_id=~"acme-.*"']
    assert item["ends_at"] - item["starts_at"] == pytest.approx(5400, abs=0.01)
    assert (item["created_by"], item["comment"]) == ("ana", "load test")
    assert items["nightly-batch"]["source"] == "config"

    table = spendwatch(kafka_settings, config, "list")
    assert table.returncode == 0
    [row] = [line for line in table.stdout.splitlines() if line.startswith(sid)]
    assert row.split()[1:4] == ["active", 'alertname="spend_spike"', 'customer_id=~"acme-.*"']

    expired = spendwatch(kafka_settings, config, "expire", sid)
    assert expired.returncode == 0, expired.stderr
    assert sid not in listed(kafka_settings, config)  # expired ones are hidden ...
    again = listed(kafka_settings, config, "--all")[sid]  # ... unless asked for
    assert again["state"] == "expired" and again["ends_at"] <= time.time()
    assert again["starts_at"] == item["starts_at"]


def test_a_pending_silence_starts_later_and_ends_at_the_given_time(kafka_settings, config):
    start, end = time.time() + 3600, time.time() + 7200
    added = spendwatch(
        kafka_settings, config, "add", "customer_id=globex",
        "--start", str(int(start)), "--end", str(int(end)), "--comment", "migration",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    item = listed(kafka_settings, config)[added.stdout.strip()]
    assert item["state"] == "pending"
    assert (item["starts_at"], item["ends_at"]) == (int(start), int(end))
    assert item["created_by"]  # the login name when --author is not given


def test_bad_input_is_refused_with_a_clear_error_and_nothing_is_written(kafka_settings, config):
    for argv, message in [
        (['customer_id=~"(("', "--duration", "1h"], "bad matcher 'customer_id=~\"((\"'"),
        (['customer_id~"acme"', "--duration", "1h"], 'expected label="value"'),
        (['customer_id=~".*"', "--duration", "1h"], "would silence every alert"),
        (["customer_id=acme", "--duration", "2 hours"], "bad duration '2 hours'"),
        (["customer_id=acme", "--end", "2001-01-01T00:00Z"], "must be after the start"),
        (["a=b", "--start", "2000-01-01T00:00Z", "--end", "2001-01-01T00:00Z"], "already past"),
    ]:
        result = spendwatch(kafka_settings, config, "add", *argv, "--comment", "x")
        assert result.returncode == 2, (argv, result.stderr)
        assert message in result.stderr, result.stderr
    assert asyncio.run(read_silences(kafka_settings.kafka)) == {}


def test_expiring_an_unknown_or_static_silence_is_an_error(kafka_settings, config):
    unknown = spendwatch(kafka_settings, config, "expire", "no-such-id")
    assert unknown.returncode == 1
    assert f"no silence 'no-such-id' in topic {kafka_settings.kafka.topics.silences}" in (
        unknown.stderr
    )
    static = spendwatch(kafka_settings, config, "expire", "nightly-batch")
    assert static.returncode == 1
    assert "edit or remove it there" in static.stderr


def test_the_topic_keeps_the_newest_record_per_silence_and_followers_see_changes(
    kafka_settings,
):
    kafka = kafka_settings.kafka

    async def scenario() -> None:
        now = time.time()
        first = Silence("s-1", ('customer_id="acme"',), now, now + 600, "ana", "first")
        await write_silence(kafka, first)
        table: dict[str, dict] = {}
        caught_up = asyncio.Event()
        follower = asyncio.create_task(follow_silences(kafka, table, caught_up))
        try:
            await asyncio.wait_for(caught_up.wait(), 30)
            assert table == {"s-1": first.to_dict()}
            store = SilenceStore(table)
            assert store.mutes({"customer_id": "acme"}, now + 1) == ["s-1"]
            ended = Silence("s-1", first.matchers, now, now + 1, "ana", "first")
            await write_silence(kafka, ended)
            deadline = time.monotonic() + 30
            while table["s-1"]["ends_at"] != now + 1:
                assert time.monotonic() < deadline, table
                await asyncio.sleep(0.05)
            assert store.mutes({"customer_id": "acme"}, now + 2) == []
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
        assert await read_silences(kafka) == {"s-1": ended.to_dict()}

    asyncio.run(scenario())
