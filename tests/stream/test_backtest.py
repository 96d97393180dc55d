"""spendwatch backtest: episodes from alerts, matching two configs' episodes, end to end."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest
import yaml

from detectors.decision import Decision
from stream.commands.cli import main
from stream.core.alerts import build_alert
from stream.offline.backtest import Episode, compare, episodes, format_text, per_day
from stream.offline.simulate import SimConfig, simulate
from stream.settings import CONFIG_DIR, DetectorSettings

RELAXED_CUSTOMER = "cus_0006"  # has a retry loop of its own and is caught in the outage
# Per-key overrides relax a detector for one customer; settings without them relax it for
# every customer instead (the test then expects every per-endpoint retry storm removed).
OVERRIDES = "overrides" in DetectorSettings.model_fields
ONE_CUSTOMER_OFF = [{"match": {"customer_id": RELAXED_CUSTOMER}, "retry_storm": {"enabled": False}}]
_CACHE: dict[str, object] = {}


def simulated_days(factory: pytest.TempPathFactory) -> Path:
    """Two small simulated days with labelled incidents (written once per test session)."""
    if "sim" not in _CACHE:
        out = factory.mktemp("backtest-sim")
        simulate(out, SimConfig(days=2, customers=10, seed=7, incidents=True, rate_per_min=60))
        _CACHE["sim"] = out
    return _CACHE["sim"]  # type: ignore[return-value]


def config_file(folder: Path, name: str, **detectors: object) -> Path:
    """config/spendwatch.yaml with absolute paths and ``detectors`` sections replaced."""
    data = yaml.safe_load((CONFIG_DIR / "spendwatch.yaml").read_text())
    data["prices_file"] = str(CONFIG_DIR / "prices.yaml")
    data["customers_file"] = None
    data["detectors"].update(detectors)
    path = folder / name
    path.write_text(yaml.safe_dump(data))
    return path


def backtest_run(factory: pytest.TempPathFactory) -> tuple[dict, Path, Path, Path]:
    """One backtest of the simulated days, --against a config with retry_storm relaxed,
    with --json and --report: (JSON result, report path, config A, config B)."""
    if "run" not in _CACHE:
        sim = simulated_days(factory)
        folder = factory.mktemp("backtest-run")
        base = config_file(folder, "base.yaml")
        if OVERRIDES:
            relaxed = config_file(folder, "relaxed.yaml", overrides=ONE_CUSTOMER_OFF)
        else:
            retry = {
                **yaml.safe_load((CONFIG_DIR / "spendwatch.yaml").read_text())["detectors"][
                    "retry_storm"
                ],
                "enabled": False,
            }
            relaxed = config_file(folder, "relaxed.yaml", retry_storm=retry)
        report = folder / "report.html"
        _CACHE["run"] = (run_cli(sim, base, relaxed, report), report, base, relaxed)
    return _CACHE["run"]  # type: ignore[return-value]


def run_cli(sim: Path, base: Path, against: Path, report: Path | None = None) -> dict:
    """``spendwatch backtest ... --json`` in this process; its stdout parsed."""
    argv = [
        "backtest",
        str(sim / "usage.jsonl.gz"),
        "--errors",
        str(sim / "errors.jsonl.gz"),
        "--customers",
        str(sim / "customers.jsonl"),
        "--config",
        str(base),
        "--against",
        str(against),
        "--json",
    ]
    if report is not None:
        argv += ["--report", str(report)]
    buffer = io.BytesIO()
    wrapper = io.TextIOWrapper(buffer, encoding="utf-8")
    saved, sys.stdout = sys.stdout, wrapper
    try:
        assert main(argv) == 0
    finally:
        sys.stdout = saved
    wrapper.flush()
    wrapper.detach()
    return json.loads(buffer.getvalue())


def ep(name: str, customer: str, severity: str, start: float, end: float | None) -> Episode:
    return Episode(name, (("customer_id", customer),), severity, start, end)


def decision(status: str, severity: str, start: float, end: float | None = None) -> Decision:
    return Decision("spend_spike", status, severity, start, end, {"observed": 1.0})


def test_episodes_pair_firing_with_resolved_and_keep_open_ones_open():
    key = {"customer_id": "acme"}
    alerts = [
        build_alert(key, decision("firing", "warning", 0.0)),
        build_alert(key, decision("firing", "critical", 600.0)),
        build_alert(key, decision("resolved", "warning", 0.0, 300.0)),
    ]
    assert episodes(alerts) == [
        ep("spend_spike", "acme", "warning", 0.0, 300.0),
        ep("spend_spike", "acme", "critical", 600.0, None),
    ]


@pytest.mark.parametrize(
    ("first", "second", "removed", "added", "changed"),
    [
        # same episode, same severity: no difference
        (
            [ep("spend_spike", "a", "warning", 0, 60)],
            [ep("spend_spike", "a", "warning", 30, 90)],
            0,
            0,
            0,
        ),
        # no overlap in time: one removed, one added
        (
            [ep("spend_spike", "a", "warning", 0, 60)],
            [ep("spend_spike", "a", "warning", 120, 180)],
            1,
            1,
            0,
        ),
        # another key or another detector never matches
        (
            [ep("spend_spike", "a", "warning", 0, 60)],
            [ep("spend_spike", "b", "warning", 0, 60)],
            1,
            1,
            0,
        ),
        (
            [ep("spend_spike", "a", "warning", 0, 60)],
            [ep("retry_storm", "a", "warning", 0, 60)],
            1,
            1,
            0,
        ),
        # an open episode overlaps everything after its start
        (
            [ep("spend_spike", "a", "critical", 0, None)],
            [ep("spend_spike", "a", "warning", 999, 1e6)],
            0,
            0,
            1,
        ),
        # one episode split in two under the second config: both match it
        (
            [ep("spend_spike", "a", "warning", 0, 600)],
            [ep("spend_spike", "a", "warning", 0, 60), ep("spend_spike", "a", "warning", 300, 400)],
            0,
            0,
            0,
        ),
    ],
)
def test_compare_matches_episodes_by_detector_key_and_overlapping_time(
    first, second, removed, added, changed
):
    diff = compare(first, second)
    assert (len(diff.removed), len(diff.added), len(diff.changed)) == (removed, added, changed)


def test_compare_with_itself_is_empty_and_text_lists_days():
    found = [
        ep("spend_spike", "a", "warning", 0, 60),
        ep("retry_storm", "b", "critical", 86_400, None),
    ]
    assert compare(found, found).empty
    assert per_day(found) == {("1970-01-01", "spend_spike"): 1, ("1970-01-02", "retry_storm"): 1}
    from stream.offline.backtest import Run

    text = format_text([Run("a.yaml", found, 90_000.0)])
    assert "1970-01-02  retry_storm  1" in text
    assert "cus=b  retry_storm  critical  1970-01-02 00:00  (open)            1h00m" in text


def test_backtest_against_retry_storm_off_for_one_customer_removes_exactly_its_storms(
    tmp_path_factory,
):
    result, _, _, _ = backtest_run(tmp_path_factory)
    first, second = (run["episodes"] for run in result["runs"])
    retry_per_endpoint = [
        e
        for e in first
        if e["alertname"] == "retry_storm"
        and "customer_id" in e["labels"]
        and (e["labels"]["customer_id"] == RELAXED_CUSTOMER or not OVERRIDES)
    ]
    assert retry_per_endpoint, "the customer should have retry storms to remove"
    others = [e for e in first if e["labels"].get("customer_id") != RELAXED_CUSTOMER]
    assert any(e["alertname"] == "retry_storm" for e in others)
    diff = result["diff"]
    strip = lambda e: {k: v for k, v in e.items() if k != "duration_s"}  # noqa: E731
    assert sorted(map(json.dumps, diff["removed"])) == sorted(
        json.dumps(strip(e)) for e in retry_per_endpoint
    )
    assert diff["added"] == [] and diff["changed"] == []
    assert [strip(e) for e in first if e not in retry_per_endpoint] == [strip(e) for e in second]
    per_day_first = {
        (d["day"], d["alertname"]): d["alerts"] for d in result["runs"][0]["alerts_per_day"]
    }
    assert sum(per_day_first.values()) == len(first)


def test_an_escalation_is_not_one_episode_overlapping_the_next():
    """A warning that ends where its critical successor starts does not overlap it; a
    zero-length episode at another's start, or inside it, does."""
    from stream.offline.backtest import Episode

    key = (("customer_id", "acme"),)
    warning = Episode("margin_breach", key, "warning", 0.0, 3600.0)
    critical = Episode("margin_breach", key, "critical", 3600.0, None)
    assert not warning.overlaps(critical) and not critical.overlaps(warning)
    assert Episode("x", key, "warning", 3600.0, 3600.0).overlaps(critical)
    assert Episode("x", key, "warning", 60.0, 60.0).overlaps(warning)
