"""margin_breach through stream/core/detect.py: the terms a customer is judged by come from
their record and their plan (config/spendwatch.yaml's plans), as the README says.

- "a gross margin below the target (plan or customer record)": a record's own
  ``margin_target`` overrides its plan's, either way;
- "free: actual cost above the cap" is what makes a free plan's alert critical.

Spend is steady from the start of the billing month, so the projection is the same
whatever way the month's end is projected from a steady burn.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from stream.core.buckets import COST, REQUESTS
from stream.core.detect import CustomerDetection
from stream.core.events import Customer
from stream.settings import load_settings

SETTINGS = load_settings()  # the shipped plans: starter keeps 50 %, pro 60 %, free caps $25
WIDTH = SETTINGS.buckets.width_s
MONTH_START = datetime(2026, 11, 1, tzinfo=UTC).timestamp()  # billing day 1
# Long enough for any projection to be sure of a steady burn: a projection learnt per hour
# of the day is not sure of one before it has seen every hour.
HOURS = 72


def margin_alerts(customer: Customer, usd_per_minute: float) -> list[tuple[str, str]]:
    """(status, severity) of the margin_breach alerts of ``HOURS`` of steady API spend."""
    detection = CustomerDetection(SETTINGS, {customer.customer_id: customer}.get)
    first = int(MONTH_START // WIDTH)
    out = []
    for index in range(first, first + int(HOURS * 3600 / WIDTH)):
        row = [0.0] * 8
        row[COST], row[REQUESTS] = usd_per_minute * WIDTH / 60.0, 10.0
        keyed, _ = detection.close(index, {(customer.customer_id, "chat", "openai", "m"): row})
        out += [
            (k.decision.status, k.decision.severity)
            for k in keyed
            if k.decision.alertname == "margin_breach"
        ]
    return out


def projected_margin(price: float, usd_per_minute: float, plan: str) -> float:
    """The gross margin a month of this steady API spend leaves (30 days in November)."""
    overhead = SETTINGS.plan(plan).overhead_ratio
    return 1.0 - usd_per_minute * 60 * 24 * 30 * (1.0 + overhead) / price


def customer(plan: str, margin_target: float | None = None, price: float = 1000.0) -> Customer:
    record = {"customer_id": "acme", "plan": plan, "monthly_price_usd": price}
    if margin_target is not None:
        record["margin_target"] = margin_target
    return Customer.model_validate(record)


# $0.007 a minute of API cost leaves a $1,000/month customer a 50 % margin (cost-to-serve
# $499), $0.0056 a 60 % margin ($399).
HALF, SIXTY = 0.007, 0.0056


@pytest.mark.parametrize(
    ("plan", "target", "spend", "expected"),
    [
        # pro keeps 60 %: a 50 % margin breaches it, unless the record asks for 40 %
        pytest.param("pro", None, HALF, [("firing", "warning")], id="pro's 60 %: 50 % fires"),
        pytest.param("pro", 0.4, HALF, [], id="the record's 40 % over pro's 60 %: 50 % does not"),
        # starter keeps 50 %: a 60 % margin is fine, unless the record asks for 70 %
        pytest.param("starter", None, SIXTY, [], id="starter's 50 %: 60 % does not fire"),
        pytest.param(
            "starter", 0.7, SIXTY, [("firing", "warning")], id="the record's 70 %: 60 % fires"
        ),
    ],
)
def test_a_customer_records_margin_target_overrides_its_plans(plan, target, spend, expected):
    assert 0.49 < projected_margin(1000.0, HALF, plan) < 0.51
    assert 0.59 < projected_margin(1000.0, SIXTY, plan) < 0.61
    assert margin_alerts(customer(plan, target), spend) == expected


def test_the_plans_are_what_these_tests_assume():
    assert (SETTINGS.plan("pro").margin_target, SETTINGS.plan("starter").margin_target) == (
        0.6,
        0.5,
    )
    assert SETTINGS.plan("free").cost_cap_usd == 25.0


@pytest.mark.parametrize(
    ("usd_per_minute", "severity"),
    [
        # $0.002 a minute projects $143 of cost-to-serve for the month, far over the $25
        # cap, but after 3 days only $14.26 has been spent: a warning.
        pytest.param(0.002, "warning", id="projected over the cap, actual under: warning"),
        # $1 a minute is over the cap in actual cost-to-serve after 16 minutes: critical.
        pytest.param(1.0, "critical", id="actual cost over the cap: critical"),
    ],
)
def test_a_free_plan_is_critical_only_when_its_actual_cost_is_over_its_cap(
    usd_per_minute, severity
):
    alerts = margin_alerts(customer("free", price=0.0), usd_per_minute)
    assert alerts[0] == ("firing", severity)
