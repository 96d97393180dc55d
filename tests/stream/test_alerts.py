import jsonschema
import pytest

from detectors.decision import Decision
from stream.core.alerts import ZERO_TIME, build_alert, fingerprint, rfc3339
from tests.contracts import schema

T0 = 1793613600.0  # 2026-11-02T10:00:00Z


def decision(status="firing", ends=None, severity="warning", name="spend_spike"):
    return Decision(
        name,
        status,
        severity,
        T0,
        ends,
        {"observed": 2.5, "baseline": 1.0, "ratio": 2.5, "money_at_risk_usd_per_hour": 90.0},
    )


def alerts_item_schema():
    return schema("alert-webhook")["properties"]["alerts"]["items"]


def test_a_firing_alert_matches_the_webhook_contract_item():
    alert = build_alert(
        {"customer_id": "acme", "endpoint": "chat"}, decision(), "https://x/{alertname}"
    )
    payload = alert.to_payload()
    jsonschema.validate(payload, alerts_item_schema())
    assert payload["endsAt"] == ZERO_TIME
    assert payload["startsAt"] == "2026-11-02T10:00:00Z"
    assert payload["labels"] == {
        "alertname": "spend_spike",
        "severity": "warning",
        "customer_id": "acme",
        "endpoint": "chat",
        "scope": "endpoint",
    }
    assert payload["annotations"]["runbook_url"] == "https://x/spend_spike"
    assert payload["annotations"]["money_at_risk_usd_per_hour"] == "90.00"
    assert "2.5x baseline" in payload["annotations"]["summary"]


def test_firing_and_resolved_of_one_episode_share_the_fingerprint():
    key = {"customer_id": "acme"}
    firing = build_alert(key, decision())
    resolved = build_alert(key, decision("resolved", T0 + 600))
    assert firing.fingerprint == resolved.fingerprint
    assert resolved.to_payload()["endsAt"] == "2026-11-02T10:10:00Z"
    jsonschema.validate(resolved.to_payload(), alerts_item_schema())


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ({"customer_id": "acme"}, {"customer_id": "acme", "endpoint": "chat"}),
        ({"customer_id": "acme"}, {"customer_id": "acme2"}),
        ({"provider": "openai", "model": "gpt-4o"}, {"provider": "openai", "model": "gpt-4o-mini"}),
    ],
)
def test_different_keys_have_different_fingerprints(a, b):
    assert build_alert(a, decision()).fingerprint != build_alert(b, decision()).fingerprint


def test_the_fingerprint_is_stable_and_order_independent():
    labels = {"alertname": "retry_storm", "severity": "critical", "provider": "openai"}
    assert fingerprint(labels) == fingerprint(dict(reversed(list(labels.items()))))
    # Pinned: a changed hash would re-page every open alert after an upgrade.
    assert fingerprint(labels) == "70d9362005b3b26c"


def test_rfc3339_keeps_milliseconds_only_when_present():
    assert rfc3339(T0) == "2026-11-02T10:00:00Z"
    assert rfc3339(T0 + 0.25) == "2026-11-02T10:00:00.250Z"


def test_a_lasting_excess_says_so_with_its_window_figures():
    values = {
        "observed": 0.01,
        "baseline": 0.008,
        "ratio": 1.25,
        "sustained_z": 6.2,
        "sustained_excess_usd_per_hour": 0.42,
        "sustain_s": 1200.0,
        "money_at_risk_usd_per_hour": 0.42,
    }
    alert = build_alert(
        {"customer_id": "acme", "endpoint": "chat"},
        Decision("spend_spike", "firing", "warning", T0, None, values),
    )
    assert alert.annotations["summary"] == (
        "Lasting spend excess for acme on chat: +$0.42/h over baseline "
        "(20-minute window, 6.2 sd), under the per-bucket floor"
    )
    jsonschema.validate(alert.to_payload(), alerts_item_schema())


def test_missing_data_says_how_long_not_a_spend():
    values = {"observed": 0.0, "missing_s": 1800.0, "bucket_s": 300.0}
    alert = build_alert(
        {"customer_id": "svc"}, Decision("spend_spike", "firing", "warning", T0, None, values)
    )
    assert alert.annotations["summary"] == "No data for svc for 30 min (6 intervals)"
