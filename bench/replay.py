"""Replay throughput (events/s, one process) against a bare parse loop, how it scales with
keys, and detector state memory per tracked key.

    python bench/replay.py [--days 3 --customers 50 --rate 240] [--repeat 3]
                           [--sweep 50,500,5000,50000 --sweep-events 60000]
                           [--keys 100000[,1000000...]] [--state-buckets 12]
                           [--measure heap|tracemalloc] [--no-memory | --only-state]

1. Simulates traffic to gzipped JSON lines (not timed), then times ``replay_files`` over
   them: read, parse and validate, de-duplicate, price, bucket, detect, build alerts;
   ``--repeat`` runs, the median reported (wall and this process's CPU time). The
   reference runs in the same process on the same files between the replays: gunzip and
   ``orjson.loads`` of every line, nothing else (issue 13's target: replay >= 0.5 of it).
2. The sweep: the same number of events (``--sweep-events`` over one simulated day) from
   50 to 50,000 customers, each replayed once with its own reference, so cost that grows
   with keys rather than events shows as a falling ratio (target: at most 2x slower from
   the first to the last). Each case says how dense its keys are: events per active
   (key, minute) and the share of keys under one event a minute; and the CPU seconds
   spent in each detector's part of the detection stage (timers around
   CustomerDetection's methods).
3. Builds detector state for each of ``--keys`` (customer, endpoint) key counts through
   the pipeline and measures the heap it holds, per key; once with two endpoints per
   customer (customer-level state shared by two keys) and once with one (worst case).
   Each case runs in a fresh Python process (``--state-case``), so one case's garbage,
   or a million keys' state, is not left in the next. Each key gets ``STATE_BUCKETS``
   one-minute buckets of requests of varying size: enough for every detector to hold its
   state (cost_shift steps every 10 minutes) and for the numbers in it to be distinct
   (three buckets of identical requests, as before, left cost_shift out and let lists
   share one float object: it read 2,372 B where a key really held 5,862).
   ``--state-buckets N`` feeds only the last N of those buckets (at least 3; see
   ``state_memory``: 3 leave the same state, within 0.3 % at 20,000 to 1,000,000 keys),
   about 2.5 minutes a case at a million keys on a 2-core machine (6 to 13 with all 12).
   ``--measure heap`` (the default) is the heap in use before and after, as the
   allocators count it (``heap_in_use``); ``--measure tracemalloc`` is the previous
   measure (what Python asked the allocators for), which slows every allocation several
   times over (57 CPU minutes were not enough for a million keys). At 20,000 keys heap
   read 2,989 and 4,010 B per key (two endpoints per customer, one), tracemalloc 2,875
   and 3,871: heap is about 4 % above it, the allocators' rounding and headers. The
   growth of the process's RSS is recorded too, but is not the figure: it also holds
   what the buckets' rows, freed after each bucket, left behind (5,121 and 6,167 B per
   key at 20,000 keys).
   Each case also counts what the states hold whatever the objects around it cost: the
   bytes of their arrays (single precision) per key, and their other number fields: the
   floor of any layout (struct-of-arrays included) that keeps the same numbers.
   ``--only-state`` runs only this part (the file's other figures, if any, are kept).
Prints the figures and writes them to bench/results/replay.json.
"""

from __future__ import annotations

import argparse
import array
import contextlib
import ctypes
import gc
import gzip
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


# The detection stage's parts timed in the sweep (CPU seconds of this process).
DETECTORS = {
    "spend_spike": "_run_spikes",
    "cost_shift": "_run_shifts",
    "retry_storm": "_run_retries",
    "margin_breach": "_run_margins",
}


@contextlib.contextmanager
def detector_times() -> Iterator[dict[str, float]]:
    """CPU seconds spent in each detector's part of CustomerDetection.close while the
    block runs (the methods wrapped with a timer, a few microseconds a bucket)."""
    from stream.core.detect import CustomerDetection

    spent = dict.fromkeys(DETECTORS, 0.0)
    originals = {name: getattr(CustomerDetection, name) for name in DETECTORS.values()}

    def timed(detector: str, method: Any) -> Any:
        def run(*args: Any, **kwargs: Any) -> Any:
            started = time.process_time()
            try:
                return method(*args, **kwargs)
            finally:
                spent[detector] += time.process_time() - started

        return run

    for detector, name in DETECTORS.items():
        setattr(CustomerDetection, name, timed(detector, originals[name]))
    try:
        yield spent
    finally:
        for name, method in originals.items():
            setattr(CustomerDetection, name, method)


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
            with detector_times() as parts:
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
            "cpu_s": cpu_s,
            **{f"{detector}_cpu_s": seconds for detector, seconds in parts.items()},
        }
        rows.append(row)
        print(
            f"  {n:>6,} customers, {row['keys']:>6,} keys"
            f" ({row['events_per_key_minute_mean']:.1f} events per active key-minute,"
            f" {row['sparse_key_share']:.0%} of keys under one a minute):"
            f" {row['events_per_s']:>8,.0f} events/s, {row['ratio']:.3f} of the bare loop"
            f" ({row['ratio_cpu']:.3f} in CPU time)\n"
            f"          CPU s: {cpu_s:.2f}, of which "
            + ", ".join(f"{detector} {seconds:.2f}" for detector, seconds in parts.items()),
            flush=True,
        )
    return rows


