"""Worker state recovery: how long a restarted worker takes to read its detect-state table
back from the changelog, at 100,000 and 1,000,000 customer records (issue 13).

    python bench/recovery.py [--keys 100000,1000000] [--port 39792] [--keep-broker]
                             [--templates 400 --history-hours 25] [--compression none]
    make bench-recovery       # the same, ARGS=... passed on

1. Broker: a single-node KRaft broker from scripts/kafka/kafka.sh on ``--port`` (not the
   test suite's 29092) with a data directory of its own; reused if that port already
   answers. Only a broker this run started is stopped (and its data deleted) at the end.
2. Records (not timed): ``--templates`` customers with one to three endpoints each get
   ``--history-hours`` of one-minute buckets through the worker's own stage
   (:class:`stream.kafka.stages.PartitionDetect` over :class:`CustomerStates`, a dict for
   a table), closed and flushed the way the worker does: every detector holds state, and
   after a day of history every per-hour array of spend_spike and cost_shift is filled,
   so the records are as large as a long-running customer's. The encoded records are the
   templates; record i is template i % templates under the key ``customer-<i>``
   (replicated, not each simulated). A worker started once on the empty topics creates
   them itself (the changelog's partitions and config as faust declares them), then the
   records are produced to ``<app_id>-detect-state-changelog`` at the partition the
   worker's partitioner gives each key, uncompressed as the worker writes them.
3. Reference: a plain aiokafka consumer (no group) reads the changelog from its start to
   its end and keeps nothing: the ceiling for reading these bytes in one Python process.
4. Recovery: ``spendwatch worker`` starts in a subprocess on the same app id; the clock
   runs from just before the process starts until its ``/health`` says
   ``tables_recovered`` (faust's recovery has read every changelog to its end). Also: the
   worker's RSS then, records/s of recovery, the changelog's size on the broker per key
   and the mean encoded record. The worker's start on the empty topics is timed the same
   way: the part of the figure that is not reading state.
5. Ready: then one usage event per detect partition, for a customer of the table that
   hashes there, is produced, and the clock runs on until ``/metrics`` counts every one
   detected: each partition has opened (decoded the records it needs, resent what its
   journal held) and judged. ``tables_recovered`` alone does not say the worker detects.
6. ``--active-share`` of the records (default 0.05) are as the templates leave them,
   with open rows and a cost_shift step being summed, the rest as a customer quiet for a
   while has them (those two slots gone): in a fleet of a million, few customers spend
   in any ten minutes. A partition decodes its active records as it opens, the quiet
   ones when their customer spends again.

Every figure is from this run; a run that cannot finish (time, memory) says so and writes
what it has. Prints the figures and writes bench/results/recovery.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.kafka_e2e import cpu_seconds, metric, settings_for, start_worker  # noqa: E402
from stream.core.events import Customer  # noqa: E402
from stream.kafka.connection import client_kwargs, ensure_topics, partitions_of  # noqa: E402
from stream.kafka.stages import PartitionDetect, Priced  # noqa: E402
from stream.kafka.state import (  # noqa: E402
    NOT_DETECTORS,
    PARTITION_PREFIX,
    CustomerStates,
    partition_of,
)
from stream.settings import KafkaSettings, Settings  # noqa: E402

KAFKA_SH = ROOT / "scripts" / "kafka" / "kafka.sh"
T0 = 1_793_577_600.0  # 2026-11-02T00:00:00Z
TABLE = "detect-state"
TARGET_S = 30.0  # issue 13: recovery of 1M keys in at most 30 s
MODELS = (("openai", "gpt-4o"), ("anthropic", "claude-sonnet-4"))


def changelog_topic(app_id: str) -> str:
    """faust's name for a table's changelog: ``<app id>-<table>-changelog``."""
    return f"{app_id}-{TABLE}-changelog"


# -- the broker ----------------------------------------------------------------------


def kafka_env(port: int, data_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "KAFKA_PORT": str(port),
        "KAFKA_CONTROLLER_PORT": str(port + 1),
        "KAFKA_DATA_DIR": str(data_dir),
    }


def kafka_sh(command: str, port: int, data_dir: Path, *args: str) -> str:
    done = subprocess.run(
        ["bash", str(KAFKA_SH), command, *args],
        env=kafka_env(port, data_dir),
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"kafka.sh {command} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def broker_answers(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def log_size(port: int, data_dir: Path, topic: str) -> int:
    """Bytes of the topic's log segments on the broker (LogDirsCommand), all partitions."""
    out = kafka_sh(
        "tool",
        port,
        data_dir,
        "org.apache.kafka.tools.LogDirsCommand",
        "--describe",
        "--bootstrap-server",
        f"127.0.0.1:{port}",
        "--topic-list",
        topic,
    )
    report = json.loads(next(line for line in out.splitlines() if line.startswith("{")))
    return sum(
        part["size"]
        for broker in report["brokers"]
        for log_dir in broker["logDirs"]
        for part in log_dir["partitions"]
    )


