"""Columnar ingest, measured: polars and pyarrow against the orjson loop and today's replay.

    python bench/columnar.py [--events 300000] [--repeat 3] [--engines polars,pyarrow]

Issue 13, item 1, its measuring step. Simulates (not timed) a dense case (few customers,
many events per key per minute) and a sparse one (many customers, most keys under one
event a minute) with the same number of usage lines, and injects malformed lines (bad
JSON, fields out of the contract's limits, missing fields, a string field holding a
number) and duplicate event_ids. Then times, on the same files, in the same run:

  reference  gunzip + ``orjson.loads`` on each line, nothing else;
  current    ``stream.offline.replay.replay_files``' reading, validation, pricing and
             bucketing (closed buckets kept, not judged: no detectors);
  polars / pyarrow  bench/columnar_engines.py: decode a chunk in one call, validate with
             vectorised expressions (suspect lines through the per-line path), de-duplicate,
             price by a join, sum per (bucket, key).

Checks that each engine gives the same per-(bucket, key) sums (within 1e-9 relative) and
the same rejected lines with the same reasons as ``current``, and fails if not. Prints
events/s and the ratio to the reference (median of ``--repeat``), peak RSS of each path in
a fresh process (``--no-rss`` skips it), and writes bench/results/columnar.json.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.columnar_engines import (  # noqa: E402
    ArrowEngine,
    ChunkEngine,
    Outcome,
    PolarsEngine,
    rows_of,
)
from stream.core.buckets import RowKey  # noqa: E402
from stream.core.ingest import ERRORS, USAGE, DeadLetter, Ingest  # noqa: E402
from stream.core.pipeline import Pipeline  # noqa: E402
from stream.core.pricing import PriceTable  # noqa: E402
from stream.offline.replay import open_lines, replay_files  # noqa: E402
from stream.offline.simulate import SimConfig, simulate  # noqa: E402
from stream.settings import CONFIG_DIR, Settings  # noqa: E402

ENGINES: dict[str, type[ChunkEngine]] = {
    "polars": PolarsEngine,
    "pyarrow": ArrowEngine,
}
PATHS = ["reference", "current", *ENGINES]
DAYS = 0.25  # both cases span the same 6 hours: the rate sets the event count
Rows = dict[tuple[int, RowKey], list[float]]


_PRICES: list[PriceTable] = []


def prices() -> PriceTable:
    """A fresh table (its caches and unknown-model counts empty), the YAML read once."""
    if not _PRICES:
        _PRICES.append(PriceTable.load(CONFIG_DIR / "prices.yaml"))
    return PriceTable.from_config(_PRICES[0].config)


# --- traffic -----------------------------------------------------------------------------


def inject(lines: list[bytes], seed: int) -> tuple[list[bytes], dict[str, int]]:
    """``lines`` with malformed lines and duplicates spread through them (at seeded places,
    each malformed line made from the line it follows, so its time fits there)."""
    rng = np.random.default_rng(seed)

    def edited(template: bytes, change: Callable[[dict[str, Any]], None]) -> bytes:
        event = orjson.loads(template)
        change(event)
        return orjson.dumps(event)

    def set_(field: str, value: Any) -> Callable[[dict[str, Any]], None]:
        return lambda e: e.__setitem__(field, value)

    def drop(field: str) -> Callable[[dict[str, Any]], None]:
        return lambda e: e.pop(field, None)

    kinds: list[tuple[str, Callable[[bytes], bytes]]] = [
        ("bad_json", lambda t: t[: len(t) // 2]),
        ("bad_json", lambda t: t.replace(b'"customer_id"', b"customer_id", 1)),
        ("out_of_limits", lambda t: edited(t, set_("input_tokens", 200_000_000))),
        ("out_of_limits", lambda t: edited(t, set_("attempt", 0))),
        ("out_of_limits", lambda t: edited(t, set_("event_id", "x" * 200))),
        ("out_of_limits", lambda t: edited(t, set_("cost_usd", -1.0))),
        ("missing", lambda t: edited(t, drop("customer_id"))),
        ("missing", lambda t: edited(t, drop("model"))),
        ("wrong_type", lambda t: edited(t, set_("endpoint", 5))),
        ("wrong_type", lambda t: edited(t, set_("ts", "1793577600"))),
        ("null", lambda t: edited(t, set_("request_id", None))),
        # valid, though the vectorised checks cannot tell: the per-line path accepts it
        ("accepted_suspect", lambda t: edited(t, set_("input_tokens", 12.0))),
    ]
    out = list(lines)
    made: Counter[str] = Counter()
    places = sorted(rng.choice(len(lines) - 10, size=len(kinds) + 5, replace=False).tolist())
    inserts: list[tuple[int, bytes]] = []
    for place, (name, make) in zip(places, kinds, strict=False):
        template = lines[place]
        inserts.append((place + 1, make(template) + b"\n"))
        made[name] += 1
    for place in places[len(kinds) :]:  # duplicates: a copy of a line, 3 lines later
        inserts.append((place + 3, lines[place]))
        made["duplicate"] += 1
    for at, line in sorted(inserts, reverse=True):
        out.insert(at, line)
    return out, dict(made)


@dataclass
class Case:
    name: str
    usage: Path
    errors: Path
    lines: int
    customers: int
    injected: dict[str, int]

    @property
    def sources(self) -> list[tuple[str, Path]]:
        return [(USAGE, self.usage), (ERRORS, self.errors)]


def make_case(out: Path, name: str, customers: int, events: int, seed: int) -> Case:
    """Simulated files of ``events`` usage lines (cut to exactly that) over ``DAYS``."""
    # First attempts per minute, as a weekday's mean: the night hours simulated run at
    # about half of it, so twice the mean gives enough lines to cut from.
    rate = 2 * events / (DAYS * 1440)
    folder = out / name
    simulate(folder, SimConfig(days=DAYS, customers=customers, seed=seed, rate_per_min=rate))
    usage = gzip.decompress((folder / "usage.jsonl.gz").read_bytes()).splitlines(keepends=True)
    if len(usage) < events:
        raise SystemExit(f"{name}: simulated {len(usage)} usage lines, fewer than {events}")
    last_ts = orjson.loads(usage[events - 1])["ts"]
    lines, injected = inject(usage[:events], seed)
    (folder / "usage.jsonl.gz").write_bytes(gzip.compress(b"".join(lines), 5, mtime=0))
    errors = gzip.decompress((folder / "errors.jsonl.gz").read_bytes()).splitlines(keepends=True)
    kept = [e for e in errors if _before(orjson.loads(e)["ts"], last_ts)]
    kept.insert(len(kept) // 2, b'{"event_id":"err-x","ts":1793577600,"customer_id":"c"}\n')
    (folder / "errors.jsonl.gz").write_bytes(gzip.compress(b"".join(kept), 5, mtime=0))
    return Case(name, folder / "usage.jsonl.gz", folder / "errors.jsonl.gz",
                len(lines) + len(kept), customers, injected)  # fmt: skip


def _before(ts: Any, last: Any) -> bool:
    from stream.core.events import to_epoch_seconds

    return to_epoch_seconds(ts) <= to_epoch_seconds(last)


# --- the four paths ----------------------------------------------------------------------


def reference(case: Case) -> int:
    """The bare loop: gunzip and ``orjson.loads`` each line, as replay opens files."""
    n = 0
    loads = orjson.loads
    for _, path in case.sources:
        lines, disk = open_lines(path)
        with lines, disk:
            for raw in lines:
                try:  # noqa: SIM105 - a with block per line would cost the loop time
                    loads(raw)
                except orjson.JSONDecodeError:
                    pass
                n += 1
    return n


class BucketsOnly(Pipeline):
    """Replay's pipeline with closed buckets kept instead of judged (no detectors)."""

    def __init__(self, settings: Settings, prices: PriceTable, dead: list[DeadLetter]) -> None:
        super().__init__(settings, prices, {}, on_dead_letter=dead.append)
        self.closed: dict[int, dict[RowKey, list[float]]] = {}

    def _close(self, index: int) -> list[Any]:
        self.closed[index] = self.buckets.pop(index)
        return []


