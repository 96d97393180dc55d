"""spend_spike in warm-up: the absolute limit fires, and the alert says what it is."""

from __future__ import annotations

import jsonschema
import pytest

from detectors import spend_spike
from detectors.decision import Decision
from detectors.spend_spike import SpendSpikeParams, SpendSpikeState
from stream.core.alerts import Alert, build_alert
from stream.notify.receivers.slack_blocks import blocks
from tests.contracts import schema
from tests.detectors.series import MINUTE, START
from tests.notify.servers import notification

LIMIT = 60.0  # USD/h: $1.00 per one-minute bucket
PARAMS = SpendSpikeParams(absolute_usd_per_hour=LIMIT)
KEY = {"customer_id": "cus_acme_01", "endpoint": "chat_v2"}


def new_key_spending(per_minute: float, minutes: int = 10) -> list[Decision]:
    """A key seen for the first time, spending ``per_minute`` USD every minute."""
    state = SpendSpikeState.new(PARAMS)
    out: list[Decision] = []
    for i in range(minutes):
        out += spend_spike.update(state, START + i * MINUTE, MINUTE, per_minute, PARAMS)
    return out


def firing_alert(per_minute: float) -> Alert:
    firing = [d for d in new_key_spending(per_minute) if d.status == "firing"]
    assert firing, "the absolute limit did not fire"
    return build_alert(KEY, firing[0])


@pytest.mark.parametrize(
    "per_minute, fires",
    [(0.99, False), (0.999, False), (1.0, True), (1.001, True), (20.0, True)],
)
def test_absolute_limit_fires_in_warm_up_at_the_limit_and_not_just_under(
    per_minute: float, fires: bool
) -> None:
    decisions = new_key_spending(per_minute)
    assert [d.status for d in decisions] == (["firing"] if fires else [])
    if fires:
        assert decisions[0].severity == "critical"
        assert decisions[0].starts_at == START  # the first of `consecutive` breaches


@pytest.mark.parametrize("per_minute", [1.0, 20.0])
def test_a_warm_up_alert_claims_no_ratio_and_puts_its_spend_at_risk(per_minute: float) -> None:
    alert = firing_alert(per_minute)
    notes = alert.annotations
    summary = notes["summary"]
    assert "no baseline yet (warm-up)" in summary
    assert "x baseline" not in summary and "1.0x" not in summary and "0.0x" not in summary
    assert not {"baseline", "baseline_sd", "ratio", "z"} & set(notes)
    assert float(notes["money_at_risk_usd_per_hour"]) == pytest.approx(per_minute * 60)
    assert float(notes["money_at_risk_usd_per_hour"]) >= LIMIT > 0
    assert notes["absolute_usd_per_hour"] == "60.00"
    assert f"${per_minute * 60:.2f}/h against the $60.00/h limit" in summary


def test_a_warm_up_alert_still_fits_the_webhook_contract() -> None:
    alert = firing_alert(1.0)
    items = schema("alert-webhook")["properties"]["alerts"]["items"]
    jsonschema.validate(alert.to_payload(), items)
    body = notification("webhook", alert.to_payload()).webhook_body()
    jsonschema.validate(body, schema("alert-webhook"))


def test_a_warm_up_alert_in_slack_shows_what_was_spent_and_no_ratio() -> None:
    n = notification("slack", firing_alert(1.0).to_payload())
    fields = [f["text"] for b in blocks(n) for f in b.get("fields", [])]
    assert "Observed: $1.00 (no baseline yet)" in fields
    assert "Money at risk: $60.00/h" in fields
    assert not any("×" in f for f in fields)
