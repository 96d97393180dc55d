"""Replay throughput (events/s, one process) and detector state memory per tracked key.

    python bench/replay.py [--days 3 --customers 50 --rate 240] [--keys 100000] [--repeat 3]

1. Simulates traffic to gzipped JSON lines (not timed), then times ``replay_files`` over
   them: read, parse and validate, de-duplicate, price, bucket, detect, build alerts;
   ``--repeat`` runs, the median reported (wall and this process's CPU time).
2. Builds detector state for ``--keys`` (customer, endpoint) keys through the pipeline
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
import json
import platform
import statistics
import sys
import tempfile
import time
import tracemalloc
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
        for _ in range(repeat):
            pipeline = Pipeline(Settings(), prices(), load_customers(out / "customers.jsonl"))
            started, cpu = time.perf_counter(), time.process_time()
            report = replay_files(
                pipeline, [out / "usage.jsonl.gz"], [out / "errors.jsonl.gz"], progress=False
            )
            walls.append(time.perf_counter() - started)
            cpus.append(time.process_time() - cpu)
    elapsed, cpu_s = statistics.median(walls), statistics.median(cpus)
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
    }


STATE_BUCKETS = 12


def state_memory(keys: int, endpoints_per_customer: int) -> dict[str, float]:
    customers_n = keys // endpoints_per_customer
    customers = {
        f"c{i}": Customer(customer_id=f"c{i}", plan="pro", monthly_price_usd=100.0)
        for i in range(customers_n)
    }
    pipeline = Pipeline(Settings(), prices(), customers)
    raws = []
    n = 0
    for bucket in range(STATE_BUCKETS):
        for i in range(customers_n):
            for e in range(endpoints_per_customer):
                n += 1
                raws.append(
                    orjson.dumps(
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
                )
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for raw in raws:
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=3.0)
    parser.add_argument("--customers", type=int, default=50)
    parser.add_argument("--rate", type=float, default=240.0, help="requests per minute")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3, help="replay runs (median reported)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "replay.json"))
    args = parser.parse_args()

    speed = throughput(args.days, args.customers, args.rate, args.seed, max(1, args.repeat))
    print(
        f"replay: {speed['events']:,} events in {speed['seconds']:.2f} s = "
        f"{speed['events_per_s']:,.0f} events/s (target >= 200,000; median of "
        f"{speed['runs']}, best {speed['best_events_per_s']:,.0f}; "
        f"{speed['events_per_cpu_s']:,.0f} per CPU second), "
        f"{speed['alert_transitions']} alert transitions"
    )
    memory = [state_memory(args.keys, 2), state_memory(args.keys, 1)]
    for m in memory:
        print(
            f"state: {m['keys']:,} keys ({m['endpoints_per_customer']} endpoint(s) per customer): "
            f"{m['bytes_per_key']:,.0f} bytes per key (target <= 2,048)"
        )
    result = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "throughput": speed,
        "memory": memory,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