def current(case: Case, settings: Settings) -> Outcome:
    dead: list[DeadLetter] = []
    pipeline = BucketsOnly(settings, prices(), dead)
    report = replay_files(pipeline, [case.usage], [case.errors], progress=False)
    rows = {(b, key): row for b, keyed in pipeline.closed.items() for key, row in keyed.items()}
    outcome = Outcome(rows, dead, pipeline.ingest.stats.duplicates, report.lines, 0)
    outcome.late = pipeline.buckets.stats.late_events  # type: ignore[attr-defined]
    return outcome


def engine(name: str, case: Case, settings: Settings, chunk_mb: float) -> Outcome:
    ingest = Ingest(settings.ingest, prices())
    runner = ENGINES[name](ingest, settings.buckets.width_s, int(chunk_mb * (1 << 20)))
    return runner.run(case.sources)


def run_path(path: str, case: Case, settings: Settings, chunk_mb: float) -> Any:
    if path == "reference":
        return reference(case)
    if path == "current":
        return current(case, settings)
    return engine(path, case, settings, chunk_mb)


# --- checking ----------------------------------------------------------------------------


def sums_of(outcome: Outcome) -> Rows:
    if isinstance(outcome.sums, dict):
        return outcome.sums
    if outcome.sums is None:
        return {}
    table = outcome.sums
    data = table.to_pydict() if hasattr(table, "to_pydict") else table.to_dict(as_series=False)
    return rows_of(data)


