"""The detection benchmark's scorers on hand-made cases with exact expected numbers."""

from __future__ import annotations

import math

import pytest

from bench.detection import nab
from bench.detection.scoring import score_run, summarize
from bench.detection.traffic import Firing

T0 = 1_793_577_600.0  # 2026-11-02T00:00:00Z


def stamp(offset_s: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(T0 + offset_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def incident(id_: str, customer: str, endpoint: str, start: float, end: float, usd_h: float):
    return {
        "id": id_,
        "kind": "runaway_loop",
        "group": "spike",
        "size": 5.0,
        "labels": {"customer_id": customer, "endpoint": endpoint},
        "start": stamp(start),
        "end": stamp(end),
        "excess_usd_per_hour": usd_h,
        "secondary": [],
    }


TRUTH = {
    "start": stamp(0),
    "end": stamp(3 * 86_400),  # 3 days: 2 days after the warm-up day
    "incidents": [
        incident("found", "a", "x", 90_000, 92_400, 1.0),  # $730/month
        incident("missed", "b", "y", 100_000, 102_400, 0.1),  # $73/month
    ],
    "bursts": [
        {
            "id": "burst-1",
            "labels": {"customer_id": "c", "endpoint": "z"},
            "start": stamp(110_000),
            "end": stamp(111_800),
            "multiplier": 3.0,
            "excess_usd_per_hour": 0.5,
        }
    ],
}
FIRINGS = [
    # Customer-level, about a's endpoint incident: came out 270 s after its onset.
    Firing("spend_spike", {"customer_id": "a"}, "warning", T0 + 90_060, T0 + 90_270),
    # Inside c's burst (real traffic): neutral.
    Firing(
        "spend_spike", {"customer_id": "c", "endpoint": "z"}, "warning", T0 + 110_100, T0 + 110_300
    ),
    # About nothing labelled: false.
    Firing(
        "retry_storm", {"customer_id": "d", "endpoint": "w"}, "warning", T0 + 150_000, T0 + 150_240
    ),
]


def test_scorer_counts_one_hit_one_false_one_neutral_and_one_miss_exactly():
    run = score_run("incidents-1", False, TRUTH, FIRINGS, keys=10)
    assert run.verdicts == ["match", "neutral", "false"]
    assert run.key_days == 20.0
    out = summarize([run], floor_usd_per_hour=3.0)
    assert out["precision"]["precision"] == 0.5  # 1 right of 2 judged; the neutral is left out
    assert out["precision"]["neutral"] == 1
    assert out["recall"]["all"] == {"n": 2, "detected": 1, "recall": 0.5}
    assert out["recall"]["worth_100_usd_per_month"] == {"n": 1, "detected": 1, "recall": 1.0}
    assert out["recall"]["by_band"]["under_100_usd_per_month"]["recall"] == 0.0
    assert out["delay"]["by_group"]["spike"] == {"n": 1, "median_s": 270.0, "p95_s": 270.0}
    assert out["incident_runs"]["episodes_per_key_day"] == 3 / 20
    assert out["by_alertname"]["spend_spike"]["first_detections"] == 1


def test_clean_traffic_counts_false_alerts_per_thousand_key_days():
    clean = score_run("clean-1", True, {**TRUTH, "incidents": []}, FIRINGS, keys=50)
    out = summarize([clean], floor_usd_per_hour=3.0)["clean"]
    assert (out["key_days"], out["alerts"], out["neutral"], out["false"]) == (100.0, 3, 1, 2)
    assert out["false_per_1000_key_days"] == 20.0  # a's alert is false too: no incident here


def test_alerts_are_matched_by_labels_not_by_alertname():
    renamed = [Firing("cost_shift", f.key, f.severity, f.starts_at, f.emitted_at) for f in FIRINGS]
    run = score_run("incidents-1", False, TRUTH, renamed, keys=10)
    assert run.verdicts == ["match", "neutral", "false"]
    assert run.outcomes[0].detected_by == "cost_shift"


def test_an_alert_after_the_tolerance_before_the_onset_or_on_another_endpoint_does_not_match():
    late = Firing("spend_spike", {"customer_id": "a"}, "warning", T0 + 92_400 + 901, T0 + 93_400)
    early = Firing("spend_spike", {"customer_id": "a"}, "warning", T0 + 80_000, T0 + 89_900)
    other = Firing("spend_spike", {"customer_id": "a", "endpoint": "q"}, "warning", T0 + 90_060, 0)
    run = score_run("incidents-1", False, TRUTH, [early, late, other], keys=10)
    assert run.verdicts == ["false", "false", "false"]


def test_a_change_point_before_the_onset_matches_when_the_alert_comes_out_during_it():
    # A detector may date its alert from the start of the window it judged (here 3 min
    # before the onset); it came out an hour after the onset: about the incident.
    shift = Firing(
        "cost_shift", {"customer_id": "a", "endpoint": "x"}, "warning", T0 + 89_820, T0 + 93_600
    )
    run = score_run("incidents-1", False, TRUTH, [shift], keys=10)
    assert run.verdicts == ["match"]
    assert run.outcomes[0].delay_s == 3_600.0


def test_nab_counts_the_first_detection_in_a_window_and_charges_the_rest_after_probation():
    # Span [0, 1000]: probation to 150. Window [400, 500] found at 420 (450 is a second
    # detection in it: nothing); 700 is a false positive 2 window-lengths past it; 100 is
    # in probation; window [800, 900] is missed.
    s = nab.score([100.0, 420.0, 450.0, 700.0], [(400.0, 500.0), (800.0, 900.0)], 0.0, 1000.0)
    assert s.tp == pytest.approx(2 / (1 + math.exp(-4)) - 1)  # sigma(-0.8)
    assert s.tp == pytest.approx(0.9640275800758169)
    assert s.fp == pytest.approx(0.11 * (2 / (1 + math.exp(10)) - 1))  # 0.11 sigma(2)
    assert s.fp == pytest.approx(-0.10999001246888546)
    assert s.fn == -1.0
    assert (s.windows, s.detected, s.false_positives) == (2, 1, 1)
    assert s.perfect == pytest.approx(1.973228596302861)  # 2 sigma(-1)
    assert s.normalized == pytest.approx(0.466632493617945)  # (raw + 2) / (perfect + 2)


def test_nab_charges_a_detection_before_the_first_window_in_full():
    s = nab.score([300.0], [(400.0, 500.0)], 0.0, 1000.0)
    assert (s.tp, s.fp, s.fn) == (0.0, -0.11, -1.0)
    assert s.normalized == pytest.approx(-0.11 / (1 + nab.sigma(-1.0)))


def test_windowed_gaussian_detects_once_per_run_of_outliers():
    values = [10.0, 11.0] * 50 + [40.0, 41.0, 42.0]
    assert nab.windowed_gaussian(values, window=100, threshold=4.0) == [100]