# -- the records -----------------------------------------------------------------------


def templates(customers: int, hours: float, seed: int) -> list[bytes]:
    """Customer records as the worker flushes them, after ``hours`` of one-minute buckets:
    one to three endpoints each, two requests per endpoint a minute of varying size and
    model, 5 % of them failed (retry_storm state), the last bucket left open; each on a plan
    ($5,000 a month) that covers its cost, so no margin alert is open (at $100 every one was)."""
    rng = random.Random(seed)
    now = [0.0]
    table: dict[bytes, bytes] = {}
    states = CustomerStates(table)
    known = {
        f"c{i}": Customer(customer_id=f"c{i}", plan="pro", monthly_price_usd=5000.0)
        for i in range(customers)
    }
    detect = PartitionDetect(Settings(), known.get, states, 0, 1, clock=lambda: now[0])
    endpoints = {c: [f"ep{e}" for e in range(1 + i % 3)] for i, c in enumerate(known)}
    offset = 0
    for bucket in range(round(hours * 60)):
        now[0] = float(bucket)  # one wall second per bucket: no source ever goes idle
        for customer, names in endpoints.items():
            for endpoint in names:
                for k in range(2):
                    offset += 1
                    failed = rng.random() < 0.05
                    provider, model = MODELS[rng.random() < 0.3]
                    event = Priced(
                        "errors" if failed else "usage", f"e{offset}",
                        T0 + bucket * 60 + 1 + 20 * k, customer, endpoint, provider, model,
                        1 + (rng.random() < 0.1), failed, False,
                        0.002 * (0.5 + rng.random()),
                        "usage:0", offset, 600 + rng.randrange(600), 150 + rng.randrange(150), 0,
                    )  # fmt: skip
                    detect.add(event)
        detect.close_due()
        detect.save_open_rows()
        states.flush()
    return [v for k, v in table.items() if not k.startswith(PARTITION_PREFIX)]


def quiet(record: bytes) -> bytes:
    """``record`` as its customer has it after a quiet while: no open rows, no step of
    cost_shift being summed (the detectors' states as they were)."""
    data = orjson.loads(record)
    for slot in NOT_DETECTORS:
        data.pop(slot, None)
    opened = any(isinstance(v, dict) and v.get("episode") is not None for v in data.values())
    data["#"] = int(opened)  # the flag stays the record's first key
    return orjson.dumps(data)


def mixed(records: list[bytes], share: float, seed: int) -> list[bytes]:
    """The records to replicate: each template active with probability ``share`` (as
    simulated), else quiet; 100 times the templates so the share holds to a percent."""
    rng = random.Random(seed)
    return [r if rng.random() < share else quiet(r) for r in records * 100]


def customer_key(i: int) -> bytes:
    return f"customer-{i:07d}".encode()