STATE_BUCKETS = 12
MIN_STATE_BUCKETS = 3
MEASURES = ("heap", "tracemalloc")


def state_memory(
    keys: int,
    endpoints_per_customer: int,
    buckets: int = STATE_BUCKETS,
    measure: str = "heap",
) -> dict[str, Any]:
    """Detector state of ``keys`` keys after real updates, per key, in this process.

    Feeds the last ``buckets`` of the ``STATE_BUCKETS`` one-minute buckets (T0 is on a
    10-minute step): from 3 on, the state held at the end has the same parts whatever
    the count. spend_spike's and retry_storm's arrays and margin_breach's profile are
    their full size from a key's first bucket; cost_shift's step of buckets 0-9 is
    judged (its state made) when bucket 10 closes, and buckets 10 and 11 are the step
    being summed (a list of six sums per key); all keys are within spend_spike's
    EAGER_BUCKETS. Only the numbers differ. Checked (heap measure, B per key, two
    endpoints per customer and one, all 12 buckets against the last 3): 2,989 and 4,010
    against 2,989 and 4,011 at 20,000 keys (tracemalloc: 2,875 and 3,871 against 2,875
    and 3,872); 3,136 and 4,179 against 3,136 and 4,190 at 100,000; 3,076 and 4,064
    against 3,078 and 4,068 at 1,000,000 (within 0.3 %), in a quarter to a third of the
    time (a million keys: 350 and 762 s against 134 and 141 s, sharing the machine).
    """
    customers_n = keys // endpoints_per_customer
    customers = {
        f"c{i}": Customer(customer_id=f"c{i}", plan="pro", monthly_price_usd=100.0)
        for i in range(customers_n)
    }
    pipeline = Pipeline(Settings(), prices(), customers)
    started = time.perf_counter()
    gc.collect()
    if measure == "tracemalloc":
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
    else:
        before = heap_in_use()
    rss_before = rss()
    # The events are made a bucket at a time as they are fed (at a million keys, all of
    # them at once would take more memory than the state): what is left of them after
    # the flush is garbage, and only what is still held is counted.
    for bucket in range(STATE_BUCKETS - buckets, STATE_BUCKETS):
        for raw in _bucket_events(bucket, customers_n, endpoints_per_customer):
            pipeline.feed("usage", raw)
    pipeline.flush()
    # Count detector state only: the de-duplication window is per event, not per key.
    if (dedup := pipeline.ingest.dedup) is not None:
        dedup.current.clear()
        dedup.previous.clear()
    gc.collect()
    if measure == "tracemalloc":
        held = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
    else:
        held = heap_in_use() - before
    grown = rss() - rss_before
    tracked = len(pipeline.per_customer.spike_endpoint)
    arrays, numbers = content(pipeline.per_customer)
    return {
        "keys": tracked,
        "endpoints_per_customer": endpoints_per_customer,
        "measure": measure,
        "bytes_total": held,
        "bytes_per_key": held / tracked,
        "buckets": buckets,
        "rss_grown_bytes_per_key": grown / tracked,
        "array_bytes_per_key": arrays / tracked,
        "number_fields_per_key": numbers / tracked,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "build_seconds": time.perf_counter() - started,
    }


STATE_TABLES = (
    "spike_customer",
    "spike_endpoint",
    "shift_customer",
    "shift_endpoint",
    "retry_endpoint",
    "margin",
)


def content(detection: Any) -> tuple[int, int]:
    """What the detectors' states hold, whatever the objects around it cost: the bytes of
    their arrays (single precision) and how many number fields they have besides, over
    every state of ``detection`` (a CustomerDetection). Per key, the arrays are the floor
    of any layout that keeps the same numbers at the same precision."""
    arrays = numbers = 0
    for name in STATE_TABLES:
        for state in getattr(detection, name).values():
            for field in state.__slots__:
                value = getattr(state, field)
                value = getattr(value, "stats", value)  # a SeasonalBaseline's array
                if isinstance(value, bool) or value is None:
                    continue
                if isinstance(value, int | float):
                    numbers += 1
                    continue
                if isinstance(value, array.array):
                    arrays += memoryview(value).nbytes  # episodes, other objects: not counted
    return arrays, numbers


