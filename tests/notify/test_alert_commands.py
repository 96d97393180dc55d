"""``spendwatch alert test`` through real receivers on loopback, ``alert list`` from a worker."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import orjson
import pytest
from aiohttp import web

from stream.commands.cli import main
from stream.commands.notify_commands import parse_duration, parse_time
from stream.notify.grouping import AlertStatus
from tests.contracts import schema
from tests.notify.cli_config import write_config
from tests.notify.servers import (
    LoopbackServer,
    PagerDutyServer,
    SlackApiServer,
    SlackWebhookServer,
    WebhookServer,
    alert_item,
)

SECRET = "test-signing-secret"


def receivers_config(tmp_path: Path, *receivers: dict) -> Path:
    return write_config(
        tmp_path,
        {"route": {"receivers": [receivers[0]["name"]]}, "receivers": list(receivers)},
    )


@pytest.fixture
def webhook(monkeypatch):
    monkeypatch.setenv("SPENDWATCH_WEBHOOK_SECRET", SECRET)
    with WebhookServer(secret=SECRET) as server:
        yield server


def test_alert_test_sends_one_signed_contract_body_to_the_webhook(tmp_path, webhook, capsys):
    config = receivers_config(tmp_path, {"name": "hook", "kind": "webhook",
                                         "webhook": {"url": webhook.url}})  # fmt: skip
    assert main(["alert", "test", "--receiver", "hook", "--config", str(config)]) == 0
    [request] = webhook.delivered
    assert request.verified is True
    body = request.json()
    jsonschema.validate(body, schema("alert-webhook"))
    [alert] = body["alerts"]
    assert alert["labels"]["alertname"] == "spend_spike"
    assert alert["labels"]["customer_id"] == "example-customer"
    assert len(alert["annotations"]["recent"].split(",")) == 12
    assert body["status"] == "firing" and body["receiver"] == "hook"
    assert "hook (webhook): firing test alert ok, HTTP 200" in capsys.readouterr().out


def test_alert_test_exits_non_zero_and_shows_the_status_when_the_receiver_fails(
    tmp_path, webhook, capsys
):
    config = receivers_config(tmp_path, {"name": "hook", "kind": "webhook",
                                         "webhook": {"url": webhook.url}})  # fmt: skip
    webhook.fail_next(1, status=503)
    assert main(["alert", "test", "--receiver", "hook", "--config", str(config)]) == 1
    out = capsys.readouterr().out
    assert "FAILED, HTTP 503" in out and "fault injected" in out
    assert len(webhook.requests) == 1  # sent once: no retries


def test_alert_test_reports_a_refused_connection(tmp_path, webhook, capsys):
    url = webhook.url
    webhook.down()
    config = receivers_config(tmp_path, {"name": "hook", "kind": "webhook",
                                         "webhook": {"url": url}})  # fmt: skip
    assert main(["alert", "test", "--receiver", "hook", "--config", str(config)]) == 1
    assert "FAILED, no response: ClientConnectorError" in capsys.readouterr().out


def test_alert_test_posts_to_slack_with_a_sparkline_and_threads_the_resolve(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("SPENDWATCH_SLACK_BOT_TOKEN", "xoxb-test-token")
    with SlackApiServer() as slack:
        config = receivers_config(
            tmp_path,
            {"name": "oncall", "kind": "slack",
             "slack": {"channel": "#spend-test", "base_url": slack.url}},
        )  # fmt: skip
        argv = ["alert", "test", "--receiver", "oncall", "--resolve", "--config", str(config)]
        assert main(argv) == 0
        [post, *rest] = slack.delivered
    message = post.json()
    assert post.path == "/api/chat.postMessage" and message["channel"] == "#spend-test"
    assert "example-customer" in orjson.dumps(message["blocks"]).decode()
    assert "Recent: " in orjson.dumps(message["blocks"]).decode()
    assert rest, "the resolve went nowhere"
    out = capsys.readouterr().out
    assert "oncall (slack): firing test alert ok" in out
    assert "oncall (slack): resolved test alert ok" in out


def test_alert_test_reaches_a_slack_incoming_webhook(tmp_path, monkeypatch, capsys):
    with SlackWebhookServer() as hook:
        monkeypatch.setenv("SPENDWATCH_SLACK_WEBHOOK_URL", hook.url)
        config = receivers_config(
            tmp_path, {"name": "channel", "kind": "slack", "slack": {"mode": "webhook"}}
        )
        assert main(["alert", "test", "--receiver", "channel", "--config", str(config)]) == 0
        assert len(hook.delivered) == 1


def test_alert_test_triggers_and_resolves_a_pagerduty_event(tmp_path, monkeypatch):
    monkeypatch.setenv("SPENDWATCH_PAGERDUTY_ROUTING_KEY", "test-routing-key")
    with PagerDutyServer() as pd:
        config = receivers_config(
            tmp_path, {"name": "pager", "kind": "pagerduty", "pagerduty": {"url": pd.url}}
        )
        argv = ["alert", "test", "--receiver", "pager", "--severity", "critical", "--resolve"]
        assert main([*argv, "--config", str(config)]) == 0
        actions = [r.json()["event_action"] for r in pd.delivered]
    assert actions == ["trigger", "resolve"]


def test_alert_test_names_the_defined_receivers_when_the_name_is_unknown(tmp_path, capsys):
    config = receivers_config(
        tmp_path,
        {"name": "hook", "kind": "webhook", "webhook": {"url": "http://127.0.0.1:9/x"}},
        {"name": "pager", "kind": "pagerduty"},
    )
    assert main(["alert", "test", "--receiver", "slack", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "no receiver 'slack'" in err and "defined: hook, pager" in err


def test_alert_test_names_the_missing_secret_variable(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("SPENDWATCH_PAGERDUTY_ROUTING_KEY", raising=False)
    config = receivers_config(tmp_path, {"name": "pager", "kind": "pagerduty"})
    assert main(["alert", "test", "--receiver", "pager", "--config", str(config)]) == 2
    assert "SPENDWATCH_PAGERDUTY_ROUTING_KEY is not set" in capsys.readouterr().err


# -- alert list --------------------------------------------------------------------------


class AlertsPage(LoopbackServer):
    """The worker's GET /alerts, serving a fixed document."""

    def __init__(self, document: dict) -> None:
        super().__init__()
        self.document = document

    def routes(self, app: web.Application) -> None:
        async def alerts(request: web.Request) -> web.Response:
            return web.json_response(self.document)

        app.router.add_get("/alerts", alerts)


