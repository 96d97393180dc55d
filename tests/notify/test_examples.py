"""The worked example in examples/ stays valid and routes as the README says it does."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.notify.receivers import build_receivers
from stream.notify.routing import RouteNode
from stream.settings import load_settings

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "notify-pagerduty-slack.yaml"


@pytest.fixture(scope="module")
def example():
    return load_settings(EXAMPLE)


@pytest.mark.parametrize(
    ("alertname", "severity", "receivers"),
    [
        ("spend_spike", "critical", ["pagerduty"]),
        ("spend_spike", "warning", ["spend-slack"]),
        ("retry_storm", "critical", ["spend-slack"]),
        ("margin_breach", "critical", ["spend-slack"]),
    ],
)
def test_critical_spend_spikes_page_and_everything_else_goes_to_slack(
    example, alertname, severity, receivers
):
    labels = {"alertname": alertname, "severity": severity, "customer_id": "acme"}
    nodes = RouteNode.build(example.notify.route).match(labels)
    assert [r for n in nodes for r in n.receivers] == receivers


def test_the_example_loads_and_builds_its_receivers_from_the_environment(example):
    assert example.resolve(example.prices_file).exists()
    env = {"SPENDWATCH_PAGERDUTY_ROUTING_KEY": "k", "SPENDWATCH_SLACK_BOT_TOKEN": "xoxb-t"}
    assert sorted(build_receivers(example.notify.receivers, env)) == ["pagerduty", "spend-slack"]
    page = RouteNode.build(example.notify.route).children[0]
    assert (page.group_wait_s, page.group_interval_s, page.repeat_interval_s) == (10, 300, 3600)


def test_the_readme_shows_the_example_as_it_is():
    readme = (REPO / "README.md").read_text()
    assert EXAMPLE.read_text().strip() in readme