def rejected(outcome: Outcome) -> Counter[tuple[str, bytes, str, str]]:
    return Counter((d.kind, d.raw, d.rejection.reason, d.rejection.field)
                   for d in outcome.dead_letters)  # fmt: skip


def compare(expected: Outcome, got: Outcome) -> dict[str, Any]:
    """How ``got`` differs from ``expected``: rows, sums and rejected lines."""
    want, have = sums_of(expected), sums_of(got)
    missing, extra = want.keys() - have.keys(), have.keys() - want.keys()
    differ = [k for k in want.keys() & have.keys()
              if not all(math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
                         for a, b in zip(want[k], have[k], strict=True))]  # fmt: skip
    a, b = rejected(expected), rejected(got)
    return {
        "agree": not (missing or extra or differ)
        and a == b
        and expected.duplicates == got.duplicates,
        "rows": len(want),
        "rows_missing": len(missing),
        "rows_extra": len(extra),
        "rows_differing": len(differ),
        "rejected": sum(a.values()),
        "rejected_only_current": [f"{k[2]} {k[3]}: {k[1][:80]!r}" for k in (a - b)][:5],
        "rejected_only_engine": [f"{k[2]} {k[3]}: {k[1][:80]!r}" for k in (b - a)][:5],
        "reasons": sorted(Counter(f"{k[2]}:{k[3]}" for k in a.elements()).items()),
        "duplicates": [expected.duplicates, got.duplicates],
        "suspects": got.suspects,
    }


def density(outcome: Outcome, width_s: float) -> dict[str, float]:
    """Keys, and the share of keys under one event per minute over the span they are seen."""
    rows = sums_of(outcome)
    buckets = [b for b, _ in rows]
    minutes = (max(buckets) - min(buckets) + 1) * width_s / 60 if buckets else 1
    per_key: dict[RowKey, float] = {}
    for (_, key), row in rows.items():
        per_key[key] = per_key.get(key, 0.0) + row[1]
    rates = [n / minutes for n in per_key.values()]
    return {
        "keys": len(per_key),
        "median_events_per_key_minute": statistics.median(rates) if rates else 0.0,
        "share_of_keys_under_1_per_minute": sum(r < 1 for r in rates) / max(len(rates), 1),
    }


# --- timing ------------------------------------------------------------------------------


def timed(path: str, case: Case, settings: Settings, chunk_mb: float) -> tuple[float, float]:
    started, cpu = time.perf_counter(), time.process_time()
    run_path(path, case, settings, chunk_mb)
    return time.perf_counter() - started, time.process_time() - cpu


