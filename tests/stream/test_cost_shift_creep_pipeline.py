"""Slow cost creep through the whole pipeline: an endpoint whose requests grow 20 % in
tokens (under cost_shift's +25 % bar, over half of it) fires cost_shift 3 hours after the
hour's window shows it, and the alert and its Slack message say it is the creep rule."""

from __future__ import annotations

import random

import orjson
import pytest

from stream.core.alerts import Alert
from stream.core.pipeline import Pipeline
from stream.core.pricing import PriceTable
from stream.notify.grouping import Notification
from stream.notify.receivers.slack_blocks import blocks
from stream.settings import CONFIG_DIR, Settings

T0 = 1_793_577_600.0  # 2026-11-02T00:00:00Z
HOUR = 3600.0
GROWTH = T0 + 34 * HOUR  # day 2, 10:00


def events(hours: float = 40.0, seed: int = 5) -> list[bytes]:
    """acme's chat: 300 gpt-4o requests an hour of ~1,000 input and ~200 output tokens
    (~$0.0045 each); from GROWTH both 1.2x (+20 % a request, ~$200 a month)."""
    rng = random.Random(seed)
    out, ts = [], T0
    while ts < T0 + hours * HOUR:
        ts += rng.expovariate(300.0 / HOUR)
        grown = 1.2 if ts >= GROWTH else 1.0
        body = {
            "event_id": f"chat-{len(out)}",
            "ts": round(ts, 3),
            "customer_id": "acme",
            "endpoint": "chat",
            "provider": "openai",
            "model": "gpt-4o",
            "input_tokens": int(1000 * grown * rng.uniform(0.8, 1.2)),
            "output_tokens": int(200 * grown * rng.uniform(0.75, 1.25)),
        }
        out.append(orjson.dumps(body))
    return out


@pytest.fixture(scope="module")
def creep() -> list[Alert]:
    pipeline = Pipeline(Settings(), PriceTable.load(CONFIG_DIR / "prices.yaml"))
    alerts: list[Alert] = []
    for raw in events():
        alerts += pipeline.feed("usage", raw)
    alerts += pipeline.flush()
    return [a for a in alerts if a.labels["alertname"] == "cost_shift" and a.status == "firing"]


def test_creep_fires_after_three_hours_on_the_endpoint_and_the_customer(creep):
    keys = sorted(a.labels.get("endpoint", "-") for a in creep)
    assert keys == ["-", "chat"]
    for alert in creep:
        assert alert.annotations["rule"] == "creep: >= +12.5% for 3 h"
        # The creep is dated from when the hour's window showed half the bar: +20 % takes
        # it about an hour (1 - e^-1 of the way), and a step of rounding.
        assert GROWTH + 0.9 * HOUR <= alert.starts_at <= GROWTH + 1.5 * HOUR
        assert 1.15 <= float(alert.annotations["ratio"]) <= 1.25


def test_without_creep_nothing_fires():
    settings = Settings.model_validate({"detectors": {"cost_shift": {"creep_duration_s": None}}})
    pipeline = Pipeline(settings, PriceTable.load(CONFIG_DIR / "prices.yaml"))
    alerts: list[Alert] = []
    for raw in events():
        alerts += pipeline.feed("usage", raw)
    alerts += pipeline.flush()
    assert [a for a in alerts if a.labels["alertname"] == "cost_shift"] == []


def test_slack_says_which_rule_fired(creep):
    payload = creep[0].to_payload()
    n = Notification("slack", "g", "firing", {}, payload["labels"], {}, (payload,))
    texts = [b["elements"][0]["text"] for b in blocks(n) if b["type"] == "context"]
    assert "Rule: creep: &gt;= +12.5% for 3 h" in texts  # escaped for Slack