def heap_in_use() -> int:
    """Bytes the allocators hand out now: pymalloc's allocated blocks (objects of up to
    512 bytes; ``sys._debugmallocstats``, which writes to the C stderr) plus what glibc's
    malloc has in use (``mallinfo2``: larger objects, arrays' buffers, dict tables,
    numpy's). pymalloc's arenas are mapped directly, not taken from malloc, so nothing is
    counted twice. Unlike tracemalloc it costs nothing while the state is built."""
    libc = ctypes.CDLL(None)
    if not hasattr(libc, "mallinfo2"):
        raise SystemExit("--measure heap needs glibc 2.33 or later; use --measure tracemalloc")
    libc.mallinfo2.restype = _MallInfo2
    sys.stderr.flush()
    with tempfile.TemporaryFile() as tmp:
        saved = os.dup(2)
        os.dup2(tmp.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        stats = tmp.read().decode()
    found = re.search(r"# bytes in allocated blocks\s*=\s*([\d,]+)", stats)
    small = int(found.group(1).replace(",", "")) if found else 0  # 0: pymalloc is off
    info = libc.mallinfo2()
    return small + info.uordblks + info.hblkhd


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            *("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks"),
            *("uordblks", "fordblks", "keepcost"),
        )
    ]


def rss() -> int:
    """This process's resident set now, bytes; malloc's free memory is given back first
    (what pymalloc's partly used arenas hold stays)."""
    libc = ctypes.CDLL(None)
    if hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def state_case(keys: int, endpoints: int, buckets: int, measure: str) -> dict[str, Any]:
    """state_memory in a fresh Python process (this script with ``--state-case``)."""
    started = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--state-case",
            f"{keys},{endpoints}",
            "--state-buckets",
            str(buckets),
            "--measure",
            measure,
        ],
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    result["case_seconds"] = time.perf_counter() - started
    return result


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
    parser.add_argument(
        "--keys", default="100000", help="key counts of the state figure, comma-separated"
    )
    parser.add_argument("--repeat", type=int, default=3, help="replay runs (median reported)")
    parser.add_argument(
        "--sweep",
        default="50,500,5000,50000",
        help="customers per sweep case, comma-separated ('' for none)",
    )
    parser.add_argument("--sweep-events", type=int, default=60_000)
    parser.add_argument("--no-memory", action="store_true", help="skip the state figures")
    parser.add_argument(
        "--only-state", action="store_true", help="only the state figures (no replay, no sweep)"
    )
    parser.add_argument(
        "--state-buckets",
        type=int,
        default=STATE_BUCKETS,
        help=f"buckets fed per key for the state figures, the last of {STATE_BUCKETS}"
        f" ({MIN_STATE_BUCKETS} to {STATE_BUCKETS}; see state_memory)",
    )
    parser.add_argument(
        "--measure",
        choices=MEASURES,
        default="heap",
        help="state memory as the allocators' heap in use, or tracemalloc (slow)",
    )
    parser.add_argument("--state-case", help=argparse.SUPPRESS)  # KEYS,ENDPOINTS: one case
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "replay.json"))
    args = parser.parse_args()
    if not MIN_STATE_BUCKETS <= args.state_buckets <= STATE_BUCKETS:
        parser.error(f"--state-buckets: {MIN_STATE_BUCKETS} to {STATE_BUCKETS}")
    if args.no_memory and args.only_state:
        parser.error("--no-memory and --only-state leave nothing to do")
    if args.state_case:
        keys, endpoints = (int(n) for n in args.state_case.split(","))
        print(json.dumps(state_memory(keys, endpoints, args.state_buckets, args.measure)))
        return 0
    key_counts = [int(k) for k in args.keys.split(",") if k.strip()]
    out = Path(args.out)
    if args.only_state:
        memory = state_figures(key_counts, args.state_buckets, args.measure)
        # The file's other figures, from an earlier run, are kept as they were.
        kept = json.loads(out.read_text()) if out.exists() else {}
        write(out, {**kept, "memory": memory})
        return 0

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
    memory = [] if args.no_memory else state_figures(key_counts, args.state_buckets, args.measure)
    write(out, {"throughput": speed, "sweep": rows, "memory": memory})
    return 0


def state_figures(key_counts: list[int], buckets: int, measure: str) -> list[dict[str, Any]]:
    """Each key count with two endpoints per customer, then one, each in its own process;
    printed as each ends (a million keys take minutes)."""
    memory = []
    for keys in key_counts:
        for endpoints in (2, 1):
            m = state_case(keys, endpoints, buckets, measure)
            memory.append(m)
            print(
                f"state: {m['keys']:,} keys ({endpoints} endpoint(s) per customer,"
                f" {buckets} buckets each, {measure}): {m['bytes_per_key']:,.0f} bytes per key"
                " (targets: <= 2,048, issue 12; <= 1,024, issue 13); the process's RSS grew"
                f" {m['rss_grown_bytes_per_key']:,.0f} per key, peak"
                f" {m['peak_rss_bytes'] / 2**20:,.0f} MiB; {m['case_seconds']:,.0f} s."
                f" The states' arrays alone: {m['array_bytes_per_key']:,.0f} bytes per key,"
                f" besides {m['number_fields_per_key']:.1f} number fields",
                flush=True,
            )
    return memory


def write(out: Path, figures: dict[str, object]) -> None:
    result = {"python": platform.python_version(), "machine": platform.machine(), **figures}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    raise SystemExit(main())
