"""The worker's notify side on the real broker, delivering to a real HTTP receiver on loopback.

Alerts are produced straight onto the alerts topic (what detection writes there is tested
elsewhere); the worker groups them, delivers them signed, and keeps its notification
state in tables, so crashes and a receiver's faults neither lose nor double a message.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from stream.kafka.connection import client_kwargs, ensure_topics
from stream.kafka.silence_topic import write_silence
from stream.notify.receivers.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from stream.notify.silences import Silence
from stream.settings import Settings
from tests.contracts import schema
from tests.integration.workers import REPO, WorkerProcess, wait_for
from tests.notify.servers import WebhookServer, alert_item

pytestmark = pytest.mark.integration
SECRET = "loopback-test-secret"


def notify_config(tmp: Path, url: str, **route: Any) -> Path:
    """A config file: one webhook receiver, grouped by customer, short timings."""
    config = {
        "prices_file": str(REPO / "config" / "prices.yaml"),
        "notify": {
            "route": {
                "receivers": ["hook"],
                "group_by": ["customer_id"],
                "group_wait_s": 1,
                "group_interval_s": 2,
                "repeat_interval_s": 3600,
                **route,
            },
            "receivers": [
                {
                    "name": "hook",
                    "kind": "webhook",
                    "webhook": {"url": url, "secret_env": "TEST_HOOK_SECRET"},
                    "timeout_s": 2,
                    "backoff_base_s": 0.2,
                    "backoff_max_s": 1,
                    "breaker_failures": 3,
                    "breaker_open_s": 1,
                }
            ],
        },
    }
    path = tmp / "notify.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def send_alerts(settings: Settings, alerts: list[dict[str, Any]]) -> None:
    async def send() -> None:
        await ensure_topics(settings.kafka)
        producer = AIOKafkaProducer(**client_kwargs(settings.kafka))
        await producer.start()
        try:
            for alert in alerts:
                key = alert["fingerprint"].encode()
                await producer.send_and_wait(settings.kafka.topics.alerts, orjson.dumps(alert), key)
        finally:
            await producer.stop()

    asyncio.run(send())


def burst(customer: str, n: int, status: str = "firing") -> list[dict[str, Any]]:
    return [alert_item(status, customer_id=customer, endpoint=f"ep{i}") for i in range(n)]


def wait_settled(worker: WorkerProcess, groups: int) -> None:
    """Wait until the notifier has checked each of its ``groups`` again after its last
    delivered notification, with none in flight: from then on nothing is sent until the
    alerts change, so a count of deliveries taken now is final."""

    def settled() -> bool:
        page = worker.get("/alerts")
        found = page["groups"]
        return (
            page["owner"]
            and len(found) == groups
            and all(
                g["notified_at"] is not None
                and g["last_check"] is not None
                and g["last_check"] > g["notified_at"]
                and not g["in_flight"]
                for g in found
            )
        )

    wait_for(settled, 60, "the notifier's groups never settled")


def check_signed(request: Any) -> dict[str, Any]:
    body, stamp = request.body, request.headers[TIMESTAMP_HEADER]
    signature = request.headers[SIGNATURE_HEADER]
    assert verify(SECRET, stamp, body, signature, time.time())
    assert not verify("wrong", stamp, body, signature, time.time())
    payload = json.loads(body)
    jsonschema.validate(payload, schema("alert-webhook"))
    return payload


def test_a_burst_is_one_notification_and_survives_receiver_faults_and_sigkills(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    with WebhookServer(secret=SECRET) as hook:
        hook.down()  # the receiver is out when the alerts come
        config = notify_config(tmp_path, hook.url)
        env = {"TEST_HOOK_SECRET": SECRET}
        worker = WorkerProcess(kafka_settings, tmp_path, "n1", config=config, env=env).start()
        try:
            worker.wait_ready()
            send_alerts(kafka_settings, burst("acme", 50) + burst("globex", 2))
            # The notifier has taken them into its table: then the worker dies.
            wait_for(
                lambda: len(worker.get("/alerts")["alerts"]) == 52,
                60,
                "alerts never reached the notifier",
            )
            worker.kill()
            hook.up()
            hook.fail_next(2, status=500)  # and it is flaky when it comes back
            hook.rate_limit_next(1, retry_after=1)
            worker = WorkerProcess(kafka_settings, tmp_path, "n2", config=config, env=env).start()
            worker.wait_ready()
            delivered = hook.wait_for(2, timeout_s=60)
            wait_settled(worker, groups=2)  # nothing more may come
            assert len(hook.delivered) == 2, [r.json() for r in hook.delivered]
            bodies = {check_signed(r)["groupLabels"]["customer_id"]: r.json() for r in delivered}
            assert len(bodies["acme"]["alerts"]) == 50  # the burst is one notification
            assert len(bodies["globex"]["alerts"]) == 2
            assert len(hook.requests) > len(hook.delivered)  # the faults were met

            # The episode ends: one resolve, to the receiver that got the firing.
            send_alerts(kafka_settings, burst("globex", 2, status="resolved"))
            hook.wait_for(3, timeout_s=60)
            resolved = check_signed(hook.delivered[2])
            assert resolved["status"] == "resolved"
            assert resolved["groupLabels"] == {"customer_id": "globex"}

            # A crash after delivery sends nothing again.
            worker.kill()
            worker = WorkerProcess(kafka_settings, tmp_path, "n3", config=config, env=env).start()
            worker.wait_ready()
            wait_settled(worker, groups=1)  # acme's; globex's ended with its resolve
            assert len(hook.delivered) == 3
            listed = worker.get("/alerts")["alerts"]
            assert len(listed) == 50 and all(a["status"]["state"] == "active" for a in listed)
        finally:
            worker.stop()


def test_a_silenced_alert_waits_for_its_silence_to_end(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    with WebhookServer(secret=SECRET) as hook:
        config = notify_config(tmp_path, hook.url)
        env = {"TEST_HOOK_SECRET": SECRET}
        now = time.time()
        silence = Silence(
            "maint-1", ('customer_id="acme"',), now - 1, now + 40, "oncall", "batch window"
        )
        asyncio.run(write_silence(kafka_settings.kafka, silence))
        worker = WorkerProcess(kafka_settings, tmp_path, "s1", config=config, env=env).start()
        try:
            worker.wait_ready()
            send_alerts(kafka_settings, burst("acme", 1) + burst("globex", 1))
            # globex is sent; acme is held while the silence lasts and listed as silenced
            first = hook.wait_for(1, timeout_s=60)
            assert check_signed(first[0])["groupLabels"] == {"customer_id": "globex"}
            listed = {a["labels"]["customer_id"]: a for a in worker.get("/alerts")["alerts"]}
            assert listed["acme"]["status"] == {
                "state": "silenced",
                "silencedBy": ["maint-1"],
                "inhibitedBy": [],
            }
            assert time.time() < silence.ends_at - 2 and len(hook.delivered) == 1
            # the silence ends while the alert still fires: now it is sent, once
            second = hook.wait_for(2, timeout_s=60)
            assert time.time() >= silence.ends_at
            assert check_signed(second[1])["groupLabels"] == {"customer_id": "acme"}
            wait_settled(worker, groups=2)
            assert len(hook.delivered) == 2
        finally:
            worker.stop()
