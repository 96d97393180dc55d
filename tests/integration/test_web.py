"""The worker's web port on a real worker: where it listens, who may read it, and what
/health says when the broker goes away."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream.settings import Settings
from tests.integration.conftest import SCRIPT
from tests.integration.workers import WorkerProcess, free_port, wait_for

pytestmark = pytest.mark.integration
TOKEN = "loopback-test-token"


def listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as /proc/net/tcp writes them) listening on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as rows:
            next(rows)
            for row in rows:
                local, state = row.split()[1], row.split()[3]
                address, hex_port = local.rsplit(":", 1)
                if int(hex_port, 16) == port and state == "0A":  # LISTEN
                    found.add(address)
    return found


def get(port: int, path: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_the_web_port_listens_on_loopback_and_every_page_but_health_needs_the_token(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    env = {"SPENDWATCH_WEB_TOKEN": TOKEN}
    worker = WorkerProcess(kafka_settings, tmp_path, "web", env=env).start()
    try:
        worker.wait_ready()
        assert listening_addresses(worker.port) == {"0100007F"}  # 127.0.0.1 only
        assert get(worker.port, "/health")[0] == 200
        for path in ("/alerts", "/metrics", "/router/", "/table/detect-state/"):
            status, body = get(worker.port, path)
            assert status == 401, path
            assert b"Bearer" in body
            assert get(worker.port, path, "wrong")[0] == 401, path
        assert get(worker.port, "/alerts", TOKEN)[0] == 200
        status, body = get(worker.port, "/metrics", TOKEN)
        assert status == 200 and b"# TYPE spendwatch_events_in_total counter" in body
    finally:
        worker.stop()


def test_without_a_token_the_pages_are_open_on_loopback(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    worker = WorkerProcess(kafka_settings, tmp_path, "open").start()
    try:
        worker.wait_ready()
        assert get(worker.port, "/alerts")[0] == 200
    finally:
        worker.stop()


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A second broker, for a test that takes it down and up again."""
    port = free_port()
    env = {
        **os.environ,
        "KAFKA_PORT": str(port),
        "KAFKA_CONTROLLER_PORT": str(free_port()),
        "KAFKA_DATA_DIR": str(tmp_path / "kafka"),
    }
    up = subprocess.run(["bash", str(SCRIPT), "up"], env=env, capture_output=True, text=True)
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        yield f"127.0.0.1:{port}", env
    finally:
        subprocess.run(["bash", str(SCRIPT), "down"], env=env, capture_output=True, text=True)


def test_health_says_not_ready_while_the_broker_is_unreachable_and_logs_stay_bounded(
    kafka_settings: Settings, tmp_path: Path, own_broker: tuple[str, dict[str, str]]
) -> None:
    bootstrap, broker_env = own_broker
    kafka = kafka_settings.kafka.model_copy(update={"bootstrap_servers": bootstrap})
    settings = kafka_settings.model_copy(update={"kafka": kafka})
    env = {"SPENDWATCH_WORKER__READY_BROKER_S": "6", "SPENDWATCH_WORKER__BROKER_PROBE_S": "1"}
    worker = WorkerProcess(settings, tmp_path, "outage", env=env).start()
    try:
        worker.wait_ready()
        down = subprocess.run(
            ["bash", str(SCRIPT), "down"], env=broker_env, capture_output=True, text=True
        )
        assert down.returncode == 0, down.stdout + down.stderr
        before = worker.log_path.stat().st_size
        health = wait_for(
            lambda: (h := worker.health()) and not h["ready"] and h,
            60,
            "/health stayed ready with the broker down",
        )
        assert health["status"] == "broker_unreachable" and not health["broker_reachable"]
        status, body = get(worker.port, "/health")
        assert status == 503 and json.loads(body)["ready"] is False
        # 20 s of outage: the clients' repeated connection errors are rate-limited.
        wait_for(lambda: worker.health()["broker_silent_s"] > 20, 60, "outage too short")
        outage_lines = worker.log_path.read_bytes()[before:].count(b"\n")
        assert outage_lines < 200, f"{outage_lines} log lines in a 20 s outage"
        up = subprocess.run(
            ["bash", str(SCRIPT), "up"], env=broker_env, capture_output=True, text=True
        )
        assert up.returncode == 0, up.stdout + up.stderr
        worker.wait_ready(120)
        assert worker.proc is not None and worker.proc.poll() is None
    finally:
        worker.stop()
