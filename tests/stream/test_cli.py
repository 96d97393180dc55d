"""The spendwatch command as a user runs it: a real subprocess, real files."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import orjson
import pytest

from stream.offline.simulate import SimConfig, simulate
from tests.contracts import schema

T0 = 1793577600  # 2026-11-02T00:00:00Z


def spendwatch(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stream.commands.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )


@pytest.fixture(scope="module")
def incidents(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli")
    simulate(out, SimConfig(days=2, customers=20, seed=7, incidents=True))
    return out


def replay_recorded(folder: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """``spendwatch replay`` over the simulated files in ``folder``."""
    return spendwatch(
        "replay",
        str(folder / "usage.jsonl.gz"),
        "--errors",
        str(folder / "errors.jsonl.gz"),
        "--customers",
        str(folder / "customers.jsonl"),
        *extra,
    )


def test_replay_json_prints_only_contract_alert_objects(incidents):
    result = replay_recorded(incidents, "--json")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines
    item = schema("alert-webhook")["properties"]["alerts"]["items"]
    alerts = [json.loads(line) for line in lines]
    for alert in alerts:
        jsonschema.validate(alert, item)
    names = {a["labels"]["alertname"] for a in alerts}
    # cost_shift: the model_switch incident's endpoint and its customer (a true alert).
    assert names == {"spend_spike", "cost_shift", "retry_storm", "margin_breach"}
    shifted = {
        (a["labels"]["customer_id"], a["labels"].get("endpoint"))
        for a in alerts
        if a["labels"]["alertname"] == "cost_shift"
    }
    truth = json.loads((incidents / "truth.json").read_text())
    [switch] = [i["labels"] for i in truth["incidents"] if i["kind"] == "model_switch"]
    assert shifted == {(switch["customer_id"], switch["endpoint"]), (switch["customer_id"], None)}
    assert "replayed" in result.stderr  # the summary goes to stderr, not stdout


def test_replay_prints_a_readable_table_by_default(incidents):
    result = replay_recorded(incidents)
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split()[:3] == ["STATUS", "SEVERITY", "ALERT"]
    assert any(r.startswith("firing") and "spend_spike" in r for r in rows)


def test_bad_lines_are_counted_and_reported_never_fatal(tmp_path):
    good = {
        "event_id": "e1",
        "ts": T0,
        "customer_id": "acme",
        "endpoint": "chat",
        "provider": "openai",
        "model": "gpt-4o",
    }
    lines = [
        orjson.dumps(good),
        b"{broken",
        orjson.dumps({**good, "event_id": "e2", "input_tokens": -3}),
        b"\xff\xfe",
        orjson.dumps({**good, "event_id": "e3", "ts": T0 + 5}),
    ]
    usage = tmp_path / "usage.jsonl.gz"
    with gzip.open(usage, "wb") as handle:
        handle.write(b"\n".join(lines) + b"\n")
    result = spendwatch("replay", str(usage), "--json")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert "3 bad" in result.stderr
    assert "json_invalid: 1" in result.stderr and "invalid_utf8: 1" in result.stderr
    assert "greater_than_equal at input_tokens" in result.stderr


def test_series_replay_finds_a_spike_in_a_plain_csv_export(tmp_path):
    rows = ["timestamp,cost_usd"]
    for i in range(3 * 288):  # three days of 5-minute intervals
        value = 40.0 if 2 * 288 + 100 <= i < 2 * 288 + 112 else 10.0 + (i % 7) * 0.3
        rows.append(f"2026-11-02T00:00:00Z,{value}" if i == 0 else f"{T0 + i * 300},{value}")
    csv = tmp_path / "cost.csv"
    csv.write_text("\n".join(rows) + "\n")
    result = spendwatch("replay", "--series", str(csv), "--key", "billing-export", "--json")
    assert result.returncode == 0, result.stderr
    alerts = [json.loads(line) for line in result.stdout.splitlines()]
    assert [a["status"] for a in alerts] == ["firing", "resolved"]
    assert alerts[0]["labels"]["customer_id"] == "billing-export"
    assert alerts[0]["startsAt"] == "2026-11-04T08:20:00Z"  # interval 2*288+100, inferred 300 s


def test_a_bad_config_file_is_refused_with_file_line_and_field(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("buckets:\n  allowed_lateness_s: -5\n")
    result = spendwatch("config", "check", str(config))
    assert result.returncode == 2
    assert f"{config}:2: buckets.allowed_lateness_s" in result.stderr


def test_the_shipped_config_checks_clean():
    result = spendwatch("config", "check")
    assert result.returncode == 0, result.stderr


def test_simulate_writes_the_contract_files(tmp_path):
    result = spendwatch(
        "simulate", str(tmp_path), "--days", "0.1", "--customers", "3", "--seed", "2"
    )
    assert result.returncode == 0, result.stderr
    assert {p.name for p in tmp_path.iterdir()} >= {
        "usage.jsonl.gz",
        "errors.jsonl.gz",
        "customers.jsonl",
    }