async def produce(
    kafka: KafkaSettings, topic: str, records: list[bytes], n: int, compression: str | None
) -> dict[str, float]:
    """``n`` records, record i = ``records[i % len(records)]`` under ``customer_key(i)``,
    each at the changelog partition the worker would write it to (murmur2 of the key)."""
    partitions = len(await partitions_of(kafka, topic))
    producer = AIOKafkaProducer(
        **client_kwargs(kafka),
        acks=1,
        linger_ms=100,
        max_batch_size=900_000,
        max_request_size=1_000_000,
        compression_type=compression,
    )
    await producer.start()
    started, sent_bytes = time.perf_counter(), 0
    try:
        for i in range(n):
            key, value = customer_key(i), records[i % len(records)]
            await producer.send(topic, value, key=key, partition=partition_of(key, partitions))
            sent_bytes += len(value)
            if i and i % 200_000 == 0:
                print(f"  produced {i:,} records", flush=True)
        await producer.flush()
    finally:
        await producer.stop()
    return {"seconds": time.perf_counter() - started, "value_bytes": sent_bytes}


async def end_offsets(kafka: KafkaSettings, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(**client_kwargs(kafka), group_id=None)
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in await partitions_of(kafka, topic)]
        ends = await consumer.end_offsets(parts)
    finally:
        await consumer.stop()
    return {tp.partition: end for tp, end in ends.items()}


