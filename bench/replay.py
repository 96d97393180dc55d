"""Replay throughput (events/s, one process) against a bare parse loop, how it scales with
keys, and detector state memory per tracked key.

    python bench/replay.py [--days 3 --customers 50 --rate 240] [--keys 100000] [--repeat 3]
                           [--sweep 50,500,5000,50000 --sweep-events 60000] [--no-memory]

1. Simulates traffic to gzipped JSON lines (not timed), then times ``replay_files`` over
   them: read, parse and validate, de-duplicate, price, bucket, detect, build alerts;
   ``--repeat`` runs, the median reported (wall and this process's CPU time). The
   reference runs in the same process on the same files between the replays: gunzip and
   ``orjson.loads`` of every line, nothing else (issue 13's target: replay >= 0.5 of it).
2. The sweep: the same number of events (``--sweep-events`` over one simulated day) from
   50 to 50,000 customers, each replayed once with its own reference, so cost that grows
   with keys rather than events shows as a falling ratio (target: at most 2x slower from
   the first to the last). Each case says how dense its keys are: events per active
   (key, minute) and the share of keys under one event a minute.
3. Builds detector state for ``--keys`` (customer, endpoint) keys through the pipeline
   and measures the Python heap it holds (tracemalloc), per key; once with two endpoints
   per customer (customer-level state shared by two keys) and once with one (worst case).
   Each key gets ``STATE_BUCKETS`` one-minute buckets of requests of varying size: enough
   for every detector to hold its state (cost_shift steps every 10 minutes) and for the
   numbers in it to be distinct (three buckets of identical requests, as before, left
   cost_shift out and let lists share one float object: it read 2,372 B where a key
   really held 5,862).
Prints the figures and writes them to bench/results/replay.json.
"""

from __future__ import annotations

import argparse
import gc
import gzip
import json
import platform
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stream.core.events import Customer  # noqa: E402
from stream.core.pipeline import Pipeline  # noqa: E402
from stream.core.pricing import PriceTable  # noqa: E402
from stream.offline.replay import replay_files  # noqa: E402
from stream.offline.simulate import SimConfig, simulate  # noqa: E402
from stream.settings import CONFIG_DIR, Settings  # noqa: E402

T0 = 1_793_577_600.0  # 2026-11-02T00:00:00Z


def prices() -> PriceTable:
    return PriceTable.load(CONFIG_DIR / "prices.yaml")


def throughput(
    days: float, customers: int, rate: float, seed: int, repeat: int
) -> dict[str, float]:
    """Replay the same simulated files ``repeat`` times; wall and CPU seconds of each run.

    The median run is the figure; the best is printed too. CPU time (this process only)
    is steadier than wall time on a machine shared with other work.
    """
    from stream.core.customers import load_customers

    walls: list[float] = []
    cpus: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        cfg = SimConfig(
            days=days, customers=customers, seed=seed, rate_per_min=rate, incidents=True
        )
        started = time.perf_counter()
        simulate(out, cfg)
        simulated = time.perf_counter() - started
        shape = density(files(out), days)
        bare_walls: list[float] = []
        bare_cpus: list[float] = []
        for _ in range(repeat):
            wall, cpu_s, parsed = bare_parse(files(out))
            bare_walls.append(wall)
            bare_cpus.append(cpu_s)
            pipeline = Pipeline(Settings(), prices(), load_customers(out / "customers.jsonl"))
            started, cpu = time.perf_counter(), time.process_time()
            report = replay_files(
                pipeline, [out / "usage.jsonl.gz"], [out / "errors.jsonl.gz"], progress=False
            )
            walls.append(time.perf_counter() - started)
            cpus.append(time.process_time() - cpu)
    elapsed, cpu_s = statistics.median(walls), statistics.median(cpus)
    bare_s, bare_cpu_s = statistics.median(bare_walls), statistics.median(bare_cpus)
    return {
        "events": report.lines,
        "runs": repeat,
        "seconds": elapsed,
        "events_per_s": report.lines / elapsed,
        "best_events_per_s": report.lines / min(walls),
        "cpu_seconds": cpu_s,
        "events_per_cpu_s": report.lines / cpu_s,
        "alert_transitions": len(report.alerts),
        "simulate_seconds": simulated,
        **shape,
        "bare_events_per_s": parsed / bare_s,
        "bare_events_per_cpu_s": parsed / bare_cpu_s,
        "ratio": (report.lines / elapsed) / (parsed / bare_s),
        "ratio_cpu": (report.lines / cpu_s) / (parsed / bare_cpu_s),
    }


