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
# Below the kernel's ephemeral range (32768-60999 by default): a port in it can be taken
# for a moment as the local end of any outgoing connection, and a broker starting then
# could not bind it.
# Each pytest-xdist process that needs a broker starts its own, 10 ports apart (gw0 on
# the base port): they run in one process (their xdist_group), but should the grouping
# ever fail, as it silently does with pytest 9.2, two brokers must not meet on one port.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
PORT = int(os.environ.get("SPENDWATCH_TEST_KAFKA_PORT", "29092")) + 10 * int(
    _WORKER[2:] if _WORKER[2:].isdigit() else 0
)


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


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the group marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test here shares the session's broker, which only one process may start on
    its ports: under pytest-xdist (``make test``: ``-n 2 --dist loadgroup``) they all run
    in one process, one after the other, by the ``xdist_group("kafka")`` mark added here
    (so a new test file here is grouped too)."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.xdist_group("kafka"))
