"""A real Apache Kafka broker for the integration tests, started by the project's script.

The session starts its own single-node KRaft broker (scripts/kafka/kafka.sh) on its own
ports and data directory, so it never touches a developer's broker, and stops only that
broker at the end. Each test gets topics of its own (a unique prefix).
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "kafka" / "kafka.sh"
PORT = int(os.environ.get("SPENDWATCH_TEST_KAFKA_PORT", "39092"))


def _kafka_env(data_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "KAFKA_PORT": str(PORT),
        "KAFKA_CONTROLLER_PORT": str(PORT + 1),
        "KAFKA_DATA_DIR": str(data_dir),
    }


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data_dir = tmp_path_factory.mktemp("kafka")
    env = _kafka_env(data_dir)
    started = subprocess.run(["bash", str(SCRIPT), "up"], env=env, capture_output=True, text=True)
    assert started.returncode == 0, f"kafka.sh up failed:\n{started.stdout}\n{started.stderr}"
    try:
        yield f"127.0.0.1:{PORT}"
    finally:
        subprocess.run(["bash", str(SCRIPT), "down"], env=env, capture_output=True, text=True)


@pytest.fixture
def kafka_settings(kafka_bootstrap: str, tmp_path: Path) -> Settings:
    """Settings pointing at the test broker, with topics and group unique to this test."""
    prefix = f"t{uuid.uuid4().hex[:8]}"
    base = load_settings()
    kafka = base.kafka.model_copy(
        update={
            "bootstrap_servers": kafka_bootstrap,
            "app_id": f"{prefix}-spendwatch",
            "topics": base.kafka.topics.model_copy(
                update={
                    name: f"{prefix}.{getattr(base.kafka.topics, name)}"
                    for name in ("usage", "errors", "customers", "alerts", "deadletter", "silences")
                }
            ),
        }
    )
    worker = base.worker.model_copy(update={"data_dir": tmp_path / "worker"})
    return base.model_copy(update={"kafka": kafka, "worker": worker})