def files(out: Path) -> list[Path]:
    return [out / "usage.jsonl.gz", out / "errors.jsonl.gz"]


def bare_parse(paths: list[Path]) -> tuple[float, float, int]:
    """The reference: gunzip and ``orjson.loads`` every line (wall s, CPU s, lines)."""
    started, cpu = time.perf_counter(), time.process_time()
    lines = 0
    for path in paths:
        with gzip.open(path, "rb") as fh:
            for line in fh:
                orjson.loads(line)
                lines += 1
    return time.perf_counter() - started, time.process_time() - cpu, lines


def density(paths: list[Path], days: float) -> dict[str, float]:
    """How busy the keys are: events per active (customer, endpoint, minute), median and
    mean, and the share of keys with fewer events than ``days`` has minutes (under one a
    minute on average)."""
    per_minute: Counter[tuple[str, str, int]] = Counter()
    for path in paths[:1]:  # usage: what the spend detectors judge
        with gzip.open(path, "rb") as fh:
            for line in fh:
                e = orjson.loads(line)
                ts = e["ts"]
                t = ts if isinstance(ts, int | float) else _epoch(ts)
                per_minute[(e["customer_id"], e["endpoint"], int(t // 60))] += 1
    counts = sorted(per_minute.values())
    keys: Counter[tuple[str, str]] = Counter()
    for (c, ep, _), n in per_minute.items():
        keys[(c, ep)] += n
    sparse = sum(1 for n in keys.values() if n < days * 1440)
    return {
        "keys": len(keys),
        "events_per_key_minute_median": float(counts[len(counts) // 2]) if counts else 0.0,
        "events_per_key_minute_mean": sum(counts) / len(counts) if counts else 0.0,
        "sparse_key_share": sparse / len(keys) if keys else 0.0,
    }


def _epoch(ts: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def sweep(customers: list[int], events: int, seed: int) -> list[dict[str, float]]:
    """The same event count over one simulated day at each number of customers: replay
    once and the reference once, on the same files."""
    from stream.core.customers import load_customers

    rows = []
    for n in customers:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp)
            simulate(out, SimConfig(days=1, customers=n, seed=seed, rate_per_min=events / 1440))
            shape = density(files(out), 1.0)
            bare_s, bare_cpu, parsed = bare_parse(files(out))
            pipeline = Pipeline(Settings(), prices(), load_customers(out / "customers.jsonl"))
            started, cpu = time.perf_counter(), time.process_time()
            report = replay_files(
                pipeline, [out / "usage.jsonl.gz"], [out / "errors.jsonl.gz"], progress=False
            )
            wall, cpu_s = time.perf_counter() - started, time.process_time() - cpu
        row = {
            "customers": n,
            "events": report.lines,
            **shape,
            "events_per_s": report.lines / wall,
            "events_per_cpu_s": report.lines / cpu_s,
            "bare_events_per_s": parsed / bare_s,
            "ratio": (report.lines / wall) / (parsed / bare_s),
            "ratio_cpu": (report.lines / cpu_s) / (parsed / bare_cpu),
        }
        rows.append(row)
        print(
            f"  {n:>6,} customers, {row['keys']:>6,} keys"
            f" ({row['events_per_key_minute_mean']:.1f} events per active key-minute,"
            f" {row['sparse_key_share']:.0%} of keys under one a minute):"
            f" {row['events_per_s']:>8,.0f} events/s, {row['ratio']:.3f} of the bare loop"
            f" ({row['ratio_cpu']:.3f} in CPU time)",
            flush=True,
        )
    return rows


STATE_BUCKETS = 12


def state_memory(keys: int, endpoints_per_customer: int) -> dict[str, float]:
    customers_n = keys // endpoints_per_customer
    customers = {
        f"c{i}": Customer(customer_id=f"c{i}", plan="pro", monthly_price_usd=100.0)
        for i in range(customers_n)
    }
    pipeline = Pipeline(Settings(), prices(), customers)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    # The events are made a bucket at a time as they are fed (at a million keys, all of
    # them at once would take more memory than the state): what is left of them after
    # the flush is garbage, and only what is still held is counted.
    for bucket in range(STATE_BUCKETS):
        for raw in _bucket_events(bucket, customers_n, endpoints_per_customer):
            pipeline.feed("usage", raw)
    pipeline.flush()
    # Count detector state only: the de-duplication window is per event, not per key.
    pipeline.ingest.dedup.current.clear()
    pipeline.ingest.dedup.previous.clear()
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    tracked = len(pipeline.per_customer.spike_endpoint)
    return {
        "keys": tracked,
        "endpoints_per_customer": endpoints_per_customer,
        "bytes_total": held,
        "bytes_per_key": held / tracked,
        "buckets": STATE_BUCKETS,
    }


def _bucket_events(bucket: int, customers_n: int, endpoints: int) -> Iterator[bytes]:
    """One event per key in the bucket ``bucket``, of varying size (see state_memory)."""
    n = bucket * customers_n * endpoints
    for i in range(customers_n):
        for e in range(endpoints):
            n += 1
            yield orjson.dumps(
                {
                    "event_id": f"e{n}",
                    "ts": T0 + bucket * 60 + 1,
                    "customer_id": f"c{i}",
                    "endpoint": f"ep{e}",
                    "provider": "openai",
                    "model": "gpt-4o",
                    "input_tokens": 100 + n % 37,
                    "output_tokens": 10,
                }
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=3.0)
    parser.add_argument("--customers", type=int, default=50)
    parser.add_argument("--rate", type=float, default=240.0, help="requests per minute")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3, help="replay runs (median reported)")
    parser.add_argument(
        "--sweep",
        default="50,500,5000,50000",
        help="customers per sweep case, comma-separated ('' for none)",
    )
    parser.add_argument("--sweep-events", type=int, default=60_000)
    parser.add_argument("--no-memory", action="store_true", help="skip the state figures")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "replay.json"))
    args = parser.parse_args()

    speed = throughput(args.days, args.customers, args.rate, args.seed, max(1, args.repeat))
    print(
        f"traffic: {args.customers} customers, {speed['keys']:,} keys, "
        f"{speed['events_per_key_minute_mean']:.1f} events per active key-minute (mean), "
        f"{speed['sparse_key_share']:.0%} of keys under one a minute"
    )
    print(
        f"replay: {speed['events']:,} events in {speed['seconds']:.2f} s = "
        f"{speed['events_per_s']:,.0f} events/s (target >= 200,000; median of "
        f"{speed['runs']}, best {speed['best_events_per_s']:,.0f}; "
        f"{speed['events_per_cpu_s']:,.0f} per CPU second), "
        f"{speed['alert_transitions']} alert transitions"
    )
    print(
        f"reference: gunzip + orjson.loads of the same files {speed['bare_events_per_s']:,.0f}"
        f" lines/s; replay is {speed['ratio']:.3f} of it ({speed['ratio_cpu']:.3f} in CPU"
        " time; target >= 0.5)"
    )
    counts = [int(c) for c in args.sweep.split(",") if c.strip()]
    rows: list[dict[str, float]] = []
    if counts:
        print(f"sweep: {args.sweep_events:,} events over one day at each customer count")
        rows = sweep(counts, args.sweep_events, args.seed)
        first, last = rows[0], rows[-1]
        slowdown = first["events_per_cpu_s"] / last["events_per_cpu_s"]
        print(
            f"  from {first['customers']:,} to {last['customers']:,} customers: {slowdown:.1f}x"
            " slower per CPU second (target <= 2x)"
        )
    memory = [] if args.no_memory else [state_memory(args.keys, 2), state_memory(args.keys, 1)]
    for m in memory:
        print(
            f"state: {m['keys']:,} keys ({m['endpoints_per_customer']} endpoint(s) per customer): "
            f"{m['bytes_per_key']:,.0f} bytes per key"
            " (targets: <= 2,048, issue 12; <= 1,024, issue 13)"
        )
    result = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "throughput": speed,
        "sweep": rows,
        "memory": memory,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
