"""Overrides and planned windows: which parameters a key gets, and what a window mutes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from stream.core.alerts import build_alert
from stream.core.buckets import COST, REQUESTS
from stream.core.detect import CustomerDetection
from stream.settings import load_settings, settings_from_dict
from stream.settings.effective import Resolver
from stream.settings.yamlsource import ConfigFileError

T0 = datetime(2026, 11, 2, tzinfo=UTC).timestamp()
QUICK = {"warmup_s": 3600, "seasonal": False, "min_excess_usd_per_hour": 1.0}


def resolver(overrides=(), windows=(), spend_spike=None):
    det = {"overrides": list(overrides), "windows": list(windows)}
    if spend_spike:
        det["spend_spike"] = spend_spike
    return Resolver(settings_from_dict({"detectors": det}).detectors)


def test_each_parameter_comes_from_the_first_matching_override_that_sets_it():
    r = resolver(
        [
            {"match": {"customer_id": "acme", "endpoint": "batch"}, "spend_spike": {"min_z": 8}},
            {"match": {"customer_id": "acme-*"}, "spend_spike": {"min_z": 1}},
            {"match": {"customer_id": "acme"}, "spend_spike": {"min_z": 2, "consecutive": 9}},
        ]
    )
    batch = r.effective("spend_spike", T0, "acme", "batch")
    assert (batch.params.min_z, batch.params.consecutive) == (8, 9)
    assert batch.sources == {
        "min_z": "overrides[0] (customer_id=acme, endpoint=batch)",
        "consecutive": "overrides[2] (customer_id=acme)",
    }
    whole = r.effective("spend_spike", T0, "acme")  # the customer key has no endpoint
    assert whole.params.min_z == 2
    assert r.effective("spend_spike", T0, "acme-eu").params.min_z == 1
    assert r.effective("spend_spike", T0, "globex").threshold_source == "default"


@pytest.mark.parametrize(
    ("pattern", "value", "matches"),
    [
        ("acme", "acme", True),
        ("acme", "acme-eu", False),
        ("acme-*", "acme-eu", True),
        ("/acme-(eu|us)/", "acme-us", True),
        ("/acme-(eu|us)/", "acme-usa", False),  # anchored at both ends
        ("/^acme-(eu|us)$/", "acme-eu", True),
    ],
)
def test_match_values_are_exact_glob_or_slashed_regex(pattern, value, matches):
    r = resolver([{"match": {"customer_id": pattern}, "retry_storm": {"error_rate": 0.5}}])
    assert (r.effective("retry_storm", T0, value, "chat").params.error_rate == 0.5) is matches


def test_plan_overrides_use_the_customer_plan():
    r = resolver([{"match": {"plan": "free"}, "spend_spike": {"absolute_usd_per_hour": 0.21}}])
    assert (
        r.effective("spend_spike", T0, "initech", plan="free").params.absolute_usd_per_hour == 0.21
    )
    assert r.effective("spend_spike", T0, "acme", plan="pro").params.absolute_usd_per_hour == 1000


def test_a_bad_regex_is_a_config_error_naming_file_line_and_field(tmp_path):
    path = tmp_path / "spendwatch.yaml"
    path.write_text(
        "detectors:\n  overrides:\n    - match: {customer_id: acme}\n"
        "      spend_spike: {min_z: 3}\n    - match:\n        endpoint: '/batch(/'\n"
    )
    with pytest.raises(ConfigFileError) as info:
        load_settings(path)
    assert f"{path}:6: detectors.overrides.1.match.endpoint:" in str(info.value)
    assert "regular expression" in str(info.value)


def test_an_override_of_an_unknown_parameter_is_refused(tmp_path):
    path = tmp_path / "spendwatch.yaml"
    path.write_text(
        "detectors:\n  overrides:\n    - match: {plan: free}\n      spend_spike: {min_zz: 3}\n"
    )
    with pytest.raises(ConfigFileError, match=r":4: detectors\.overrides\.0\.spend_spike\.min_zz"):
        load_settings(path)


def test_a_cron_window_follows_local_time_across_dst():
    w = {
        "cron": "0 2 * * *",
        "duration": "2h",
        "timezone": "Europe/Berlin",
        "mute": ["spend_spike"],
    }
    r = resolver(windows=[w])
    for day, utc_hour_open in [("2026-03-28", 1), ("2026-03-30", 0), ("2026-10-26", 1)]:
        opens = datetime.fromisoformat(f"{day}T{utc_hour_open:02d}:00:00+00:00").timestamp()
        assert r.open_windows(opens - 60) == ()
        assert r.open_windows(opens) == (0,)
        assert r.open_windows(opens + 7200 - 60) == (0,)
        assert r.open_windows(opens + 7200) == ()


def test_a_window_needs_a_schedule_and_something_to_do():
    with pytest.raises(ValueError, match="cron and duration, or start and end"):
        resolver(windows=[{"cron": "0 2 * * *", "mute": ["spend_spike"]}])
    with pytest.raises(ValueError, match="must mute a detector"):
        resolver(windows=[{"cron": "0 2 * * *", "duration": "1h"}])


def run_spike(windows=(), overrides=(), minutes=130):
    settings = settings_from_dict(
        {
            "detectors": {
                "spend_spike": QUICK,
                "overrides": list(overrides),
                "windows": list(windows),
            }
        }
    )
    detection = CustomerDetection(settings, lambda c: None)
    alerts = []
    for minute in range(minutes):
        spend = 0.10 + 0.01 * (minute % 3) if minute < 100 else 1.0
        row = [0.0] * 8
        row[COST], row[REQUESTS] = spend, 10
        index = int(T0 // 60) + minute
        keyed, _ = detection.close(index, {("acme", "chat", "openai", "gpt-4o"): row})
        alerts += [
            build_alert(k.key, k.decision) for k in keyed if k.decision.alertname == "spend_spike"
        ]
    return alerts


def at(minute: int) -> str:
    return datetime.fromtimestamp(T0 + minute * 60, UTC).isoformat().replace("+00:00", "Z")


def test_a_mute_window_starts_no_alert_but_a_spike_outlasting_it_fires_after_it():
    plain = run_spike()
    assert {a.starts_at for a in plain if a.status == "firing"} == {T0 + 100 * 60}
    window = {"start": at(95), "end": at(110), "timezone": "UTC", "mute": ["spend_spike"]}
    muted = run_spike(windows=[window])
    firing = [a for a in muted if a.status == "firing"]
    assert firing and {a.starts_at for a in firing} == {T0 + 110 * 60}


def test_a_window_may_relax_parameters_instead_of_muting():
    window = {
        "start": at(0),
        "end": at(200),
        "timezone": "UTC",
        "spend_spike": {"critical_ratio": 50},
    }
    alerts = run_spike(windows=[window])
    assert {a.labels["severity"] for a in alerts} == {"warning"}
    assert alerts[0].annotations["threshold_source"].startswith("windows[0] (every key)")


def test_alerts_say_where_their_threshold_came_from_and_show_recent_buckets():
    rule = {"match": {"customer_id": "acme", "endpoint": "chat"}, "spend_spike": {"min_z": 4}}
    alerts = run_spike(overrides=[rule])
    by_scope = {a.labels["scope"]: a.annotations for a in alerts if a.status == "firing"}
    assert (
        by_scope["endpoint"]["threshold_source"] == "overrides[0] (customer_id=acme, endpoint=chat)"
    )
    assert by_scope["customer"]["threshold_source"] == "default"
    recent = by_scope["endpoint"]["recent"].split(",")
    assert len(recent) == 12 and recent[-1] == "1" and float(recent[0]) < 0.2
    assert {"observed", "baseline", "z", "threshold"} <= set(by_scope["endpoint"])
