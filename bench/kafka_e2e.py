"""The worker on a real broker: throughput against a plain consumer, and alert latency.

    python bench/kafka_e2e.py [--bootstrap 127.0.0.1:9092] [--events 1000000] [--batch-size N]
    make bench-kafka            # starts the local broker first (make kafka-up)

1. Backlog: ``--events`` usage and error events (``--customers`` customers, two days of
   event time ending an hour ago, so baselines are warm; fewer events than every customer
   calling each minute for two days cover less, still ending an hour ago, with a warning
   when that is under the warm-up) are produced to fresh topics.
2. Plain consumer: an aiokafka consumer (no group) reads both topics from the start and
   parses every value with orjson: the ceiling a Python consumer reaches on this machine.
3. Worker: ``spendwatch worker`` starts on the same topics and processes the backlog;
   its rate is events detected from the first to the last, read off ``/metrics``.
4. Latency: with the worker caught up, live traffic is produced (one bucket of event
   time per ``--bucket-wall-s`` of wall time) with a 10x spend spike on ``--spikes``
   customers. For each spike alert, latency = the alert's arrival on the alerts topic
   minus the produce time of the event that made it due: the alert can be decided once
   every source partition has an event past the end of its third breaching bucket (plus
   the allowed lateness), so the clock starts when the last of them was produced.

Prints the figures and writes them to bench/results/kafka_e2e.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stream.kafka.connection import ensure_topics  # noqa: E402
from stream.settings import KafkaSettings, Settings, TopicSettings  # noqa: E402

WIDTH = 60.0
ENDPOINTS = ("chat", "search")
MODELS = (("openai", "gpt-4o-mini"), ("anthropic", "claude-sonnet-4"))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[rank]


class Traffic:
    """Steady per-customer traffic, one bucket at a time, with spikes on demand."""

    def __init__(self, customers: int, per_bucket: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.customers = [f"bench-{c:04d}" for c in range(customers)]
        # Heavy-ish tail: a few customers carry most of the traffic.
        weights = [1.0 / (1 + c) ** 0.8 for c in range(customers)]
        total = sum(weights)
        self.share = [w / total for w in weights]
        self.per_bucket = per_bucket
        self.seq = 0

    def mean_per_bucket(self) -> float:
        """Events a bucket holds on average: a customer's max(1, floor(x + U)) for its
        share x of ``per_bucket`` and U uniform on [0, 1) is 1 below x = 1, else x."""
        return sum(max(1.0, self.per_bucket * share) for share in self.share)

    def bucket(self, start: float, spiked: set[str] = frozenset()) -> list[tuple[str, bytes]]:
        """(kind, json) events of one bucket starting at ``start``, in time order."""
        out: list[tuple[float, str, bytes]] = []
        rng = self.rng
        for customer, share in zip(self.customers, self.share, strict=True):
            n = max(1, int(self.per_bucket * share + rng.random()))
            for _ in range(n):
                ts = start + rng.random() * WIDTH
                provider, model = MODELS[rng.random() < 0.3]
                endpoint = ENDPOINTS[rng.random() < 0.4]
                cost = 0.002 * (0.8 + 0.4 * rng.random())
                if customer in spiked:
                    cost *= 10
                self.seq += 1
                event = {
                    "event_id": f"e{self.seq}",
                    "ts": round(ts, 3),
                    "customer_id": customer,
                    "endpoint": endpoint,
                    "provider": provider,
                    "model": model,
                    "input_tokens": 800,
                    "output_tokens": 200,
                    "cost_usd": cost,
                }
                kind = "usage"
                if rng.random() < 0.03:
                    kind = "errors"
                    event["error_type"] = "timeout"
                    del event["cost_usd"]
                out.append((ts, kind, orjson.dumps(event)))
        out.sort(key=lambda item: item[0])
        return [(kind, raw) for _, kind, raw in out]


def settings_for(bootstrap: str, run: str, partitions: int) -> Settings:
    topics = TopicSettings(
        usage=f"{run}.usage",
        errors=f"{run}.errors",
        customers=f"{run}.customers",
        alerts=f"{run}.alerts",
        deadletter=f"{run}.deadletter",
        partitions=partitions,
    )
    return Settings(kafka=KafkaSettings(bootstrap_servers=bootstrap, app_id=run, topics=topics))


async def produce_backlog(
    kafka: KafkaSettings, traffic: Traffic, first: float, events: int, until: float
) -> tuple[int, float, float]:
    """Produce whole buckets until ``events`` are out or the next would start at ``until``
    (an event later than the worker's max_future_skew_s is refused, not detected);
    (sent, seconds, next bucket start)."""
    topics = kafka.topics
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap_servers, linger_ms=50, max_batch_size=512 * 1024, acks=1
    )
    await producer.start()
    sent, start = 0, first
    began = time.perf_counter()
    try:
        while sent < events and start < until:
            for kind, raw in traffic.bucket(start):
                topic = topics.usage if kind == "usage" else topics.errors
                key = raw.split(b'"customer_id":"', 1)[1].split(b'"', 1)[0]
                await producer.send(topic, raw, key=key)
                sent += 1
            start += WIDTH
        await producer.flush()
    finally:
        await producer.stop()
    return sent, time.perf_counter() - began, start


async def plain_consumer(kafka: KafkaSettings, expected: int) -> dict[str, float]:
    """Read both topics from the start and parse each value; events/s first to last."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka.bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    try:
        parts = [
            TopicPartition(topic, p)
            for topic in (kafka.topics.usage, kafka.topics.errors)
            for p in sorted(consumer.partitions_for_topic(topic) or range(kafka.topics.partitions))
        ]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        seen, first, parsed, cpu = 0, 0.0, 0, 0.0
        while seen < expected:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for messages in batches.values():
                if not first:
                    first, cpu = time.perf_counter(), time.process_time()
                for message in messages:
                    parsed += isinstance(orjson.loads(message.value), dict)
            seen += sum(len(m) for m in batches.values())
        elapsed, cpu = time.perf_counter() - first, time.process_time() - cpu
    finally:
        await consumer.stop()
    return {
        "events": seen,
        "parsed": parsed,
        "seconds": elapsed,
        "events_per_s": seen / elapsed,
        "cpu_seconds": cpu,
        "events_per_cpu_s": seen / cpu if cpu else float("nan"),
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc; NaN elsewhere). On a shared
    machine events per CPU second compare runs better than events per wall second."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def metric(port: int, name: str) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return 0.0
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (line[len(name)] in " {"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def start_worker(
    settings: Settings,
    port: int,
    data_dir: Path,
    log: Path,
    env: dict[str, str] | None = None,
    args: tuple[str, ...] = (),
) -> subprocess.Popen:
    """``spendwatch worker [args]`` on ``settings``' broker and topics, with ``env`` added."""
    kafka, topics = settings.kafka, settings.kafka.topics
    full = {k: v for k, v in os.environ.items() if not k.startswith("SPENDWATCH_")}
    full.update(
        {
            "SPENDWATCH_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "SPENDWATCH_KAFKA__APP_ID": kafka.app_id,
            "SPENDWATCH_KAFKA__TOPICS__PARTITIONS": str(topics.partitions),
            "SPENDWATCH_WORKER__WEB_PORT": str(port),
            "SPENDWATCH_WORKER__DATA_DIR": str(data_dir),
        }
    )
    for name in ("usage", "errors", "customers", "alerts", "deadletter", "silences"):
        full[f"SPENDWATCH_KAFKA__TOPICS__{name.upper()}"] = getattr(topics, name)
    full.update(env or {})
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "stream.commands.cli", "worker", *args],
            cwd=ROOT,
            env=full,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def measure_worker(port: int, expected: int, proc: subprocess.Popen, log: Path) -> dict[str, float]:
    """Poll /metrics: events detected from the first to the last of the backlog."""
    name = "spendwatch_events_detected_total"
    first_t, first_n, first_cpu = 0.0, 0.0, 0.0
    deadline = time.monotonic() + 3600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"worker exited with {proc.returncode}; log: {log}")
        now, count = time.perf_counter(), metric(port, name)
        if count and not first_t:
            first_t, first_n, first_cpu = now, count, cpu_seconds(proc.pid)
        refused = metric(port, "spendwatch_dead_letters_total")
        if refused and count + refused >= expected:  # the bench's traffic, not the worker
            raise SystemExit(f"{refused:,.0f} backlog events were dead-lettered; log: {log}")
        if count >= expected:
            elapsed, cpu = now - first_t, cpu_seconds(proc.pid) - first_cpu
            return {
                "events": count,
                "seconds": elapsed,
                "events_per_s": (count - first_n) / elapsed if elapsed else float("nan"),
                "cpu_seconds": cpu,
                "events_per_cpu_s": (count - first_n) / cpu if cpu else float("nan"),
            }
        time.sleep(0.05)
    raise SystemExit(f"worker did not process the backlog; log: {log}")


