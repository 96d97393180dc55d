"""The series mode end to end: ``spendwatch replay --series`` on unit-free CSV exports, and
the same settings chosen per key in config for the USD pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import orjson

from stream.core.events import Customer
from stream.core.pipeline import Pipeline
from stream.core.pricing import PriceTable
from stream.settings import CONFIG_DIR, Settings, settings_from_dict
from tests.stream.test_cli import T0, spendwatch


def write_csv(path: Path, values: list[float | None], step: int = 300) -> Path:
    rows = ["timestamp,value"]
    rows += [f"{T0 + i * step},{v}" for i, v in enumerate(values) if v is not None]
    path.write_text("\n".join(rows) + "\n")
    return path


def statuses(result) -> list[tuple[str, str]]:
    alerts = [json.loads(line) for line in result.stdout.splitlines()]
    return [(a["status"], a["startsAt"]) for a in alerts]


def level(i: int) -> float:
    return 50.0 + (i % 7) * 1.5


def test_a_drop_is_found_both_ways_by_default_and_not_up_only(tmp_path):
    values = [level(i) if not 500 <= i < 530 else 5.0 for i in range(700)]
    csv = write_csv(tmp_path / "drop.csv", values)
    both = spendwatch("replay", "--series", str(csv), "--json")
    assert both.returncode == 0, both.stderr
    assert statuses(both)[0] == ("firing", "2026-11-03T17:40:00Z")  # interval 500
    up = spendwatch("replay", "--series", str(csv), "--json", "--direction", "up")
    assert statuses(up) == []


def test_unit_free_values_do_not_trip_the_usd_absolute_rule(tmp_path):
    # 100 per 5 minutes reads as $1,200/h: above the $1,000/h absolute rule.
    csv = write_csv(tmp_path / "flat.csv", [100.0 + (i % 3) for i in range(400)])
    assert statuses(spendwatch("replay", "--series", str(csv), "--json")) == []
    usd = spendwatch("replay", "--series", str(csv), "--json", "--usd")
    assert statuses(usd)[0][0] == "firing"


def test_a_gap_in_an_export_is_skipped_not_read_as_zero(tmp_path):
    values = [level(i) if not 300 <= i < 340 else None for i in range(600)]
    csv = write_csv(tmp_path / "gap.csv", values)
    result = spendwatch("replay", "--series", str(csv), "--json")
    # The gap is missing data, an alert of its own from its first missing interval to the
    # row that ended it; not a drop to zero, and nothing after it.
    assert statuses(result) == [
        ("firing", "2026-11-03T01:00:00Z"),  # interval 300
        ("resolved", "2026-11-03T01:00:00Z"),
    ]
    resolved = json.loads(result.stdout.splitlines()[1])
    assert resolved["endsAt"] == "2026-11-03T04:20:00Z"  # interval 340
    assert resolved["annotations"]["summary"] == "No data for series for 200 min (40 intervals)"


def test_an_hourly_spike_fires_on_its_hour(tmp_path):
    values = [level(i) if i != 200 else 400.0 for i in range(260)]
    csv = write_csv(tmp_path / "hourly.csv", values, step=3600)
    fired = statuses(spendwatch("replay", "--series", str(csv), "--json"))
    assert fired and fired[0] == ("firing", "2026-11-10T08:00:00Z")  # hour 200


def spend_events(customer: str, minutes: range, usd: float) -> list[bytes]:
    return [
        orjson.dumps(
            {
                "event_id": f"{customer}-{m}",
                "ts": 1793577600 + m * 60 + 5,
                "customer_id": customer,
                "endpoint": "chat",
                "provider": "openai",
                "model": "gpt-4o",
                "cost_usd": usd,
            }
        )
        for m in minutes
    ]


def pipeline_alerts(settings: Settings) -> list:
    customers = {
        c: Customer(customer_id=c, plan="pro", monthly_price_usd=1e6) for c in ("acme", "globex")
    }
    pipeline = Pipeline(settings, PriceTable.load(CONFIG_DIR / "prices.yaml"), customers)
    alerts = []
    events = []
    for customer in ("acme", "globex"):
        events += spend_events(customer, range(0, 1500), 0.2)  # $12/h for a day
        events += spend_events(customer, range(1500, 1560), 0.01)  # then $0.6/h
        events += spend_events(customer, range(1560, 1700), 0.2)
    events.sort(key=lambda raw: orjson.loads(raw)["ts"])
    for raw in events:
        event = pipeline.ingest.parse("usage", raw)
        alerts += pipeline.add("usage", event, raw)
    return alerts + pipeline.flush()


def test_the_series_settings_can_be_chosen_per_key_in_config():
    """A drop pages only the customer whose override asks for both directions; the USD
    defaults keep every other key up-only."""
    overrides = [{"match": {"customer_id": "acme"}, "spend_spike": {"direction": "both"}}]
    settings = settings_from_dict({"detectors": {"overrides": overrides}}, CONFIG_DIR)
    fired = {
        (a.labels["customer_id"], a.labels.get("endpoint"))
        for a in pipeline_alerts(settings)
        if a.labels["alertname"] == "spend_spike" and a.status == "firing"
    }
    assert ("acme", None) in fired
    assert not any(customer == "globex" for customer, _ in fired)
    plain = pipeline_alerts(Settings())
    assert not [a for a in plain if a.labels["alertname"] == "spend_spike"]
