"""Starting real worker processes for integration tests, and reading what they wrote."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from stream.core.customers import load_customers
from stream.core.pipeline import Pipeline
from stream.core.pricing import PriceTable
from stream.kafka.connection import client_kwargs, partitions_of
from stream.kafka.state import partition_of
from stream.offline.replay import ReplayReport, replay_files
from stream.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def worker_env(settings: Settings, web_port: int, data_dir: Path) -> dict[str, str]:
    kafka, topics = settings.kafka, settings.kafka.topics
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPENDWATCH_")}
    env.update(
        {
            "SPENDWATCH_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "SPENDWATCH_KAFKA__APP_ID": kafka.app_id,
            "SPENDWATCH_WORKER__WEB_PORT": str(web_port),
            "SPENDWATCH_WORKER__DATA_DIR": str(data_dir),
            "SPENDWATCH_WORKER__BATCH_WITHIN_S": "0.2",
        }
    )
    for name in ("usage", "errors", "customers", "alerts", "deadletter", "silences"):
        env[f"SPENDWATCH_KAFKA__TOPICS__{name.upper()}"] = getattr(topics, name)
    return env


class WorkerProcess:
    """``spendwatch worker`` in a subprocess, with its web port and log file."""

    def __init__(
        self,
        settings: Settings,
        tmp: Path,
        name: str = "w1",
        config: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.log_path = tmp / f"{name}.log"
        self.env = {**worker_env(settings, self.port, tmp / name), **(env or {})}
        self.args = ["--config", str(config)] if config else []
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        with self.log_path.open("ab") as log:  # the child keeps its own copy
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "stream.commands.cli", "worker", *self.args],
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def health(self) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as exc:
            return json.loads(exc.read())
        except OSError:
            return None

    def fetch(self, path: str, retry_s: float = 10.0) -> bytes:
        """GET ``path`` on the worker's web port. A refused connection is retried for a
        while (seen once on a loaded machine with a healthy worker); if the worker has
        exited, or the port stays shut, the error says so, with the log's tail."""
        end = time.monotonic() + retry_s
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                    return bytes(r.read())
            except urllib.error.HTTPError:
                raise
            except OSError as exc:
                exited = self.proc is not None and self.proc.poll() is not None
                if exited or time.monotonic() > end:
                    state = f"exited {self.proc.returncode}" if exited else "running"  # type: ignore[union-attr]
                    tail = self.log_path.read_text(errors="replace")[-2000:]
                    raise AssertionError(
                        f"worker web port {self.port} ({state}): {exc}; log tail:\n{tail}"
                    ) from exc
                time.sleep(0.2)

    def get(self, path: str) -> Any:
        return json.loads(self.fetch(path))

    def metrics(self) -> str:
        return self.fetch("/metrics").decode()

    def wait_ready(self, deadline_s: float = 120.0) -> dict[str, Any]:
        return wait_for(
            lambda: (h := self.health()) and h.get("ready") and h,
            deadline_s,
            f"worker on {self.port} not ready; log: {self.log_path}",
        )

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.kill()


def wait_for(check: Callable[[], Any], deadline_s: float, what: str, every_s: float = 0.5) -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` at the deadline."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        result = check()
        if result:
            return result
        time.sleep(every_s)
    raise AssertionError(f"timed out after {deadline_s:.0f} s: {what}")


def read_topic(settings: Settings, topic: str) -> list[Any]:
    """Every record of ``topic`` up to its current end (group-less)."""

    async def read() -> list[Any]:
        kafka = settings.kafka
        parts = [TopicPartition(topic, p) for p in await partitions_of(kafka, topic)]
        if not parts:
            return []
        consumer = AIOKafkaConsumer(
            **client_kwargs(kafka),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            consumer.assign(parts)
            await consumer.seek_to_beginning(*parts)
            ends = await consumer.end_offsets(parts)
            out: list[Any] = []
            pending = {tp for tp in parts if ends[tp] > 0}
            while pending:
                batches = await consumer.getmany(*pending, timeout_ms=1000)
                for tp, messages in batches.items():
                    out += messages
                    if messages and messages[-1].offset + 1 >= ends[tp]:
                        pending.discard(tp)
            return out
        finally:
            await consumer.stop()

    return asyncio.run(read())


def replay_recorded(settings: Settings, folder: Path) -> ReplayReport:
    """File replay of the simulated traffic in ``folder``: the reference for Kafka paths."""
    prices = PriceTable.load(settings.resolve(settings.prices_file))
    customers = load_customers(folder / "customers.jsonl")
    return replay_files(
        Pipeline(settings, prices, customers),
        [folder / "usage.jsonl.gz"],
        [folder / "errors.jsonl.gz"],
        progress=False,
    )


def key_in_partition(partition: int, partitions: int, prefix: str) -> str:
    """A customer id whose records land in ``partition`` (for closing events)."""
    n = 0
    while partition_of(f"{prefix}{n}".encode(), partitions) != partition:
        n += 1
    return f"{prefix}{n}"


def closing_records(settings: Settings, ts: float) -> list[bytes]:
    """One small usage event per partition at ``ts`` (past the data), so every partition's
    watermark moves on and closes its last buckets (a stream has no 'end' to flush)."""
    partitions = settings.kafka.topics.partitions
    return [
        orjson.dumps(
            {
                "event_id": f"close-{p}",
                "ts": ts,
                "customer_id": key_in_partition(p, partitions, "zz-closing-"),
                "endpoint": "tick",
                "provider": "openai",
                "model": "gpt-4o-mini",
                "input_tokens": 1,
            }
        )
        for p in range(partitions)
    ]