def worker_document(owner: bool = True) -> dict:
    spike = alert_item(customer_id="acme", endpoint="chat", severity="critical")
    storm = alert_item(customer_id="initech", alertname="retry_storm")
    quiet = alert_item(customer_id="globex", endpoint="batch")
    statuses = [
        AlertStatus(spike, "active", receivers=("pager",)),
        AlertStatus(storm, "silenced", silenced_by=("5f0c-silence",), receivers=("slack",)),
        AlertStatus(quiet, "inhibited", inhibited_by=("abc123",), receivers=("slack",)),
    ]
    return {"alerts": [s.to_dict() for s in statuses], "owner": owner}


def test_alert_list_prints_the_workers_alerts_as_a_table(capsys):
    with AlertsPage(worker_document()) as page:
        assert main(["alert", "list", "--url", page.base]) == 0
        assert [r.path for r in page.requests] == ["/alerts"]
    out, err = capsys.readouterr()
    header, *rows = out.splitlines()
    assert header.split() == [
        "STATE", "ALERT", "SEVERITY", "CUSTOMER", "ENDPOINT", "STARTS", "MUTED", "BY",
    ]  # fmt: skip
    assert rows[0].split() == ["active", "spend_spike", "critical", "acme", "chat",
                               "2026-11-02", "10:00"]  # fmt: skip
    assert rows[1].split()[:4] == ["silenced", "retry_storm", "warning", "initech"]
    assert rows[1].split()[-1] == "5f0c-silence"
    assert rows[2].split()[0] == "inhibited" and rows[2].split()[-1] == "abc123"
    assert "3 firing alerts (1 active, 1 silenced, 1 inhibited)" in err


def test_alert_list_json_prints_the_items_as_the_worker_sent_them(capsys):
    document = worker_document(owner=False)
    with AlertsPage(document) as page:
        assert main(["alert", "list", "--url", page.base + "/", "--json"]) == 0
    out, err = capsys.readouterr()
    assert [orjson.loads(line) for line in out.splitlines()] == document["alerts"]
    assert "does not run alert delivery" in err


def test_alert_list_says_which_worker_it_could_not_reach(capsys):
    with AlertsPage({"alerts": [], "owner": True}) as page:
        url = page.base
    assert main(["alert", "list", "--url", url]) == 1
    assert f"cannot reach the worker at {url}/alerts" in capsys.readouterr().err


# -- times -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30m", 1800.0), ("2h", 7200.0), ("1d", 86400.0), ("1h30m", 5400.0), ("90s", 90.0)],
)
def test_durations_read_like_alertmanagers(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "2", "h", "2 h", "1h-30m", "0m", "2hours"])
def test_bad_durations_are_refused_with_examples(text):
    with pytest.raises(ValueError, match="e.g. 30m, 2h, 1d, 1h30m|longer than zero"):
        parse_duration(text)


def test_times_are_rfc3339_in_utc_unless_an_offset_is_given():
    assert parse_time("2026-11-02T10:00:00Z", 0) == parse_time("2026-11-02T11:00:00+01:00", 0)
    assert parse_time("2026-11-02T10:00", 0) == 1793613600.0
    with pytest.raises(ValueError, match="bad time 'tomorrow'"):
        parse_time("tomorrow", 0)