async def plain_read(kafka: KafkaSettings, topic: str, expected: int) -> dict[str, float]:
    """The reference: read the changelog from its start to its end, count, keep nothing."""
    started, cpu = time.perf_counter(), time.process_time()
    consumer = AIOKafkaConsumer(
        **client_kwargs(kafka),
        group_id=None,
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in await partitions_of(kafka, topic)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        seen = read_bytes = 0
        while seen < expected:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for messages in batches.values():
                seen += len(messages)
                read_bytes += sum(len(m.value or b"") for m in messages)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    finally:
        await consumer.stop()
    return {
        "records": seen,
        "seconds": elapsed,
        "records_per_s": seen / elapsed,
        "mib_per_s": read_bytes / elapsed / 2**20,
        "cpu_seconds": cpu,
    }


# -- the worker ------------------------------------------------------------------------


def health(port: int) -> dict[str, Any] | None:
    """The worker's ``/health`` body (200 or 503), None while its web port is not up."""
    url = f"http://127.0.0.1:{port}/health"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return dict(json.loads(response.read()))
    except urllib.error.HTTPError as exc:
        return dict(json.loads(exc.read()))
    except (OSError, ValueError):
        return None


def memory_kib(pid: int | None, field: str) -> int:
    """A ``/proc`` memory figure in KiB (VmRSS, VmHWM of ``pid``; MemAvailable if None)."""
    path = "/proc/meminfo" if pid is None else f"/proc/{pid}/status"
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def probe_customers(n: int, partitions: int) -> list[str]:
    """One customer of the table per detect partition (the first key hashing there)."""
    found: dict[int, str] = {}
    for i in range(n):
        key = customer_key(i)
        found.setdefault(partition_of(key, partitions), key.decode())
        if len(found) == partitions:
            break
    return [found[p] for p in sorted(found)]


async def send_probe(kafka: KafkaSettings, customers: list[str]) -> None:
    """A usage event now for each of ``customers``."""
    producer = AIOKafkaProducer(**client_kwargs(kafka), acks=1)
    await producer.start()
    try:
        for customer in customers:
            event = {
                "event_id": uuid.uuid4().hex, "ts": time.time(), "customer_id": customer,
                "endpoint": "ep0", "provider": "openai", "model": "gpt-4o",
                "request_id": uuid.uuid4().hex, "attempt": 1, "status": "ok",
                "input_tokens": 800, "output_tokens": 200, "latency_ms": 100.0,
            }  # fmt: skip
            await producer.send(kafka.topics.usage, orjson.dumps(event), key=customer.encode())
        await producer.flush()
    finally:
        await producer.stop()


def timed_start(
    settings: Settings,
    tmp: Path,
    name: str,
    timeout_s: float,
    min_free_gib: float,
    probe: list[str] | None = None,
) -> dict[str, Any]:
    """Start a worker, wait until its tables are recovered, measure; with ``probe`` (a
    customer per partition), then send each an event and wait until all are detected;
    stop it (SIGTERM)."""
    port = 20000 + random.randrange(20000)
    log = tmp / f"{name}.log"
    started, cpu = time.perf_counter(), 0.0
    proc = start_worker(settings, port, tmp / name, log)
    result: dict[str, Any] = {}
    try:
        web = None
        while True:
            now = time.perf_counter() - started
            if proc.poll() is not None:
                result["error"] = f"worker exited with {proc.returncode}"
                break
            if now > timeout_s:
                result["error"] = f"tables not recovered after {timeout_s:.0f} s"
                break
            free_gib = memory_kib(None, "MemAvailable") / 2**20
            if free_gib < min_free_gib:
                result["error"] = (
                    f"stopped: the machine had {free_gib:.1f} GiB available left, the worker"
                    f" held {memory_kib(proc.pid, 'VmRSS') / 1024:,.0f} MiB"
                )
                break
            body = health(port)
            if body is not None and web is None:
                web = now
            if body and body.get("tables_recovered"):
                cpu = cpu_seconds(proc.pid)
                result.update(
                    seconds=now,
                    web_up_s=web,
                    cpu_seconds=cpu,
                    rss_mib=memory_kib(proc.pid, "VmRSS") / 1024,
                    peak_rss_mib=memory_kib(proc.pid, "VmHWM") / 1024,
                )
                if probe:
                    result.update(ready(settings, port, proc, probe, started, timeout_s))
                break
            time.sleep(0.05)
        result.setdefault("peak_rss_mib", memory_kib(proc.pid, "VmHWM") / 1024)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if "error" in result:
        print(f"  {name}: {result['error']}; log tail:\n{log.read_text()[-2000:]}", flush=True)
    result.update(recovery_log(log, changelog_topic(settings.kafka.app_id)))
    return result


def ready(
    settings: Settings,
    port: int,
    proc: subprocess.Popen[bytes],
    probe: list[str],
    started: float,
    timeout_s: float,
) -> dict[str, Any]:
    """From tables recovered to every probe event detected (each partition opened)."""
    recovered = time.perf_counter()
    asyncio.run(send_probe(settings.kafka, probe))
    while metric(port, "spendwatch_events_detected_total") < len(probe):
        if proc.poll() is not None or time.perf_counter() - started > timeout_s:
            return {"ready_error": "the probe events were not all detected"}
        time.sleep(0.05)
    now = time.perf_counter()
    return {
        "ready_s": now - started,
        "opening_s": now - recovered,
        "ready_cpu_seconds": cpu_seconds(proc.pid),
        "ready_rss_mib": memory_kib(proc.pid, "VmRSS") / 1024,
    }


def recovery_log(log: Path, topic: str) -> dict[str, Any]:
    """From the worker's log: the records faust found in ``topic`` (its highwaters, the
    last offset of each partition) and how long its reading of the changelogs took."""
    found: dict[str, Any] = {}
    began = None
    for line in log.read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        entry = json.loads(line)
        msg, at = entry.get("msg", ""), entry.get("ts", "")
        if "Highwater for active changelog partitions" in msg:
            rows = [r.split("|") for r in msg.splitlines() if r.startswith("|")]
            last, total = "", 0
            for cells in rows[1:]:
                name, highwater = cells[1].strip(), cells[3].strip()
                last = name if name != "〃" else last
                if last == topic:
                    total += int(highwater) + 1
            found["highwater_records"] = total
        elif "Restoring state from changelog topics" in msg:
            began = at
        elif "Done reading from changelog topics" in msg and began:
            found["reading_s"] = seconds_between(began, at)
    return found


def seconds_between(first: str, last: str) -> float:
    """Seconds from one log timestamp (ISO 8601, Z) to another."""
    from datetime import datetime

    return (datetime.fromisoformat(last) - datetime.fromisoformat(first)).total_seconds()


# -- one size ---------------------------------------------------------------------------


def run_size(n: int, records: list[bytes], args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    run = f"recovery-{n}-{uuid.uuid4().hex[:6]}"
    settings = settings_for(f"127.0.0.1:{args.port}", run, args.partitions)
    kafka, topic = settings.kafka, changelog_topic(run)
    print(f"{n:,} records: app id {run}", flush=True)
    asyncio.run(ensure_topics(kafka))
    empty = timed_start(settings, tmp, f"{run}-empty", args.timeout_s, args.min_free_gib)
    row: dict[str, Any] = {"keys": n, "app_id": run, "changelog": topic, "empty_start": empty}
    if "error" in empty:
        return row
    print(
        f"  worker start on empty topics: {empty['seconds']:.1f} s to tables recovered,"
        f" RSS {empty['rss_mib']:,.0f} MiB",
        flush=True,
    )
    partitions = asyncio.run(partitions_of(kafka, topic))
    row["partitions"] = len(partitions)
    produced = asyncio.run(produce(kafka, topic, records, n, args.compression))
    ends = asyncio.run(end_offsets(kafka, topic))
    row["records_in_changelog"] = sum(ends.values())
    row["produce"] = produced
    row["encoded_bytes_per_key"] = produced["value_bytes"] / n
    row["log_bytes"] = log_size(args.port, args.data_dir, topic)
    row["log_bytes_per_key"] = row["log_bytes"] / n
    print(
        f"  produced {n:,} records in {produced['seconds']:.1f} s (not timed): changelog"
        f" {row['records_in_changelog']:,} records ({len(partitions)} partitions),"
        f" {row['log_bytes'] / 2**20:,.0f} MiB on the broker",
        flush=True,
    )
    plain = asyncio.run(plain_read(kafka, topic, row["records_in_changelog"]))
    row["plain_consumer"] = plain
    print(
        f"  reference, plain aiokafka consumer: {plain['seconds']:.1f} s,"
        f" {plain['records_per_s']:,.0f} records/s, {plain['mib_per_s']:,.0f} MiB/s",
        flush=True,
    )
    probe = probe_customers(n, len(partitions))
    recovery = timed_start(
        settings, tmp, f"{run}-recover", args.timeout_s, args.min_free_gib, probe
    )
    row["recovery"] = recovery
    if "seconds" in recovery:
        records = row["records_in_changelog"]
        recovery["records_per_s"] = records / recovery["seconds"]
        if recovery.get("reading_s"):
            recovery["reading_records_per_s"] = records / recovery["reading_s"]
        recovery["rss_bytes_per_key"] = (recovery["rss_mib"] - empty["rss_mib"]) * 2**20 / n
        print(
            f"  recovery: {recovery['seconds']:.1f} s from process start to tables recovered"
            f" ({recovery['records_per_s']:,.0f} records/s), of which faust read the"
            f" changelogs for {recovery.get('reading_s', float('nan')):.1f} s"
            f" ({recovery.get('reading_records_per_s', float('nan')):,.0f} records/s); it"
            f" found {recovery.get('highwater_records', 0):,} records; RSS"
            f" {recovery['rss_mib']:,.0f} MiB ({recovery['rss_bytes_per_key']:,.0f} B per key"
            " over the empty start)",
            flush=True,
        )
        if "ready_s" in recovery:
            print(
                f"  ready: every partition detected an event {recovery['ready_s']:.1f} s from"
                f" process start ({recovery['opening_s']:.1f} s after tables recovered),"
                f" RSS {recovery['ready_rss_mib']:,.0f} MiB",
                flush=True,
            )
    if not args.keep_topics:
        delete_topics(kafka, run)
    return row


def delete_topics(kafka: KafkaSettings, run: str) -> None:
    """Every topic of this run (its inputs, internal topics and changelogs)."""
    from aiokafka.admin import AIOKafkaAdminClient

    async def delete() -> None:
        admin = AIOKafkaAdminClient(**client_kwargs(kafka))
        await admin.start()
        try:
            mine = [t for t in await admin.list_topics() if t.startswith(run)]
            if mine:
                await admin.delete_topics(mine)
        finally:
            await admin.close()

    asyncio.run(delete())


def summary(row: dict[str, Any]) -> None:
    recovery, plain = row.get("recovery", {}), row.get("plain_consumer", {})
    if "seconds" not in recovery:
        print(f"{row['keys']:>9,} keys: no figure ({recovery.get('error', 'not run')})")
        return
    print(
        f"{row['keys']:>9,} keys: recovery {recovery['seconds']:6.1f} s from start"
        f" ({recovery['records_per_s']:>7,.0f} records/s; reading"
        f" {recovery.get('reading_s', float('nan')):.1f} s,"
        f" {recovery.get('reading_records_per_s', float('nan')):,.0f} records/s;"
        f" target <= {TARGET_S:.0f} s at 1M), empty start"
        f" {row['empty_start']['seconds']:.1f} s; plain consumer {plain['seconds']:.1f} s"
        f" ({plain['records_per_s']:,.0f} records/s); {row['encoded_bytes_per_key']:,.0f} B"
        f" encoded and {row['log_bytes_per_key']:,.0f} B on the broker per key; worker RSS"
        f" {recovery['rss_mib']:,.0f} MiB; ready (every partition detecting)"
        f" {recovery.get('ready_s', float('nan')):.1f} s from start"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", default="100000,1000000", help="records per run, commas")
    parser.add_argument("--port", type=int, default=39792, help="broker port (controller +1)")
    parser.add_argument(
        "--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "spendwatch-recovery-kafka"
    )
    parser.add_argument("--keep-broker", action="store_true", help="leave the broker running")
    parser.add_argument("--keep-topics", action="store_true", help="leave each run's topics")
    parser.add_argument("--partitions", type=int, default=Settings().kafka.topics.partitions)
    parser.add_argument("--templates", type=int, default=400, help="customers simulated")
    parser.add_argument("--history-hours", type=float, default=25.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--active-share",
        type=float,
        default=0.05,
        help="records with open rows and a step being summed; the rest quiet",
    )
    parser.add_argument(
        "--compression", default=None, help="producer compression (default none, as the worker)"
    )
    parser.add_argument("--timeout-s", type=float, default=1800.0, help="per worker start")
    parser.add_argument(
        "--min-free-gib", type=float, default=3.0, help="stop a worker below this much free"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "recovery.json")
    args = parser.parse_args()
    sizes = [int(k) for k in args.keys.split(",") if k.strip()]

    started_broker = not broker_answers(args.port)
    if started_broker:
        print(f"starting a broker on 127.0.0.1:{args.port} (data {args.data_dir})", flush=True)
        kafka_sh("up", args.port, args.data_dir)
    else:
        print(f"reusing the broker on 127.0.0.1:{args.port}", flush=True)
    rows: list[dict[str, Any]] = []
    try:
        began = time.perf_counter()
        records = mixed(
            templates(args.templates, args.history_hours, args.seed), args.active_share, args.seed
        )
        mean = sum(map(len, records)) / len(records)
        print(
            f"{len(records)} record forms ({args.active_share:.0%} active) after"
            f" {args.history_hours:g} h of one-minute"
            f" buckets in {time.perf_counter() - began:.0f} s (not timed): {mean:,.0f} B mean,"
            f" {min(map(len, records)):,} to {max(map(len, records)):,} B",
            flush=True,
        )
        with tempfile.TemporaryDirectory() as tmp:
            for n in sizes:
                rows.append(run_size(n, records, args, Path(tmp)))
                write(args, rows, records)
    finally:
        if started_broker and not args.keep_broker:
            kafka_sh("reset", args.port, args.data_dir)  # stop it and delete its data
            print(f"stopped the broker on {args.port} and deleted {args.data_dir}")
    for row in rows:
        summary(row)
    print(f"wrote {args.out}")
    return 0


def write(args: argparse.Namespace, rows: list[dict[str, Any]], records: list[bytes]) -> None:
    result = {
        "bench": "recovery",
        "templates": len(records),
        "history_hours": args.history_hours,
        "active_share": args.active_share,
        "template_bytes_mean": sum(map(len, records)) / len(records),
        "compression": args.compression or "none",
        "target_s_at_1m": TARGET_S,
        "runs": rows,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
