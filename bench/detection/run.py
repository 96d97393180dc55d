"""The command: run the traffic and series parts, score, print, write the JSON."""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.detection import report, scoring
from bench.detection.series import score_series
from bench.detection.traffic import SOURCES, RunResult, RunSpec, run_traffic
from stream.offline.simulate.catalog import KINDS
from stream.settings import DEFAULT_CONFIG, load_settings

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results" / "detection.json"
CLEAN_ENDS_ON_DAY = 8  # clean runs end on the Monday after START's week: weekend, Monday


@dataclass(frozen=True)
class Mode:
    seeds: int
    incident_days: float
    clean_days: float
    customers: int
    rate_per_min: float
    bursts_per_day: float
    sparse_share: float
    series_per_cell: int
    largest_size_only: bool = False  # each kind at its largest size only (quick)


MODES = {
    "full": Mode(8, 3.0, 3.0, 80, 240.0, 4.0, 0.2, 3),
    "quick": Mode(1, 2.0, 1.5, 40, 60.0, 4.0, 0.2, 1, largest_size_only=True),
}


def run_specs(mode: Mode) -> list[RunSpec]:
    """An incident run (Monday on, every kind at every size) and a clean run (a weekend
    and a Monday, bursts only) per seed; the clean world is another seed's."""
    sizes = (
        tuple((kind, (max(spec.sizes),)) for kind, spec in KINDS.items())
        if mode.largest_size_only
        else ()
    )
    specs = []
    for seed in range(1, mode.seeds + 1):
        world = RunSpec(
            f"incidents-{seed}",
            seed,
            mode.incident_days,
            mode.customers,
            mode.rate_per_min,
            bursts=mode.bursts_per_day,
            sparse_share=mode.sparse_share,
        )
        specs.append(replace(world, incident_kinds=tuple(KINDS), incident_sizes=sizes))
        specs.append(
            replace(
                world,
                name=f"clean-{seed}",
                seed=100 + seed,
                days=mode.clean_days,
                start_day=CLEAN_ENDS_ON_DAY - mode.clean_days,
            )
        )
    return specs


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.detection", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one seed, short runs (< 1 min)")
    parser.add_argument("--seeds", type=int, help="seeds (default: 8 full, 1 quick)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="spendwatch config")
    parser.add_argument(
        "--sources", default="pipeline", help=f"alert sources, comma-separated: {sorted(SOURCES)}"
    )
    parser.add_argument(
        "--alertnames", help="score only these alertnames, comma-separated (default: all)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="the JSON results")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    mode_name = "quick" if args.quick else "full"
    mode = MODES[mode_name]
    if args.seeds:
        mode = Mode(**{**asdict(mode), "seeds": args.seeds})
    sources = tuple(s for s in args.sources.split(",") if s)
    unknown = [s for s in sources if s not in SOURCES]
    if unknown:
        print(f"--sources: unknown {unknown}; valid: {sorted(SOURCES)}", file=sys.stderr)
        return 2
    alertnames = args.alertnames.split(",") if args.alertnames else None
    settings = load_settings(args.config)
    floor = settings.detectors.spend_spike.min_excess_usd_per_hour
    started, cpu = time.perf_counter(), time.process_time()
    specs = run_specs(mode)
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        series_job = pool.submit(score_series, mode.series_per_cell, settings)
        runs: list[RunResult] = list(
            pool.map(run_traffic, specs, [args.config] * len(specs), [sources] * len(specs))
        )
        series = series_job.result()
    scored = [
        scoring.score_run(
            r.spec.name, r.spec.clean, r.truth, r.firings, sum(r.keys.values()), alertnames
        )
        for r in runs
    ]
    traffic = scoring.summarize(scored, floor)
    result: dict[str, Any] = {
        "benchmark": "detection",
        "mode": mode_name,
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "jobs": args.jobs,
        "settings": {
            "config": str(args.config),
            "sources": list(sources),
            "alertnames": alertnames,
            "mode": asdict(mode),
            "spike_floor_usd_per_hour": floor,
            "match_tolerance_s": {"before_start": scoring.BEFORE_S, "after_end": scoring.AFTER_S},
            "key_days": "keys judged (customers, customer/endpoint, provider/model) x days"
            " after the first (warm-up) day; alerts of the whole run",
        },
        "runs": [
            {
                "name": r.spec.name,
                "seed": r.spec.seed,
                "days": r.spec.days,
                "events": r.events,
                "seconds": round(r.seconds, 1),
                "cpu_seconds": round(r.cpu_seconds, 1),
                "keys": r.keys,
                "firings": len(r.firings),
                "incidents": len(r.truth.get("incidents", ())),
                "bursts": len(r.truth.get("bursts", ())),
            }
            for r in runs
        ],
        "traffic": traffic,
        "series": series,
    }
    result["targets"] = report.targets(traffic, series)
    result["runtime_s"] = round(time.perf_counter() - started, 1)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    result["cpu_s"] = round(time.process_time() - cpu + children.ru_utime + children.ru_stime, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    report.print_report(result, sys.stdout)
    print(
        f"\n{mode_name} run in {result['runtime_s']:.0f} s ({result['cpu_s']:.0f} CPU s,"
        f" {args.jobs} processes); wrote {args.out}"
    )
    return 0