def peak_rss(path: str, case: Case, chunk_mb: float, threads: int) -> dict[str, float]:
    """Peak RSS (MiB, VmHWM) of one run of ``path`` in a fresh process, and above what
    its imports (orjson, stream, polars and pyarrow alike) held."""
    done = subprocess.run(
        [sys.executable, __file__, "--rss-of", path, "--usage", str(case.usage),
         "--errors", str(case.errors), "--chunk-mb", str(chunk_mb),
         "--threads", str(threads)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def vm_kib(field: str) -> int:
    """A memory figure of this process from /proc/self/status, KiB (0 where there is none)."""
    try:
        for row in Path("/proc/self/status").read_text().splitlines():
            if row.startswith(field + ":"):
                return int(row.split()[1])
    except OSError:
        pass
    return 0


def rss_child(args: argparse.Namespace) -> int:
    import polars  # noqa: F401 - imported in every child alike, before the baseline
    import pyarrow.json  # noqa: F401

    case = Case("rss", Path(args.usage), Path(args.errors), 0, 0, {})
    settings = Settings()
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent through fork and
    # exec (it read the bench's own 0.5-1 GB here), while VmHWM starts with the new image.
    before = vm_kib("VmHWM")
    run_path(args.rss_of, case, settings, args.chunk_mb)
    peak = vm_kib("VmHWM")
    print(json.dumps({"peak_mib": peak / 1024, "above_imports_mib": (peak - before) / 1024}))
    return 0


def measure(case: Case, settings: Settings, paths: list[str], args: argparse.Namespace
            ) -> dict[str, Any]:  # fmt: skip
    outcomes = {p: run_path(p, case, settings, args.chunk_mb) for p in paths[1:]}
    checks = {p: compare(outcomes["current"], outcomes[p]) for p in paths[2:]}
    runs: dict[str, list[tuple[float, float]]] = {p: [] for p in paths}
    for _ in range(args.repeat):
        for p in paths:  # alternated, so a slow spell of the machine hits every path
            runs[p].append(timed(p, case, settings, args.chunk_mb))
    events = case.lines
    wall = {p: statistics.median(w for w, _ in runs[p]) for p in paths}
    figures = {}
    for p in paths:
        figures[p] = {
            "seconds": wall[p],
            "events_per_s": events / wall[p],
            "ratio_to_reference": wall["reference"] / wall[p],
            "cpu_seconds": statistics.median(c for _, c in runs[p]),
            "all_seconds": [w for w, _ in runs[p]],
        }
        if not args.no_rss:
            figures[p]["rss"] = peak_rss(p, case, args.chunk_mb, args.threads)
    current_outcome = outcomes["current"]
    return {
        "case": case.name,
        "customers": case.customers,
        "lines": events,
        "injected": case.injected,
        "late_events_current": getattr(current_outcome, "late", 0),
        "density": density(current_outcome, settings.buckets.width_s),
        "figures": figures,
        "checks": checks,
        # where an engine's time goes, s per stage, from its first (untimed) run
        "stages": {p: outcomes[p].stages for p in paths[2:]},
    }


def report(result: dict[str, Any]) -> None:
    d = result["density"]
    print(
        f"\n{result['case']}: {result['lines']:,} lines, {result['customers']:,} customers, "
        f"{d['keys']:,} keys, median {d['median_events_per_key_minute']:.2f} events per key"
        f" per minute, {d['share_of_keys_under_1_per_minute']:.0%} of keys under 1/min"
    )
    for path, f in result["figures"].items():
        rss = f.get("rss")
        memory = (f", peak RSS {rss['peak_mib']:,.0f} MiB ({rss['above_imports_mib']:+,.0f} "
                  "above imports)") if rss else ""  # fmt: skip
        print(f"  {path:<10} {f['events_per_s']:>10,.0f} events/s"
              f"  ratio {f['ratio_to_reference']:.2f}  (median {f['seconds']:.2f} s,"
              f" CPU {f['cpu_seconds']:.2f} s){memory}")  # fmt: skip
    for path, c in result["checks"].items():
        verdict = "agrees with current" if c["agree"] else "DIFFERS from current"
        print(f"  {path}: {verdict}: {c['rows']:,} rows, {c['rejected']} rejected lines, "
              f"duplicates {c['duplicates'][1]} (current {c['duplicates'][0]}), "
              f"{c['suspects']} suspect lines judged one by one")  # fmt: skip
        if not c["agree"]:
            print(f"    {json.dumps({k: v for k, v in c.items() if k != 'reasons'})}")
    for path, stages in result["stages"].items():
        total = sum(stages.values()) or 1.0
        shares = ", ".join(f"{k} {v:.2f} s ({v / total:.0%})" for k, v in stages.items())
        print(f"  {path} stages: {shares}")
    print(f"  rejected by reason: {dict(next(iter(result['checks'].values()))['reasons'])}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300_000, help="usage lines per case")
    parser.add_argument("--dense-customers", type=int, default=20)
    parser.add_argument("--sparse-customers", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs (median reported)")
    parser.add_argument("--chunk-mb", type=float, default=8.0, help="decompressed MiB a batch")
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--cases", default="dense,sparse")
    parser.add_argument("--no-rss", action="store_true", help="skip the peak RSS runs")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="threads for polars and pyarrow (0: their default, all cores)",
    )
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "columnar.json"))
    parser.add_argument("--rss-of", choices=PATHS, help=argparse.SUPPRESS)
    parser.add_argument("--usage", help=argparse.SUPPRESS)
    parser.add_argument("--errors", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        limit_threads(args.threads)
    if args.rss_of:
        return rss_child(args)
    paths = ["reference", "current", *args.engines.split(",")]
    settings = Settings()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        cases = {"dense": args.dense_customers, "sparse": args.sparse_customers}
        for name in args.cases.split(","):
            customers = cases[name]
            case = make_case(Path(tmp), name, customers, args.events, args.seed)
            results.append(measure(case, settings, paths, args))
            report(results[-1])
    agree = all(c["agree"] for r in results for c in r["checks"].values())
    print(f"\nengines agree with current: {'yes' if agree else 'NO'}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "python": platform.python_version(), "machine": platform.machine(),
        "versions": _versions(), "events": args.events, "repeat": args.repeat,
        "chunk_mb": args.chunk_mb, "threads": args.threads, "agree": agree, "cases": results,
    }, indent=2) + "\n")  # fmt: skip
    print(f"wrote {out}")
    return 0 if agree else 1


def limit_threads(n: int) -> None:
    """Run polars and pyarrow on ``n`` threads (before polars is imported)."""
    import os

    os.environ["POLARS_MAX_THREADS"] = str(n)
    import pyarrow

    pyarrow.set_cpu_count(n)
    pyarrow.set_io_thread_count(n)


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    return {name: version(name) for name in ("polars", "pyarrow", "orjson", "msgspec", "pydantic")}


if __name__ == "__main__":
    raise SystemExit(main())
