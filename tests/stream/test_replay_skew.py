"""File replay with one line stamped in 2099: refused on reading, it skews nothing.

Issue 11, defect 4: the line used to wait in the usage/errors merge until the whole errors
file had gone by, so every usage event after it arrived behind stream time ("late").
"""

from __future__ import annotations

import gzip
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from stream.core.customers import load_customers
from stream.core.ingest import DeadLetter
from stream.core.pipeline import Pipeline
from stream.core.pricing import PriceTable
from stream.offline.replay import ReplayReport, replay_files
from stream.offline.simulate import SimConfig, simulate
from stream.settings import CONFIG_DIR, Settings, load_settings

FUTURE_TS = "2099-01-01T00:00:00Z"


@dataclass
class Replayed:
    report: ReplayReport
    pipeline: Pipeline
    dead: list[DeadLetter]


def replay(folder: Path, usage: Path) -> Replayed:
    dead: list[DeadLetter] = []
    pipeline = Pipeline(
        load_settings(CONFIG_DIR / "spendwatch.yaml"),
        PriceTable.load(CONFIG_DIR / "prices.yaml"),
        load_customers(folder / "customers.jsonl"),
        on_dead_letter=dead.append,
    )
    report = replay_files(pipeline, [usage], [folder / "errors.jsonl.gz"], progress=False)
    return Replayed(report, pipeline, dead)


def with_a_line_from_2099(usage: Path, out: Path) -> None:
    """``usage`` with one more line, stamped in 2099, halfway through the file."""
    with gzip.open(usage, "rb") as handle:
        lines = handle.read().splitlines(keepends=True)
    future = {**orjson.loads(lines[len(lines) // 2]), "event_id": "ev_from_2099", "ts": FUTURE_TS}
    lines.insert(len(lines) // 2, orjson.dumps(future) + b"\n")
    with gzip.open(out, "wb") as handle:
        handle.write(b"".join(lines))


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("skew")
    simulate(out, SimConfig(days=1.25, customers=8, rate_per_min=60, seed=7, incidents=True))
    with_a_line_from_2099(out / "usage.jsonl.gz", out / "usage-2099.jsonl.gz")
    return out


@pytest.fixture(scope="module")
def clean(folder) -> Replayed:
    return replay(folder, folder / "usage.jsonl.gz")


@pytest.fixture(scope="module")
def skewed(folder) -> Replayed:
    return replay(folder, folder / "usage-2099.jsonl.gz")


def transitions(replayed: Replayed) -> list[tuple[str, str, float]]:
    return [(a.fingerprint, a.status, a.starts_at) for a in replayed.report.alerts]


def test_a_line_from_2099_changes_no_alert(clean, skewed):
    assert transitions(clean)  # the simulated incidents do alert
    assert transitions(skewed) == transitions(clean)


def test_a_line_from_2099_makes_no_event_late(clean, skewed):
    late = skewed.pipeline.buckets.stats.late_events
    assert late <= clean.pipeline.buckets.stats.late_events


def test_the_line_from_2099_is_the_one_line_refused_as_ts_in_future(clean, skewed):
    assert clean.report.dead_letters == 0
    assert skewed.report.dead_letters == 1
    assert dict(skewed.pipeline.ingest.stats.rejected) == {"ts_in_future": 1}
    [letter] = skewed.dead
    assert (letter.kind, letter.rejection.reason, letter.rejection.field) == (
        "usage",
        "ts_in_future",
        "ts",
    )
    assert orjson.loads(letter.raw)["event_id"] == "ev_from_2099"


def test_the_replay_summary_counts_the_line_from_2099_as_bad(folder):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "stream.commands.cli",
            "replay",
            str(folder / "usage-2099.jsonl.gz"),
            "--errors",
            str(folder / "errors.jsonl.gz"),
            "--customers",
            str(folder / "customers.jsonl"),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert ", 1 bad, " in result.stderr, result.stderr
    assert "bad lines by reason: ts_in_future: 1\n" in result.stderr


def test_a_far_future_first_line_is_refused_against_the_next_one(tmp_path):
    """The first event of a file has nothing before it: it is judged against the second."""
    good = {
        "ts": "2026-11-02T10:00:00Z",
        "customer_id": "acme",
        "endpoint": "chat",
        "provider": "openai",
        "model": "gpt-4o",
        "input_tokens": 10,
    }
    lines = [{**good, "event_id": "bad", "ts": "2099-01-01T00:00:00Z"}]
    lines += [{**good, "event_id": f"e{i}", "ts": 1793613600 + i} for i in range(5)]
    path = tmp_path / "usage.jsonl"
    path.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    settings = Settings()
    dead = []
    pipeline = Pipeline(
        settings,
        PriceTable.load(settings.resolve(settings.prices_file)),
        on_dead_letter=dead.append,
    )
    report = replay_files(pipeline, [path], progress=False)
    assert report.dead_letters == 1 and dead[0].rejection.reason == "ts_in_future"
    assert b'"bad"' in dead[0].raw
    assert pipeline.ingest.stats.accepted["usage"] == 5
    assert pipeline.buckets.stats.late_events == 0
