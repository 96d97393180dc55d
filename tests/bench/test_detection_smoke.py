"""``python -m bench.detection --quick`` runs end to end and writes every section."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from stream.offline.simulate.catalog import KINDS

ROOT = Path(__file__).resolve().parents[2]
SHARES = {"recall", "precision", "score", "window_recall"}


def shares(node: Any, path: str = "") -> list[tuple[str, Any]]:
    """Every (path, value) whose key names a share: recall, precision, score."""
    found: list[tuple[str, Any]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in SHARES and not isinstance(value, dict):
                found.append((f"{path}.{key}", value))
            found += shares(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += shares(value, f"{path}[{i}]")
    return found


def test_quick_benchmark_writes_every_section_with_scores_between_0_and_1(tmp_path):
    out = tmp_path / "detection.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.detection", "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert "Targets" in done.stdout
    result = json.loads(out.read_text())
    assert {"runs", "settings", "traffic", "series", "targets", "date", "runtime_s"} <= set(result)
    traffic = result["traffic"]
    assert {"recall", "precision", "delay", "clean", "incident_runs", "by_alertname"} <= set(
        traffic
    )
    assert set(traffic["recall"]["by_kind"]) == set(KINDS)
    assert {"all", "worth_100_usd_per_month", "by_band"} <= set(traffic["recall"])
    assert traffic["clean"]["key_days"] > 0
    assert traffic["clean"]["false_per_1000_key_days"] >= 0
    assert {"median_s", "p95_s"} <= set(traffic["delay"]["by_group"]["storm"])
    assert {r["name"].split("-")[0] for r in result["runs"]} == {"incidents", "clean"}
    assert set(result["series"]["detectors"]) == {"spendwatch", "windowed_gaussian"}
    assert "value" in result["series"]["ratio"]
    assert [t["target"] for t in result["targets"]][0].startswith("recall")
    assert len(result["targets"]) == 6 and all(
        isinstance(t["pass"], bool) for t in result["targets"]
    )
    values = shares(result)
    assert len(values) > 50
    bad = [(path, v) for path, v in values if v is not None and not 0 <= v <= 1]
    assert not bad
