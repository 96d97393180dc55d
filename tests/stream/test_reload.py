"""Hot reload: the config watcher applies a changed file, refuses a bad one and keeps the
settings in force, and the notify stage swaps routes over the same alert state."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path

import pytest

from stream.kafka.notify_agent import NotifyStage
from stream.kafka.reload import ConfigWatcher, needs_restart, version_of
from stream.metrics import Metrics
from stream.settings import Settings, load_settings
from tests.notify.servers import alert_item

PRICES = Path(__file__).resolve().parents[2] / "config" / "prices.yaml"
BASE = f"prices_file: {PRICES}\ndetectors:\n  spend_spike:\n    relative_margin: {{margin}}\n"


@pytest.fixture(autouse=True)
def no_env_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("SPENDWATCH_"):
            monkeypatch.delenv(name)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    stat = path.stat()  # a new mtime even within the file system's clock tick
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    return path


def watcher_on(tmp_path: Path, margin: float = 0.2) -> tuple[ConfigWatcher, Path, Metrics]:
    path = write(tmp_path / "spendwatch.yaml", BASE.format(margin=margin))
    metrics = Metrics()
    return ConfigWatcher(path, load_settings(path), metrics), path, metrics


def test_an_untouched_or_rewritten_identical_file_is_unchanged(tmp_path: Path) -> None:
    watcher, path, metrics = watcher_on(tmp_path)
    assert watcher.version == version_of(path.read_bytes())
    assert watcher.check().result == "unchanged"
    write(path, path.read_text())  # same bytes, new mtime
    assert watcher.check().result == "unchanged"
    assert watcher.check(force=True).result == "unchanged"  # SIGHUP with nothing new
    assert metrics.value("spendwatch_config_reload_total", result="applied") == 0
    assert metrics.value("spendwatch_config_info", version=watcher.version) == 1


def test_a_raised_threshold_is_applied_with_a_new_version(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    watcher, path, metrics = watcher_on(tmp_path)
    old = watcher.version
    write(path, BASE.format(margin=5.0))
    outcome = watcher.check()
    assert outcome.result == "applied"
    assert outcome.settings is not None
    assert outcome.settings.detectors.spend_spike.relative_margin == 5.0
    assert watcher.version == old  # not in force until the worker applied it
    with caplog.at_level(logging.INFO, logger="spendwatch.config"):
        watcher.applied(outcome)
    assert watcher.version == version_of(path.read_bytes()) != old
    assert watcher.settings.detectors.spend_spike.relative_margin == 5.0
    assert watcher.reloads == 1
    assert f"config applied version={watcher.version}" in caplog.text
    assert metrics.value("spendwatch_config_reload_total", result="applied") == 1
    assert metrics.value("spendwatch_config_info", version=watcher.version) == 1
    assert metrics.value("spendwatch_config_info", version=old) == 0
    info = watcher.info()
    assert info["config_version"] == watcher.version
    assert info["config_file"] == str(path)
    assert info["config_reloads"] == 1


def test_an_invalid_file_is_refused_once_and_the_old_settings_stay(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    watcher, path, metrics = watcher_on(tmp_path)
    old, settings = watcher.version, watcher.settings
    write(path, BASE.format(margin=-1))
    with caplog.at_level(logging.ERROR, logger="spendwatch.config"):
        outcome = watcher.check()
    assert outcome.result == "refused"
    assert outcome.settings is None
    assert (watcher.version, watcher.settings) == (old, settings)
    [line] = [r.getMessage() for r in caplog.records]
    assert line.startswith(f"config refused file={path} ")
    assert "detectors.spend_spike.relative_margin" in line and "greater than 0" in line
    assert f"version {old} stays in force" in line
    assert metrics.value("spendwatch_config_reload_total", result="refused") == 1
    assert watcher.info()["config_refused"] == outcome.version
    assert watcher.check().result == "unchanged"  # not refused again every poll ...
    assert watcher.check(force=True).result == "refused"  # ... but again on SIGHUP
    assert metrics.value("spendwatch_config_reload_total", result="refused") == 2
    write(path, BASE.format(margin=0.2))  # put back: the version in force, nothing to do
    assert watcher.check().result == "unchanged"
    assert watcher.info()["config_refused"] is None


def test_a_file_that_is_not_yaml_or_is_gone_is_refused(tmp_path: Path) -> None:
    watcher, path, metrics = watcher_on(tmp_path)
    write(path, "detectors: [unclosed\n")
    assert watcher.check().result == "refused"
    path.unlink()
    assert watcher.check().result == "refused"
    assert metrics.value("spendwatch_config_reload_total", result="refused") == 2


@pytest.mark.parametrize(
    ("extra", "fields"),
    [
        ("buckets:\n  width_s: 30\n", ["buckets.width_s"]),
        (
            "kafka:\n  app_id: other\n  topics: {partitions: 8}\n",
            ["kafka.app_id", "kafka.topics.partitions"],
        ),
        ("worker:\n  web_port: 7000\n", ["worker.web_port"]),
        ("ingest:\n  dedup_horizon_s: 60\n", ["ingest.dedup_horizon_s"]),
    ],
)
def test_a_change_to_settings_read_at_start_is_refused_naming_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, extra: str, fields: list[str]
) -> None:
    watcher, path, _ = watcher_on(tmp_path)
    write(path, BASE.format(margin=5.0) + extra)
    with caplog.at_level(logging.ERROR, logger="spendwatch.config"):
        outcome = watcher.check()
    assert outcome.result == "refused"
    assert f"needs a restart to change {', '.join(fields)}" in outcome.detail
    assert "nothing was applied" in caplog.text
    assert watcher.settings.detectors.spend_spike.relative_margin == 0.2  # not half-applied


def test_needs_restart_is_empty_for_thresholds_routes_and_alert_links() -> None:
    old = Settings()
    new = Settings(
        detectors={"spend_spike": {"min_z": 9}, "overrides": [{"match": {"customer_id": "a"}}]},
        alerts={"external_url": "https://example.test"},
        plans={"default": {"margin_target": 0.3}},
    )
    assert needs_restart(old, new) == []
    assert needs_restart(old, Settings(buckets={"allowed_lateness_s": 5})) == [
        "buckets.allowed_lateness_s"
    ]


def test_the_watch_loop_applies_on_change_and_at_once_on_sighup(tmp_path: Path) -> None:
    watcher, path, metrics = watcher_on(tmp_path)
    applied: list[Settings] = []

    async def apply(settings: Settings) -> None:
        applied.append(settings)

    async def scenario() -> None:
        task = asyncio.create_task(watcher.run(apply, poll_s=0.02))
        try:
            write(path, BASE.format(margin=3.0))
            await until(lambda: len(applied) == 1)
            # SIGHUP: looked at even when size and mtime did not move.
            text = BASE.format(margin=4.0)
            stat = path.stat()
            path.write_text(text)
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
            watcher.hangup()
            await until(lambda: len(applied) == 2)
        finally:
            task.cancel()

    asyncio.run(scenario())
    assert [s.detectors.spend_spike.relative_margin for s in applied] == [3.0, 4.0]
    assert watcher.reloads == 2
    assert metrics.value("spendwatch_config_reload_total", result="applied") == 2


def test_a_failed_apply_is_refused_and_keeps_the_version_in_force(tmp_path: Path) -> None:
    watcher, path, metrics = watcher_on(tmp_path)
    old = watcher.version

    async def apply(settings: Settings) -> None:
        raise ValueError("receiver secret missing")

    async def scenario() -> None:
        task = asyncio.create_task(watcher.run(apply, poll_s=0.02))
        try:
            write(path, BASE.format(margin=3.0))
            await until(
                lambda: metrics.value("spendwatch_config_reload_total", result="refused") == 1
            )
        finally:
            task.cancel()

    asyncio.run(scenario())
    assert watcher.version == old
    assert watcher.settings.detectors.spend_spike.relative_margin == 0.2


def notify_settings(route: dict, silences: list[dict]) -> Settings:
    return Settings(
        notify={
            "route": route,
            "receivers": [
                {"name": "a", "kind": "webhook", "webhook": {"url": "http://127.0.0.1:9/a"}},
                {"name": "b", "kind": "webhook", "webhook": {"url": "http://127.0.0.1:9/b"}},
            ],
            "silences": silences,
        }
    )


def test_a_notify_reload_keeps_active_alerts_and_drops_a_removed_static_silence(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SPENDWATCH_WEBHOOK_SECRET", "s")
    silence = {
        "matchers": ['customer_id="quiet"'],
        "starts_at": "2020-01-01T00:00:00Z",
        "ends_at": "2099-01-01T00:00:00Z",
        "created_by": "ops",
        "comment": "maintenance",
    }
    first = notify_settings({"receivers": ["a"]}, [silence])
    second = notify_settings({"receivers": ["b"]}, [])

    async def scenario() -> NotifyStage:
        alerts: dict[bytes, bytes] = {}
        stage = NotifyStage(first, alerts, {}, {}, Metrics())
        await stage.take_over()
        await stage.add([alert_item("firing", customer_id="acme")])
        assert len(stage.silences) == 1
        before = stage.dispatcher
        await stage.reload(second, stage.prepare_reload(second), drain_s=0.1)
        assert stage.dispatcher is not before
        assert stage.dispatcher is not None
        assert len(stage.dispatcher.alerts) == 1  # the same state, not a fresh one
        assert stage.silences == {}
        [n] = stage.dispatcher.due(time.time() + 3600)
        assert n.receiver == "b"  # the new route
        await stage.give_up()
        return stage

    asyncio.run(scenario())


def test_an_alert_read_before_the_notifier_took_over_is_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The notify agent can be handed records before the tables are recovered: the alert
    waits for the take-over instead of being dropped (its offset would be committed)."""
    monkeypatch.setenv("SPENDWATCH_WEBHOOK_SECRET", "s")
    settings = notify_settings({"receivers": ["a"]}, [])

    async def scenario() -> int:
        stage = NotifyStage(settings, {}, {}, {}, Metrics())
        early = asyncio.create_task(stage.add([alert_item("firing", customer_id="acme")]))
        await asyncio.sleep(0.05)
        assert not early.done()  # held, not dropped
        await stage.take_over()
        await asyncio.wait_for(early, 5)
        assert stage.dispatcher is not None
        count = len(stage.dispatcher.alerts)
        await stage.give_up()
        return count

    assert asyncio.run(scenario()) == 1


async def until(condition, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        await asyncio.sleep(0.01)
