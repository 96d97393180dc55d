"""bench/replay.py runs end to end on tiny traffic and reports each figure with its
reference from the same run (the figures themselves are the bench's, not the test's)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_replay_bench_prints_ratios_to_the_bare_loop_and_the_sweep(tmp_path: Path) -> None:
    out = tmp_path / "replay.json"
    args = ["--days", "1.07", "--customers", "8", "--rate", "80", "--repeat", "1"]
    args += ["--sweep", "20,400", "--sweep-events", "3000", "--keys", "300", "--out", str(out)]
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "replay.py"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    result = json.loads(out.read_text())
    speed = result["throughput"]
    assert 0 < speed["ratio"] < 2 and speed["bare_events_per_s"] > speed["events_per_s"] / 2
    assert speed["keys"] > 8 and 0 <= speed["sparse_key_share"] <= 1
    rows = result["sweep"]
    assert [r["customers"] for r in rows] == [20, 400]
    assert all(0 < r["ratio"] < 2 and r["events"] > 2000 for r in rows)
    assert rows[1]["keys"] > rows[0]["keys"]  # more customers, more keys, same events
    for r in rows:  # every detector ran, within the replay's own CPU time
        parts = [
            r[f"{d}_cpu_s"] for d in ("spend_spike", "cost_shift", "retry_storm", "margin_breach")
        ]
        assert all(p > 0 for p in parts) and sum(parts) < r["cpu_s"]
    two, one = result["memory"]
    assert [two["endpoints_per_customer"], one["endpoints_per_customer"]] == [2, 1]
    # The arrays are part of the heap held; with one endpoint a key alone carries its
    # customer's arrays, with two it shares them.
    for m in (two, one):
        assert 0 < m["array_bytes_per_key"] < m["bytes_per_key"] and m["number_fields_per_key"] > 0
    assert one["array_bytes_per_key"] > two["array_bytes_per_key"]
    assert "of the bare loop" in done.stdout and "slower per CPU second" in done.stdout
