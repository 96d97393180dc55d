"""``spendwatch replay --deliver``: a simulated run's alerts reach a loopback webhook, as many
and as grouped as the dispatcher's timings in event time imply."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import jsonschema
import orjson
import pytest

from stream.notify.grouping import Dispatcher
from stream.notify.model import DeliveryResult
from stream.notify.replay_delivery import event_time
from stream.offline.simulate import SimConfig, simulate
from stream.settings.notify import NotifySettings
from tests.contracts import schema
from tests.notify.cli_config import write_config
from tests.notify.servers import WebhookServer

SECRET = "replay-signing-secret"


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("deliver")
    simulate(out, SimConfig(days=2, customers=12, seed=5, incidents=True))
    return out


def replay_deliver(folder: Path, config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable, "-m", "stream.commands.cli", "replay", str(folder / "usage.jsonl.gz"),
            "--errors", str(folder / "errors.jsonl.gz"),
            "--customers", str(folder / "customers.jsonl"),
            "--config", str(config), "--json", "--deliver", *extra,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={"SPENDWATCH_WEBHOOK_SECRET": SECRET, "PATH": "/usr/bin:/bin"},
    )  # fmt: skip


def hook_receiver(url: str) -> dict:
    return {"name": "hook", "kind": "webhook", "webhook": {"url": url}}


def bodies(server: WebhookServer) -> list[dict]:
    out = []
    for request in server.delivered:
        assert request.verified is True
        body = request.json()
        jsonschema.validate(body, schema("alert-webhook"))
        out.append(body)
    return out


def test_per_alert_groups_send_each_transition_once(recorded, tmp_path):
    with WebhookServer(secret=SECRET) as hook:
        route = {"receivers": ["hook"], "group_by": ["..."], "group_wait_s": 0,
                 "group_interval_s": 60, "repeat_interval_s": 1e9}  # fmt: skip
        config = write_config(
            tmp_path, {"route": route, "receivers": [hook_receiver(hook.url)], "inhibit_rules": []}
        )
        result = replay_deliver(recorded, config)
        assert result.returncode == 0, result.stderr
        sent = bodies(hook)
    alerts = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert {a["status"] for a in alerts} == {"firing", "resolved"}
    assert all(len(b["alerts"]) == 1 for b in sent)
    got = Counter((b["alerts"][0]["fingerprint"], b["alerts"][0]["status"]) for b in sent)
    assert got == Counter((a["fingerprint"], a["status"]) for a in alerts)
    order = [(b["alerts"][0]["fingerprint"], b["alerts"][0]["status"]) for b in sent]
    for fingerprint, status in order:  # an episode's resolve comes after its firing
        if status == "resolved":
            assert order.index((fingerprint, "firing")) < order.index((fingerprint, status))
    assert f"delivered {len(alerts)} of {len(alerts)} notifications: hook {len(alerts)}" in (
        result.stderr
    )


def expected(alerts: list[dict], notify: NotifySettings) -> list[dict]:
    """What the dispatcher implies when every delivery succeeds at once: stepped through
    event time one second at a time (a slower clock than replay's, same notifications).
    Alerts arrive in the order replay emitted them, each at its event time or, when it was
    emitted after a later one (cost_shift fires an hour after its start), at that one's."""
    d = Dispatcher(notify, {}, {})
    out: list[dict] = []
    queue, arrived = [], float("-inf")
    for i, a in enumerate(alerts):
        arrived = max(arrived, event_time(a))
        queue.append((arrived, i, a))
    start, last = int(queue[0][0]), int(queue[-1][0])
    horizon = last + int(notify.route.group_interval_s or 300) + 1
    index = 0
    for now in range(start, horizon + 1):
        while index < len(queue) and queue[index][0] <= now:
            d.add(queue[index][2], queue[index][0])
            index += 1
        for n in d.due(float(now)):
            out.append(n.webhook_body())
            d.delivered(n, DeliveryResult(ok=True), float(now))
    return out


def test_grouping_by_customer_sends_what_the_dispatcher_implies(recorded, tmp_path):
    notify = {"route": {"receivers": ["hook"], "group_by": ["customer_id"]}}
    with WebhookServer(secret=SECRET) as hook:
        config = write_config(tmp_path, {**notify, "receivers": [hook_receiver(hook.url)]})
        result = replay_deliver(recorded, config)
        assert result.returncode == 0, result.stderr
        sent = bodies(hook)
    alerts = [orjson.loads(line) for line in result.stdout.splitlines()]
    settings = NotifySettings(**notify, receivers=[hook_receiver("http://127.0.0.1:9/")])
    want = expected(alerts, settings)
    assert any(len(b["alerts"]) > 1 for b in sent)  # a customer's alerts are grouped
    assert any(b["status"] == "resolved" for b in sent)

    def shape(body: dict) -> tuple:
        items = tuple((a["fingerprint"], a["status"]) for a in body["alerts"])
        return body["groupKey"], body["status"], items

    assert [shape(b) for b in sent] == [shape(b) for b in want]
    for body in sent:
        [customer] = {a["labels"].get("customer_id") for a in body["alerts"]}
        assert body["groupLabels"] == ({} if customer is None else {"customer_id": customer})
    assert f"delivered {len(want)} of {len(want)} notifications: hook {len(want)}" in result.stderr


def test_deliver_refuses_before_replaying_when_a_secret_is_missing(recorded, tmp_path):
    pager = {"name": "pager", "kind": "pagerduty"}
    config = write_config(tmp_path, {"route": {"receivers": ["pager"]}, "receivers": [pager]})
    result = replay_deliver(recorded, config)
    assert result.returncode == 2
    assert "SPENDWATCH_PAGERDUTY_ROUTING_KEY is not set" in result.stderr
    assert result.stdout == ""  # nothing replayed


def test_deliver_needs_a_route_to_a_receiver(recorded, tmp_path):
    result = replay_deliver(recorded, write_config(tmp_path, {}))
    assert result.returncode == 2
    assert "no route sends to a receiver" in result.stderr