async def live_latency(
    kafka: KafkaSettings,
    traffic: Traffic,
    start: float,
    spikes: int,
    bucket_wall_s: float,
    settings: Settings,
) -> dict[str, Any]:
    """Produce live buckets with spikes; latency of each spike's alert (see module doc)."""
    topics = kafka.topics
    lateness = settings.buckets.allowed_lateness_s
    consecutive = settings.detectors.spend_spike.consecutive
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers, linger_ms=5, acks=1)
    consumer = AIOKafkaConsumer(
        topics.alerts, bootstrap_servers=kafka.bootstrap_servers, group_id=None,
        auto_offset_reset="latest",
    )  # fmt: skip
    await producer.start()
    await consumer.start()
    await consumer.seek_to_end()
    # Spikes on the busiest customers (many events per bucket), staggered by 2 buckets.
    chosen = traffic.customers[:spikes]
    spike_at = {c: 3 + 2 * i for i, c in enumerate(chosen)}
    spike_len = consecutive + 2
    buckets = max(spike_at.values()) + spike_len + 6
    # produce time of the first event at or after each event time, per source partition
    firsts: dict[tuple[str, int], list[tuple[float, float]]] = {}
    arrivals: dict[str, float] = {}
    started: dict[str, str] = {}

    async def collect() -> None:
        async for message in consumer:
            alert = orjson.loads(message.value)
            labels = alert["labels"]
            if (
                alert["status"] == "firing"
                and labels["alertname"] == "spend_spike"
                and labels.get("customer_id") in spike_at
                and "endpoint" not in labels
            ):
                arrivals.setdefault(labels["customer_id"], time.time())
                started.setdefault(labels["customer_id"], alert["startsAt"])

    collector = asyncio.create_task(collect())
    try:
        for b in range(buckets):
            bucket_start = start + b * WIDTH
            spiked = {c for c, at in spike_at.items() if at <= b < at + spike_len}
            events = traffic.bucket(bucket_start, spiked)
            pace = bucket_wall_s / max(1, len(events))
            began = time.monotonic()
            for i, (kind, raw) in enumerate(events):
                topic = topics.usage if kind == "usage" else topics.errors
                key = raw.split(b'"customer_id":"', 1)[1].split(b'"', 1)[0]
                meta = await (await producer.send(topic, raw, key=key))
                ts = orjson.loads(raw)["ts"]
                trail = firsts.setdefault((topic, meta.partition), [])
                if not trail or ts > trail[-1][0]:
                    trail.append((ts, time.time()))
                ahead = began + (i + 1) * pace - time.monotonic()
                if ahead > 0:
                    await asyncio.sleep(ahead)
        deadline = time.monotonic() + 60
        while len(arrivals) < len(spike_at) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
    finally:
        collector.cancel()
        await producer.stop()
        await consumer.stop()

    def produced_when(due: float) -> float:
        """When the last source got its first event at or after event time ``due``."""
        times = []
        for trail in firsts.values():
            later = [wall for ts, wall in trail if ts >= due]
            if later:
                times.append(later[0])
        return max(times)

    latencies, detail = [], []
    for customer, at in spike_at.items():
        if customer not in arrivals:
            continue
        due = start + (at + consecutive) * WIDTH + lateness
        latencies.append(arrivals[customer] - produced_when(due))
        spike = datetime.fromtimestamp(start + at * WIDTH, UTC).strftime("%H:%M:%S")
        detail.append([customer, spike, started[customer], round(latencies[-1], 3)])
    print(*detail, sep="\n")
    return {
        "spikes": len(spike_at),
        "alerted": len(latencies),
        "p50_s": percentile(latencies, 0.5),
        "p99_s": percentile(latencies, 0.99),
        "max_s": max(latencies, default=float("nan")),
        "bucket_wall_s": bucket_wall_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092"))
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--spikes", type=int, default=20)
    parser.add_argument("--bucket-wall-s", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--batch-size", type=int, default=None, help="worker.batch_size (default: its default)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "kafka_e2e.json")
    args = parser.parse_args()

    run = f"bench-{uuid.uuid4().hex[:8]}"
    settings = settings_for(args.bootstrap, run, args.partitions)
    kafka = settings.kafka
    # Two days of event time ending an hour ago: a warm baseline, and nothing "in the future".
    # Every customer calls at least once a bucket, so with few events the backlog is
    # shorter: it still ends an hour ago, and says so when it is shorter than a warm-up.
    per_bucket = max(1, round(args.events / (2 * 1440)))
    traffic = Traffic(args.customers, per_bucket, args.seed)
    buckets = math.ceil(args.events / traffic.mean_per_bucket())
    until = (time.time() // 3600 - 1) * 3600.0
    first = until - buckets * WIDTH
    warmup_s = settings.detectors.spend_spike.warmup_s
    if buckets * WIDTH < warmup_s:
        print(
            f"warning: {args.events:,} events from {args.customers} customers are"
            f" {buckets * WIDTH / 3600:.1f} h of event time, under spend_spike's"
            f" {warmup_s / 3600:g} h warm-up: a spike then fires only by the absolute rule",
            flush=True,
        )

    async def prepare() -> tuple[int, float, float, dict[str, float]]:
        await ensure_topics(kafka)
        sent, seconds, next_start = await produce_backlog(
            kafka, traffic, first, args.events, until
        )
        plain = await plain_consumer(kafka, sent)
        return sent, seconds, next_start, plain

    print(f"run {run}: producing {args.events:,} events to {args.bootstrap} ...", flush=True)
    sent, produce_s, next_start, plain = asyncio.run(prepare())
    print(f"produced {sent:,} events in {produce_s:.1f} s ({sent / produce_s:,.0f}/s)")
    print(
        f"plain aiokafka consumer + orjson: {plain['events_per_s']:,.0f} events/s "
        f"({plain['events_per_cpu_s']:,.0f} per CPU second)",
        flush=True,
    )

    port = 20000 + random.randrange(20000)
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "worker.log"
        env = {"SPENDWATCH_WORKER__SOURCE_IDLE_S": "30"}
        if args.batch_size is not None:
            env["SPENDWATCH_WORKER__BATCH_SIZE"] = str(args.batch_size)
        proc = start_worker(settings, port, Path(tmp) / "data", log, env)
        try:
            worker = measure_worker(port, sent, proc, log)
            print(
                f"worker: {worker['events_per_s']:,.0f} events/s "
                f"({worker['events_per_cpu_s']:,.0f} per CPU second)",
                flush=True,
            )
            latency = asyncio.run(
                live_latency(kafka, traffic, next_start, args.spikes, args.bucket_wall_s, settings)
            )
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        if proc.returncode not in (0, -signal.SIGTERM):
            print(f"worker log tail:\n{log.read_text()[-3000:]}")

    ratio = worker["events_per_s"] / plain["events_per_s"]
    result = {
        "bench": "kafka_e2e",
        "events": sent,
        "customers": args.customers,
        "partitions": args.partitions,
        "batch_size": args.batch_size or Settings().worker.batch_size,
        "produce_events_per_s": sent / produce_s,
        "plain_consumer": plain,
        "worker": worker,
        "ratio_worker_to_plain": ratio,
        "latency": latency,
        "targets": {"worker_events_per_s": 50_000, "ratio": 0.5, "p99_s": None},
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }
    print(f"ratio worker / plain consumer: {ratio:.2f}")
    print(
        f"spike alerts: {latency['alerted']}/{latency['spikes']}, produce -> alerts topic "
        f"p50 {latency['p50_s']:.2f} s, p99 {latency['p99_s']:.2f} s"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
